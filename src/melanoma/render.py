"""Rendering results for people: the terminal tables of ``predict``, ``evaluate`` and ``eda`` (rich) and
``predict``'s rows as JSON or CSV. The HTML report renders its own (``melanoma.report``); the app its own page."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def metrics_table(m: dict, title: str):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{title}: n={m['n']} ({m['n_benign']} benign, {m['n_malignant']} malignant), "
                        f"threshold {m['threshold']:.3f}")
    for col, justify in (("metric", "left"), ("value", "right"), ("95% CI", "right")):
        table.add_column(col, justify=justify)
    from .evaluate import SUMMARY

    for key in (k for k in SUMMARY if k in m):
        ci = m.get(f"{key}_ci")
        table.add_row(key, fmt(m.get(key)), f"{ci[0]:.4f} - {ci[1]:.4f}" if ci else "")
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    table.add_row(escape("confusion [[tn, fp], [fn, tp]]"), escape(f"[[{tn}, {fp}], [{fn}, {tp}]]"), "")
    return table


def diagnosis_tables(d: dict, title: str):
    """evaluate's table by diagnosis (evaluate.diagnosis_metrics): the summary rows, then one row per diagnosis."""
    from rich.table import Table

    from .diagnoses import NAMES
    from .evaluate import DIAGNOSIS_SUMMARY

    def cell(key: str) -> str:
        ci = d.get(f"{key}_ci")
        return fmt(d.get(key)) + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    table = Table(title=f"{title} by diagnosis: n={d['n']}, flagged at p >= {d['threshold']:.3f}")
    table.add_column("metric", justify="left")
    table.add_column("value (95% CI)", justify="right")
    for key in DIAGNOSIS_SUMMARY:
        if key in d:
            table.add_row(key, cell(key))
    per = Table(show_header=True)
    for col in ("diagnosis", "n", "flagged", "recall", "ROC-AUC (one vs rest)"):
        per.add_column(col, justify="left" if col == "diagnosis" else "right")
    for dx, n in d["n_per_diagnosis"].items():
        per.add_row(NAMES[dx], str(n), cell(f"flagged_{dx}"), cell(f"recall_{dx}") if f"recall_{dx}" in d else "",
                    cell(f"roc_auc_{dx}") if f"roc_auc_{dx}" in d else "")
    return table, per


def predict_table(rows: list[dict], threshold: float, seven: bool = False):
    """predict's table; paths relative to their common folder, so rows differ at any terminal width. A seven-class
    model's: the verdict, p(skin cancer) (what it is decided on), p(melanoma) and the three likeliest diagnoses."""
    from rich.table import Table

    from .diagnoses import short_differential

    try:
        common = os.path.commonpath([os.path.dirname(os.path.abspath(r["path"])) for r in rows])
    except ValueError:  # paths on different drives
        common = ""
    common = "" if common == os.path.sep else common
    title = (f"{'p(skin cancer) ' if seven else ''}threshold {threshold:.3f}"
             + (f"; files under {common}" if common and len(rows) > 1 else ""))
    table = Table(title=title)
    table.add_column("file", justify="left", overflow="fold")
    for name in (("verdict", "p(skin cancer)", "p(melanoma)", "likeliest diagnoses") if seven
                 else ("p(malignant)", "label")):
        table.add_column(name, justify="right" if name.startswith("p(") else "left", overflow="fold")
    for r in rows:
        name = os.path.relpath(os.path.abspath(r["path"]), common) if common and len(rows) > 1 else r["path"]
        if r["status"] == "ok":
            style = "red" if r["label"] == "malignant" else "green"
            if seven:
                table.add_row(name, f"[{style}]{r['verdict']}[/]", f"{r['p_skin_cancer']:.3f}",
                              f"{r['p_melanoma']:.3f}", short_differential(r["diagnoses"]))
            else:
                table.add_row(name, f"{r['p_malignant']:.3f}", f"[{style}]{r['label']}[/]")
        else:
            table.add_row(name, "-", f"[yellow]{r['status']}: {r['error']}[/]", *([""] * 2 * seven))
    return table


def shortcut_table(shortcuts: dict, data: Path):
    """eda's shortcut check: each feature's class means and its AUC alone."""
    from rich.table import Table

    table = Table(title=f"Shortcut check on {data} (all splits): AUC of each feature alone, 0.5 = no signal")
    for col in ("feature", "benign mean", "malignant mean", "AUC"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    for name, row in shortcuts.items():
        table.add_row(name, fmt(row["benign_mean"]), fmt(row["malignant_mean"]), fmt(row["auc"]))
    return table


def rows_text(rows: list[dict], form: str) -> str:
    """``predict``'s rows as ``json`` or ``csv`` text; the CSV keeps the differential in one cell (every diagnosis
    with its probability)."""
    if form == "json":
        return json.dumps(rows, indent=2) + "\n"
    from .diagnoses import short_differential

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([r | {"diagnoses": short_differential(r["diagnoses"], None) or None} for r in rows])
    return buf.getvalue()
