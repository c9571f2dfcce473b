"""Test-time augmentation (``--tta``, the 8 flips/rotations averaged) against a single view, on the same images.

    python benchmarks/tta.py [--model DIR] [--out docs/results/tta_NAME.json]

Per set (the Kaggle clean test and the external ISIC 2018 Task 3 test): ROC-AUC, sensitivity and specificity with
and without TTA and the paired change with a 95% bootstrap interval (``compare_models.py``: the same resampled images
scored both ways, so the interval is of the change, not of either number). The threshold was chosen without TTA; a
model meant to run with it would want its threshold chosen with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from melanoma.bench import PAIRED_CI as CI
from melanoma.bench import describe, paired_sets, standard_sets
from melanoma.engines import load_predictor

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "tta.json")
    args = ap.parse_args()
    plain = load_predictor(args.model, num_workers=2)
    tta = load_predictor(args.model, num_workers=2, tta=True)
    result = {**describe(args.model, plain), "ci": CI.replace("B - A", "TTA - one view"),
              "sets": paired_sets(plain, tta, standard_sets())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
