"""Two models (or one model two ways) on the same images: the paired change in ROC-AUC, sensitivity,
specificity and decision-curve net benefit (``evaluate.NET_BENEFIT_RISK``), each at its own model's threshold.

    python benchmarks/compare_models.py MODEL_A MODEL_B [--out experiments/NNN-name/compare.json]

Sets: the Kaggle clean test and the external ISIC 2018 Task 3 test. Each change B - A has a 95% bootstrap interval
over the same resampled images (``evaluate.paired_difference``), far narrower than the two models' own intervals
when they err on the same images, so recipes that differ by less than their intervals can still be told apart, or
not. ``benchmarks/tta.py`` does the same for one model with and without test-time augmentation (melanoma.bench).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from melanoma.bench import PAIRED_CI, describe, paired_sets, standard_sets
from melanoma.engines import load_predictor

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "compare.json")
    args = ap.parse_args()
    a, b = load_predictor(args.a, num_workers=2), load_predictor(args.b, num_workers=2)
    result = {"a": describe(args.a, a), "b": describe(args.b, b), "ci": PAIRED_CI,
              "sets": paired_sets(a, b, standard_sets())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
