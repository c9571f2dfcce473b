"""032's ship rule (NOTES.md, written before any candidate was measured), clause by clause, for one candidate:

    python experiments/032-lesion-crop/decide.py I      # or T; C is the control, judged the same way for the record
    python experiments/032-lesion-crop/decide.py E experiments/033-lesion-evidence   # a later candidate's files
"""

import json
import sys
from pathlib import Path

from melanoma.bench.rules import Clause, change, refused_at_most, verdict

here, name = Path(__file__).parent, sys.argv[1]
files = Path(sys.argv[2]) if len(sys.argv) > 2 else here  # where eval.sh wrote the candidate's measurements
diag = json.loads((files / f"diagnoses-{name}.json").read_text())
stress = json.loads((files / f"stress-{name}.json").read_text())
speed = json.loads((files / f"speed-{name}.json").read_text())
bundled = json.loads((here.parent / "031-broad-negatives" / "stress-030.json").read_text())["families"]
zoom = stress["families"]["zoom_out"]["against"]
p, ext, kag = diag["paired"], diag["external"], diag["kaggle_clean"]
cb, mel = p["external_cancer_vs_benign"], p["external_melanoma_vs_rest"]
no_lower = {f: r["against"]["cancer_roc_auc"] for f, r in stress["families"].items()}
ships = verdict([
    Clause("1 zoom-out against the bundled model: cancer-vs-benign ROC-AUC and benign specificity, intervals above 0",
           f"ROC-AUC {change(zoom['cancer_roc_auc'])}; specificity {change(zoom['specificity'])}",
           zoom["cancer_roc_auc"]["difference_ci"][0] > 0 and zoom["specificity"]["difference_ci"][0] > 0),
    Clause("2 external ROC-AUC paired (cancer vs benign, melanoma vs rest): change >= -0.010, upper end >= 0; "
           "cancer sensitivity >= 0.90",
           f"{change(cb['roc_auc'])}; {change(mel['roc_auc'])}; sensitivity {cb['recall']['b']:.3f}",
           all(d["roc_auc"]["difference"] >= -0.010 and d["roc_auc"]["difference_ci"][1] >= 0 for d in (cb, mel))
           and cb["recall"]["b"] >= 0.90),
    Clause("3 Kaggle clean ROC-AUC of p(melanoma) >= 0.970, sensitivity >= 0.90",
           f"{kag['melanoma_roc_auc']:.3f}, sensitivity {kag['recall']:.3f}",
           kag["melanoma_roc_auc"] >= 0.970 and kag["recall"] >= 0.90),
    Clause("4 gate: external refused <= 2%, the 148 non-lesions >= 95%, the wider 400 >= 95%",
           f"{100 * ext['refused']:.1f}%, {100 * diag['nonlesion']['refused']:.1f}% of {diag['nonlesion']['n']}, "
           f"{100 * diag['nonlesion_pictures']['refused']:.1f}% of {diag['nonlesion_pictures']['n']}",
           ext["refused"] <= 0.02 and diag["nonlesion"]["refused"] >= 0.95
           and diag["nonlesion_pictures"]["refused"] >= 0.95),
    Clause("5a stress suite: no family's cancer-vs-benign ROC-AUC below the bundled model's by more than 0.010",
           ", ".join(f"{f} {d['difference']:+.3f}" for f, d in no_lower.items()),
           all(d["difference"] >= -0.010 for d in no_lower.values())),
    refused_at_most(stress, {"zoom_out": 0.10, "grid": 0.10, "blur": 0.10, "ruler": bundled["ruler"]["refused"],
                             "bubbles": bundled["bubbles"]["refused"]},
                    "5b zoom-out, grid, blur refused <= 10%; ruler and bubbles no more than the bundled model's"),
    Clause("6 end-to-end images/s >= half the bundled model's (same session, alternating)",
           f"{speed['images_per_s']['candidate']} against {speed['images_per_s']['bundled']} ({speed['ratio']:.2f}x)",
           speed["ratio"] >= 0.5)])
val = diag["validation"]
auc = {s: v.get("cancer_vs_benign_roc_auc", v.get("melanoma_roc_auc")) for s, v in val.items()}  # Kaggle: melanoma
weighted = sum(v["n"] * auc[s] for s, v in val.items()) / sum(v["n"] for v in val.values())
print(f"tie-break: validation cancer-vs-benign ROC-AUC, n-weighted over {', '.join(val)}: {weighted:.4f}")
