"""One self-contained HTML report of an evaluation folder (``melanoma evaluate --out DIR``).

Everything is inlined (plots and thumbnails as base64), so the file can be mailed or archived alone.
It reads what the folder has: metrics.json, predictions.csv (the curves are drawn from it unless
``evaluate --plots`` wrote them), audit.json, eda.json, and the model folder's training_log.csv.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

from PIL import Image

from .config import DEFAULT_MODEL_DIR, atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d3557;color:#fff;padding:20px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85;font-size:14px}main{padding:20px 32px;max-width:1200px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin-bottom:18px;box-shadow:0 1px 3px #0001}
h2{font-size:17px;margin:0 0 12px;color:#1d3557}table{border-collapse:collapse;font-size:13px}
td,th{padding:4px 10px;border-bottom:1px solid #e4e7ec;text-align:right}th{background:#f0f2f5}
td:first-child,th:first-child{text-align:left}.plots img{width:300px;margin:4px}
.gallery figure{display:inline-block;margin:4px;text-align:center;font-size:11px}
.gallery img{width:112px;height:112px;object-fit:cover;border-radius:4px}
.note{font-size:13px;color:#555}.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px}
"""


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _thumb(path: str, size: int = 112) -> bytes | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size * 2, size * 2))
            buf = io.BytesIO()
            im.save(buf, "PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def metrics_table(m: dict) -> str:
    from .evaluate import SUMMARY

    def ci(k: str) -> str:
        lo_hi = m.get(f"{k}_ci")
        return f"{lo_hi[0]:.3f} – {lo_hi[1]:.3f}" if lo_hi else ""

    rows = "".join(f"<tr><td>{k}</td><td>{_fmt(m.get(k))}</td><td>{ci(k)}</td></tr>" for k in SUMMARY if k in m)
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    return (f"<p class=note>n = {m['n']} ({m['n_benign']} benign, {m['n_malignant']} malignant); threshold "
            f"{m['threshold']:.3f}; confusion: TN {tn}, FP {fp}, FN {fn}, TP {tp}</p>"
            f"<table><tr><th>metric</th><th>value</th><th>95% CI</th></tr>{rows}</table>")


def training_curves(model_dir: Path) -> bytes | None:
    log = model_dir / "training_log.csv"
    if not log.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log.open()))
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    for key in ("train_loss", "val_loss"):
        a.plot(epochs, [float(r[key]) if r[key] else None for r in rows], "o-", label=key)
    a.set_xlabel("epoch")
    a.legend()
    b.plot(epochs, [float(r["val_auc"]) if r["val_auc"] else None for r in rows], "o-", label="val ROC-AUC")
    b.plot(epochs, [float(r["val_acc"]) if r["val_acc"] else None for r in rows], "o-", label="val accuracy")
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def gallery(rows: list[dict], title: str) -> str:
    figs = []
    for r in rows:
        png = _thumb(r["path"])
        if png:
            figs.append(f"<figure>{_img_tag(png, r['path'])}<figcaption>p={float(r['p_malignant']):.3f}<br>"
                        f"{html.escape(Path(r['path']).name)}</figcaption></figure>")
    return f"<h3>{title}</h3><div class=gallery>{''.join(figs) or '<p class=note>none</p>'}</div>"


def curve_pngs(run_dir: Path, m: dict) -> dict[str, bytes]:
    """The evaluation's curve PNGs: those ``evaluate --plots`` wrote, else drawn now from its predictions.csv."""
    from .evaluate import plot_pngs, plot_title, read_predictions

    names = ("roc.png", "pr.png", "confusion_matrix.png", "reliability.png")
    if all((run_dir / f).is_file() for f in names):
        return {f: (run_dir / f).read_bytes() for f in names}
    if not (run_dir / "predictions.csv").is_file():
        return {}
    _, labels, probs = read_predictions(run_dir)
    drawn = plot_pngs(labels, probs, m, plot_title(m))
    return {f: drawn[f] for f in names if f in drawn}


def diagnosis_section(d: dict, title: str) -> str:
    """Metrics by diagnosis (:func:`melanoma.evaluate.diagnosis_metrics`): the summary, one row per diagnosis and,
    for a seven-class model, the confusion matrix as a picture."""
    from .diagnoses import NAMES
    from .evaluate import DIAGNOSIS_SUMMARY, diagnosis_confusion_png

    def cell(key: str) -> str:
        ci = d.get(f"{key}_ci")
        return f"{_fmt(d.get(key))}" + (f" <span class=ci>({ci[0]:.3f}-{ci[1]:.3f})</span>" if ci else "")

    summary = "".join(f"<tr><td>{k}</td><td>{cell(k)}</td></tr>" for k in DIAGNOSIS_SUMMARY if k in d)
    per = "".join(f"<tr><td>{html.escape(NAMES[dx])}</td><td>{n}</td><td>{cell(f'flagged_{dx}')}</td>"
                  f"<td>{cell(f'recall_{dx}') if f'recall_{dx}' in d else ''}</td>"
                  f"<td>{cell(f'roc_auc_{dx}') if f'roc_auc_{dx}' in d else ''}</td></tr>"
                  for dx, n in d["n_per_diagnosis"].items())
    picture = _img_tag(diagnosis_confusion_png(d, title), "confusion by diagnosis") if "confusion_matrix" in d else ""
    return (f"<section><h2>By diagnosis ({d['n']} images that name one; flagged at p &ge; {d['threshold']:.3f})</h2>"
            f"<table>{summary}</table><table><tr><th>diagnosis</th><th>n</th><th>flagged</th><th>recall</th>"
            f"<th>ROC-AUC, one vs rest</th></tr>{per}</table>{picture}</section>")


def build_report(run_dir: str | Path, out: str | Path | None = None, n_gallery: int = 8) -> Path:
    """Write ``report.html`` for the evaluation folder ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.json: run `melanoma evaluate ... --out {run_dir}` first")
    m = json.loads(metrics_path.read_text())
    model_dir = DEFAULT_MODEL_DIR if m.get("model") in (None, "bundled") else Path(m["model"])
    parts = [f"<header><h1>melanoma-classifier evaluation report</h1><p>{html.escape(m['data'])}, "
             f"{html.escape(m['split'])} split · model: {html.escape(str(m.get('model')))} · "
             f"{html.escape(m.get('ci', ''))}</p></header><main>",
             "<section class=warn>A research tool, not a diagnosis. Numbers below come from one dataset; "
             "performance on other clinics, cameras and skin types may be lower.</section>"]
    parts.append(f"<section><h2>Metrics, full {html.escape(m['split'])} split</h2>{metrics_table(m)}</section>")
    if "clean" in m:
        parts.append(f"<section><h2>Metrics, clean {html.escape(m['split'])} split (images with no near-duplicate in "
                     f"train; {m['clean']['n_excluded']} excluded)</h2>{metrics_table(m['clean'])}</section>")
    if "diagnosis" in m:
        parts.append(diagnosis_section(m["diagnosis"], f"{m['split']} split"))
    plots = [_img_tag(png, name) for name, png in curve_pngs(run_dir, m).items()]
    parts.append(f"<section><h2>Curves</h2><div class=plots>{''.join(plots)}</div>"
                 f"<p class=note>Temperature {m.get('temperature', 1.0):.3f} and threshold {m['threshold']:.3f} "
                 f"were fitted on validation data, never on this split.</p></section>")
    curves = training_curves(model_dir)
    if curves:
        parts.append(f"<section><h2>Training curves (validation split)</h2>{_img_tag(curves, 'training')}</section>")
    for name, title in (("audit.json", "Duplicate audit"), ("eda.json", "EDA and shortcut check")):
        path = run_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            if name == "eda.json":
                rows = "".join(f"<tr><td>{k}</td><td>{_fmt(v['benign_mean'])}</td><td>{_fmt(v['malignant_mean'])}"
                               f"</td><td>{_fmt(v['auc'])}</td></tr>" for k, v in data["shortcuts"].items())
                body = (f"<p class=note>Counts: {html.escape(json.dumps(data['counts']))}. A feature whose AUC is far "
                        f"from 0.5 separates the classes without looking at the lesion.</p><table><tr><th>feature</th>"
                        f"<th>benign mean</th><th>malignant mean</th><th>AUC alone</th></tr>{rows}</table>")
            else:
                body = f"<pre>{html.escape(json.dumps(data, indent=1))}</pre>"
            parts.append(f"<section><h2>{title}</h2>{body}</section>")
    preds_path = run_dir / "predictions.csv"
    if preds_path.is_file():
        preds = list(csv.DictReader(preds_path.open()))
        thr = m["threshold"]
        fn = sorted([r for r in preds if r["label"] == "1" and float(r["p_malignant"]) < thr],
                    key=lambda r: float(r["p_malignant"]))[:n_gallery]
        fp = sorted([r for r in preds if r["label"] == "0" and float(r["p_malignant"]) >= thr],
                    key=lambda r: -float(r["p_malignant"]))[:n_gallery]
        parts.append(f"<section><h2>Most confident mistakes</h2>"
                     f"{gallery(fn, f'False negatives (malignant called benign), {len(fn)} shown')}"
                     f"{gallery(fp, f'False positives (benign called malignant), {len(fp)} shown')}</section>")
    parts.append("</main>")
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>melanoma-classifier report</title>"
           f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = Path(out) if out else run_dir / "report.html"
    atomic_write_text(out, doc)
    return out
