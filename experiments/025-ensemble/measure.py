"""025: the bundled network and 023 s43 averaged (NOTES.md). Writes result.json here and prints the rule's clauses.

    python experiments/025-ensemble/measure.py runs/e023s43/model runs/e023s43/split.csv

The ensemble's score is the mean of the members' calibrated logits (logit / own temperature); its threshold is
the bundled recipe's rule on the members' shared validation images. Every image is scored, refused by a gate or
not, as benchmarks/sources_table.py counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.bench import labels_and_scores as scores
from melanoma.bench import standard_sets
from melanoma.calibrate import choose_threshold_per_source, log_odds, pooled_sources, sigmoid
from melanoma.config import DEFAULT_MODEL_DIR
from melanoma.datasets import read_split
from melanoma.engines import load_predictor
from melanoma.evaluate import metrics_with_ci, paired_difference

EXT, CLEAN = "ISIC 2018 test (external)", "Kaggle clean test"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("second", type=Path, help="the second member's model folder")
    ap.add_argument("split", type=Path, help="the split.csv both members were trained on")
    args = ap.parse_args()

    members = [load_predictor(DEFAULT_MODEL_DIR, num_workers=2), load_predictor(args.second, num_workers=2)]
    val = read_split(args.split)["val"]
    sets = {"validation": val, **standard_sets()}
    y, z = {}, {}
    for name, samples in sets.items():
        both = [scores(m, samples) for m in members]
        if not (both[0][0] == both[1][0]).all():
            raise SystemExit(f"{name}: the members could not read the same images")
        y[name], z[name] = both[0][0], np.mean([log_odds(p) for _, p in both], axis=0)
        z[f"{name}/bundled"] = log_odds(both[0][1])
    recipe = members[0].cfg.training["recipe"]  # the bundled model's threshold rule, as it recorded it
    src, target = pooled_sources([s.source for s in val], recipe["threshold_groups"]), recipe["target_sensitivity"]
    threshold, own = choose_threshold_per_source(sigmoid(z["validation"]), y["validation"], src, target)
    # the rule re-run on the bundled member alone must give its shipped threshold: the check that this is its rule
    again, _ = choose_threshold_per_source(sigmoid(z["validation/bundled"]), y["validation"], src, target)
    if abs(again - members[0].threshold) > 1e-6:
        raise SystemExit(f"the rule gives the bundled model {again:.4f}, not its {members[0].threshold:.4f}")
    result = {"members": ["bundled", str(args.second)], "threshold": threshold, "own_thresholds": own, "sets": {}}
    for name in (EXT, CLEAN):
        p, p_bundled = sigmoid(z[name]), sigmoid(z[f"{name}/bundled"])
        m = metrics_with_ci(y[name], p, threshold)
        d = paired_difference(y[name], p_bundled, p, members[0].threshold, threshold)
        result["sets"][name] = {**{k: m[k] for k in ("n", "n_malignant", "roc_auc", "roc_auc_ci", "recall",
                                                     "recall_ci", "specificity", "specificity_ci")},
                                "paired_against_bundled": {k: d[k] for k in ("roc_auc", "recall", "specificity")}}
    (Path(__file__).parent / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    ext, clean = result["sets"][EXT], result["sets"][CLEAN]
    auc = ext["paired_against_bundled"]["roc_auc"]
    checks = [("external ROC-AUC paired >= +0.020, interval above 0", auc["difference"] >= 0.020
               and auc["difference_ci"][0] > 0, f"{auc['a']:.3f} -> {auc['b']:.3f}, {auc['difference']:+.3f} "
               f"({auc['difference_ci'][0]:+.3f} to {auc['difference_ci'][1]:+.3f})"),
              ("external sensitivity >= 0.85", ext["recall"] >= 0.85,
               f"{ext['recall']:.3f} at specificity {ext['specificity']:.3f}, threshold {threshold:.3f}"),
              ("Kaggle clean ROC-AUC >= 0.970", clean["roc_auc"] >= 0.970, f"{clean['roc_auc']:.3f}")]
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print("worth an issue" if all(ok for _, ok, _ in checks) else "not worth building")


if __name__ == "__main__":
    main()
