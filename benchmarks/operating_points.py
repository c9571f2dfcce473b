"""Test accuracy at thresholds chosen on validation by different rules: how much does the operating point cost?

    python benchmarks/operating_points.py runs/VAL_EVAL runs/TEST_EVAL [--out docs/results/operating_points.json]

Both folders are ``melanoma evaluate`` outputs (predictions.csv) of the same model: one on its run's validation
images (``melanoma evaluate runs/NAME/split.csv --split val``), one on the test split. Every threshold is chosen
on the validation predictions alone; the test predictions are only scored. The shipped rule (sensitivity >= 0.95
on validation) trades accuracy for sensitivity; the published accuracies this project compares itself with are
read at the balanced or argmax point, so this prints both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.calibrate import choose_threshold
from melanoma.evaluate import metrics_with_ci, read_predictions


def max_accuracy_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The validation probability at which calling ``p >= t`` malignant is most often right (ties: lowest t)."""
    candidates = np.unique(probs)
    return float(candidates[int(np.argmax([((probs >= t) == labels).mean() for t in candidates]))])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("val", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    _, yv, pv = read_predictions(args.val)
    _, yt, pt = read_predictions(args.test)
    rules = {"sensitivity >= 0.95 (shipped rule)": choose_threshold(pv, yv, 0.95),
             "Youden's J": choose_threshold(pv, yv, None),
             "maximum accuracy": max_accuracy_threshold(yv, pv),
             "0.5 (no choice)": 0.5}
    out = {"n_val": len(yv), "n_test": len(yt), "rules": {}}
    print(f"thresholds chosen on validation (n = {len(yv)}), scored on test (n = {len(yt)})")
    for name, t in rules.items():
        m = metrics_with_ci(yt, pt, t)
        out["rules"][name] = {"threshold": t, "val_accuracy": float(((pv >= t) == yv).mean()),
                              **{k: m[k] for k in ("accuracy", "accuracy_ci", "recall", "recall_ci",
                                                   "specificity", "specificity_ci")}}
        lo, hi = m["accuracy_ci"]
        print(f"{name:36s} t = {t:.3f}  test accuracy {m['accuracy']:.4f} ({lo:.3f}-{hi:.3f})  "
              f"sensitivity {m['recall']:.3f}  specificity {m['specificity']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
