"""External check on ISIC 2017 (training + validation, 2,150 dermoscopic images, 256 px), minding which
of its images the audit finds in the Kaggle set the model was trained on.

    python benchmarks/external_isic.py [--model DIR] [--out runs/isic2017-eval]

Rows written to OUT/metrics.json (each with n and 95% bootstrap CIs, at the model's own threshold):
  * all: every readable ISIC 2017 image (label: the CSV's ``melanoma`` column; nevi and seborrheic
    keratoses are benign);
  * not_in_kaggle: the images with no near-duplicate in the Kaggle set. Almost all of them are benign
    (402 of 404 melanomas are in Kaggle), so the honest external number is their specificity;
  * in_kaggle: the images with a copy in Kaggle (mostly melanomas the model may have trained on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from melanoma.audit import audit
from melanoma.bench import data_root
from melanoma.datasets import discover
from melanoma.engines import load_predictor
from melanoma.evaluate import metrics_with_ci

REPO = Path(__file__).resolve().parents[1]
DATA = data_root()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--kaggle", type=Path, default=DATA / "melanoma_cancer_dataset")
    ap.add_argument("--isic", type=Path, default=DATA / "isic2017")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "isic2017-eval")
    ap.add_argument("--splits", nargs="+", default=["train", "val"],
                    help="ISIC splits to use; only val for a model trained on ISIC 2017's train split")
    args = ap.parse_args()

    samples = [s for split, items in discover(args.isic).items() if split in args.splits for s in items]
    in_kaggle = {a for a, _, _ in audit(args.kaggle, against=args.isic).cross}
    predictor = load_predictor(args.model, num_workers=2)
    probs = predictor.predict_samples(samples)
    threshold = predictor.cfg.threshold
    ok = [(s, p) for s, p in zip(samples, probs) if p is not None]

    def row(subset) -> dict:  # with one class only, ROC-AUC is None and specificity (or recall) tells
        return metrics_with_ci([s.label for s, _ in subset], [q for _, q in subset], threshold, 1000)

    result = {
        "data": str(args.isic), "splits": args.splits, "model": str(args.model or "bundled"), "threshold": threshold,
        "n_with_copy_in_kaggle": len(in_kaggle),
        "all": row(ok),
        "not_in_kaggle": row([(s, p) for s, p in ok if str(s.path) not in in_kaggle]),
        "not_in_kaggle_benign": row([(s, p) for s, p in ok if str(s.path) not in in_kaggle and s.label == 0]),
        "in_kaggle": row([(s, p) for s, p in ok if str(s.path) in in_kaggle]),
        "skipped": len(samples) - len(ok),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    for key in ("all", "not_in_kaggle", "not_in_kaggle_benign", "in_kaggle"):
        m = result[key]
        print(key, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()
                    if k in ("n", "n_benign", "n_malignant", "roc_auc", "accuracy", "recall", "specificity")})


if __name__ == "__main__":
    main()
