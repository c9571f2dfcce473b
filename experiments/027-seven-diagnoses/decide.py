"""027's ship rule (NOTES.md, written before the run), clause by clause, from what eval.sh wrote:

    python experiments/027-seven-diagnoses/decide.py
"""

import json
from pathlib import Path

r = json.loads((Path(__file__).parent / "diagnoses.json").read_text())
p, ext, kag = r["paired"], r["external"], r["kaggle_clean"]


def change(d: dict) -> str:
    lo, hi = d["difference_ci"]
    return f"{d['a']:.3f} -> {d['b']:.3f}, {d['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"


cb, mel = p["external_cancer_vs_benign"], p["external_melanoma_vs_rest"]
mel_flagged = ext["flagged_mel"]
clauses = [
    ("1 cancer-vs-benign ROC-AUC paired >= +0.020, interval above 0", change(cb["roc_auc"]),
     cb["roc_auc"]["difference"] >= 0.020 and cb["roc_auc"]["difference_ci"][0] > 0),
    ("2 cancer sensitivity >= 0.85; benign specificity paired, interval above 0",
     f"sensitivity {cb['recall']['b']:.3f}; specificity {change(cb['specificity'])}",
     cb["recall"]["b"] >= 0.85 and cb["specificity"]["difference_ci"][0] > 0),
    ("3 melanoma-vs-rest ROC-AUC paired, lower end > -0.020; melanoma sensitivity at the verdict >= 0.85",
     f"{change(mel['roc_auc'])}; melanomas flagged {mel_flagged:.3f}",
     mel["roc_auc"]["difference_ci"][0] > -0.020 and mel_flagged >= 0.85),
    ("4 Kaggle clean ROC-AUC of p(melanoma) >= 0.970, sensitivity >= 0.90",
     f"{kag['melanoma_roc_auc']:.3f}, sensitivity {kag['recall']:.3f}",
     kag["melanoma_roc_auc"] >= 0.970 and kag["recall"] >= 0.90),
    ("5 gate: external refused <= 2%, non-lesions refused >= 95%",
     f"{100 * ext['refused']:.1f}%, {100 * r['nonlesion']['refused']:.1f}% of {r['nonlesion']['n']}",
     ext["refused"] <= 0.02 and r["nonlesion"]["refused"] >= 0.95),
]
for name, value, ok in clauses:
    print(f"{'pass' if ok else 'FAIL'}  {name}: {value}")
print("ships" if all(ok for *_, ok in clauses) else "does not ship: the bundled model stays")
