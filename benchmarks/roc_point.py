"""What a model's ranking allows on the external set: the specificity where its ROC reaches a sensitivity (0.85,
the issue's target), with a 95% bootstrap interval.

    python benchmarks/roc_point.py MODEL_DIR [MODEL_DIR ...] [--sensitivity 0.85] [--out runs/roc_point.json]

A diagnostic, not an operating point: the threshold it implies is read off the external set, which no shipped
threshold may be. It separates the two halves of a gap: a ranking that cannot reach the target at any threshold,
and a threshold rule on validation images that does not land where the ranking could.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from melanoma.bench import labels_and_scores as scores
from melanoma.bench import standard_sets
from melanoma.engines import load_predictor

EXTERNAL = "ISIC 2018 test (external)"


def specificity_at(labels: np.ndarray, probs: np.ndarray, sensitivity: float) -> float:
    fpr, tpr, _ = roc_curve(labels, probs)
    return float(1 - fpr[np.argmax(tpr >= sensitivity)])  # the first (highest-threshold) point that reaches it


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--sensitivity", type=float, default=0.85)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("runs/roc_point.json"))
    args = ap.parse_args()
    samples = standard_sets()[EXTERNAL]
    result = {"set": EXTERNAL, "sensitivity": args.sensitivity, "models": {}}
    for model in args.models:
        labels, probs = scores(load_predictor(model), samples)  # every readable image, refused or not
        rng = np.random.default_rng(0)
        draws = (rng.integers(0, len(labels), len(labels)) for _ in range(args.resamples))
        boot = [specificity_at(labels[i], probs[i], args.sensitivity) for i in draws if 0 < labels[i].sum() < len(i)]
        r = {"n": int(len(labels)), "n_malignant": int(labels.sum()),
             "specificity": specificity_at(labels, probs, args.sensitivity),
             "specificity_ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}
        result["models"][str(model)] = r
        print(f"| {model} | {r['n']} ({r['n_malignant']} mel.) | {r['specificity']:.3f} "
              f"({r['specificity_ci'][0]:.3f}-{r['specificity_ci'][1]:.3f}) |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
