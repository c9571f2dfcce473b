"""`melanoma adapt` measured: batch-norm statistics re-estimated on a new site's unlabelled images (AdaBN), on the
external ISIC 2018 Task 3 test set.

    python benchmarks/site_adaptation.py MODEL_DIR [--out docs/results/NAME.json]

The external images are split in two random halves. The model is adapted on one half's images (their labels
unused; `melanoma.nn.adapt.adapt_model_folder`, as the command does) and scored on the *other* half, then the other way
round; the unadapted model is scored on the same halves. Per half: ROC-AUC, sensitivity / specificity at the
model's own threshold (temperature unchanged), each with a 95% bootstrap interval, the share of images the
unchanged gate refuses, and the paired change adapted - unadapted (the same images, so its interval is the
change's own).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from melanoma.bench import data_root
from melanoma.config import resolve_model_dir
from melanoma.datasets import discover
from melanoma.engines import load_predictor
from melanoma.evaluate import metrics_with_ci, paired_difference
from melanoma.nn.adapt import adapt_model_folder

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = data_root() / "isic2018_test"


def score(model_dir: Path, samples: list) -> tuple[dict, list[float], float]:
    """The summary row, the probabilities and the threshold of one model on ``samples``."""
    predictor = load_predictor(model_dir, num_workers=2)
    rs = predictor.run(samples)
    y = [s.label for s in samples]
    p = [float(predictor.proba_from_logits(r["logit"])) for r in rs]
    m = metrics_with_ci(y, p, predictor.threshold)
    row = {**{k: m[k] for k in ("n", "n_malignant", "roc_auc", "roc_auc_ci", "recall", "recall_ci", "specificity",
                                "specificity_ci")},
           "refused": float(np.mean([predictor.is_out_of_distribution(r) for r in rs]))}
    return row, p, predictor.threshold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "site_adaptation.json")
    args = ap.parse_args()

    model = resolve_model_dir(args.model)
    samples = discover(EXTERNAL)["test"]
    halves = np.array_split(np.random.default_rng(0).permutation(len(samples)), 2)
    result = {"model": str(args.model), "method": "AdaBN via melanoma.nn.adapt.adapt_model_folder", "halves": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (fit, test) in enumerate(((halves[0], halves[1]), (halves[1], halves[0]))):
            adapted, _ = adapt_model_folder(model, [samples[i].path for i in fit], Path(tmp) / f"half{k}")
            on = [samples[i] for i in test]
            (before, p_before, t_before), (after, p_after, t_after) = score(model, on), score(adapted, on)
            paired = paired_difference([s.label for s in on], p_before, p_after, t_before, t_after)
            row = {"adapted_on_n": len(fit), "unadapted": before, "adapted": after,
                   "paired_change": {k: paired[k] for k in ("roc_auc", "recall", "specificity")}}
            result["halves"].append(row)
            for name in ("unadapted", "adapted"):
                m = row[name]
                print(f"| half {k + 1} (n = {m['n']}) | {name} | {m['roc_auc']:.3f} ({m['roc_auc_ci'][0]:.3f}-"
                      f"{m['roc_auc_ci'][1]:.3f}) | {m['recall']:.3f} "
                      f"({m['recall_ci'][0]:.2f}-{m['recall_ci'][1]:.2f}) "
                      f"| {m['specificity']:.3f} ({m['specificity_ci'][0]:.2f}-{m['specificity_ci'][1]:.2f}) "
                      f"| {100 * m['refused']:.1f}% |", flush=True)
            d = row["paired_change"]["roc_auc"]
            print(f"half {k + 1}: ROC-AUC change {d['difference']:+.3f} "
                  f"({d['difference_ci'][0]:+.3f} to {d['difference_ci'][1]:+.3f})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
