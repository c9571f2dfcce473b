"""Ship rules: clauses written in an experiment's NOTES.md before its run, checked against what its benchmarks
wrote. An experiment's ``decide.py`` lists its clauses with these helpers and prints the verdict.

    python experiments/028-site-views/decide.py
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Clause:
    name: str  # the clause as the rule states it
    value: str  # what was measured
    ok: bool


def change(d: dict) -> str:
    """A paired comparison (``bench.paired``'s dict) as "a -> b, +diff (lo to hi)"."""
    lo, hi = d["difference_ci"]
    return f"{d['a']:.3f} -> {d['b']:.3f}, {d['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"


def verdict(clauses: list[Clause]) -> bool:
    """Print each clause, pass or FAIL, and the decision; True when every clause holds."""
    for c in clauses:
        print(f"{'pass' if c.ok else 'FAIL'}  {c.name}: {c.value}")
    ships = all(c.ok for c in clauses)
    print("ships" if ships else "does not ship: the bundled model stays")
    return ships


def diagnosis_clauses(r: dict) -> list[Clause]:
    """The five clauses a seven-class candidate is judged by against the bundled model (experiments/027's rule,
    kept by 028), from ``benchmarks/diagnoses.py --against`` output ``r``."""
    p, ext, kag = r["paired"], r["external"], r["kaggle_clean"]
    cb, mel = p["external_cancer_vs_benign"], p["external_melanoma_vs_rest"]
    return [
        Clause("1 cancer-vs-benign ROC-AUC paired >= +0.020, interval above 0", change(cb["roc_auc"]),
               cb["roc_auc"]["difference"] >= 0.020 and cb["roc_auc"]["difference_ci"][0] > 0),
        Clause("2 cancer sensitivity >= 0.85; benign specificity paired, interval above 0",
               f"sensitivity {cb['recall']['b']:.3f}; specificity {change(cb['specificity'])}",
               cb["recall"]["b"] >= 0.85 and cb["specificity"]["difference_ci"][0] > 0),
        Clause("3 melanoma-vs-rest ROC-AUC paired, lower end > -0.020; melanoma sensitivity at the verdict >= 0.85",
               f"{change(mel['roc_auc'])}; melanomas flagged {ext['flagged_mel']:.3f}",
               mel["roc_auc"]["difference_ci"][0] > -0.020 and ext["flagged_mel"] >= 0.85),
        Clause("4 Kaggle clean ROC-AUC of p(melanoma) >= 0.970, sensitivity >= 0.90",
               f"{kag['melanoma_roc_auc']:.3f}, sensitivity {kag['recall']:.3f}",
               kag["melanoma_roc_auc"] >= 0.970 and kag["recall"] >= 0.90),
        Clause("5 gate: external refused <= 2%, non-lesions refused >= 95%",
               f"{100 * ext['refused']:.1f}%, {100 * r['nonlesion']['refused']:.1f}% of {r['nonlesion']['n']}",
               ext["refused"] <= 0.02 and r["nonlesion"]["refused"] >= 0.95),
    ]


def refused_at_most(stress: dict, limits: dict[str, float], name: str) -> Clause:
    """One clause: each family's refused share on the stress suite (``benchmarks/stress.py`` output) at most its
    limit."""
    fams = stress["families"]
    value = ", ".join(f"{f} {100 * fams[f]['refused']:.1f}% (<= {100 * lim:.1f}%)" for f, lim in limits.items())
    return Clause(name, value, all(fams[f]["refused"] <= lim for f, lim in limits.items()))


def site_shift_clause(stress: dict) -> Clause:
    """Clause 6 of experiments/028's rule, kept by 029-031: the stress suite's trained-on families refused <= 10%,
    the held-out ruler and bubbles no more than the bundled model's (33.1%, 5.2%)."""
    return refused_at_most(stress, {"zoom_out": 0.10, "grid": 0.10, "blur": 0.10, "ruler": 0.331, "bubbles": 0.052},
                           "6 site shift: zoom-out, grid, blur refused <= 10%; held-out ruler <= 33.1%, "
                           "bubbles <= 5.2%")


def one_logit_clauses(compare: dict, gate: dict, ms: float | None = None,
                      ms_bundled: float | None = None) -> list[Clause]:
    """The clauses a one-logit candidate was judged by against the bundled model (experiments/023's rule, kept by
    026): ``compare`` is ``benchmarks/compare_models.py`` bundled -> candidate, ``gate`` is
    ``benchmarks/gate_sources.py``'s; the fifth, ONNX batch-1 latency, only when both latencies are given."""
    from . import CLEAN, EXTERNAL_TITLE

    ext, clean = compare["sets"][EXTERNAL_TITLE], compare["sets"][CLEAN]
    auc, nb = ext["roc_auc"], ext["net_benefit"]
    shipped, held_out = gate["shipped_gate"], {s: r["refused"] for s, r in gate["held_out"].items()}
    out = [
        Clause("1 external ROC-AUC, paired change >= +0.020 with its interval above 0", change(auc),
               auc["difference"] >= 0.020 and auc["difference_ci"][0] > 0),
        Clause("2 external sensitivity >= 0.85; net benefit at risk 0.10 >= the bundled model's",
               f"sensitivity {ext['recall']['b']:.3f}, specificity {ext['specificity']['b']:.3f}; net benefit "
               f"{change(nb)}", ext["recall"]["b"] >= 0.85 and nb["b"] >= nb["a"]),
        Clause("3 Kaggle clean ROC-AUC >= 0.970; paired sensitivity interval's low end > -0.05",
               f"ROC-AUC {clean['roc_auc']['b']:.3f}; sensitivity {change(clean['recall'])}",
               clean["roc_auc"]["b"] >= 0.970 and clean["recall"]["difference_ci"][0] > -0.05),
        Clause("4 gate: external <= 2%, non-lesions >= 95%, each source held out <= 2.7%",
               f"external {shipped['external_refused']:.1%}, non-lesions {shipped['nonlesions_refused']:.1%}, held "
               "out " + ", ".join(f"{s} {r:.1%}" for s, r in held_out.items()),
               shipped["external_refused"] <= 0.02 and shipped["nonlesions_refused"] >= 0.95
               and max(held_out.values()) <= 0.027)]
    if ms is not None and ms_bundled is not None:
        out.append(Clause("5 ONNX Runtime batch-1 latency <= 2x the bundled model's",
                          f"{ms:.1f} ms against {ms_bundled:.1f} ms", ms <= 2 * ms_bundled))
    return out
