"""Test-time augmentation (``--tta``, the 8 flips/rotations averaged) against a single view, on the same images.

    python benchmarks/tta.py [--model DIR] [--out docs/results/tta_NAME.json]

Per set (the Kaggle clean test and the external ISIC 2018 Task 3 test): ROC-AUC with and without TTA, the
paired difference with a 95% bootstrap interval (the same resampled images scored both ways, so the interval is of
the change, not of either number), and sensitivity / specificity at the model's own threshold both ways. The
threshold was chosen without TTA; a model meant to run with it would want its threshold chosen with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.audit import cached_audit
from melanoma.config import DEFAULT_MODEL_DIR, sha256_file
from melanoma.datasets import discover
from melanoma.engines import load_predictor
from melanoma.evaluate import paired_difference

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def scores(predictor, samples) -> tuple[np.ndarray, np.ndarray]:
    """Labels and p(malignant) of every readable image, in order."""
    results = predictor.run(samples)
    ok = [(s, r) for s, r in zip(samples, results) if r is not None]
    return (np.array([s.label for s, _ in ok]),
            np.array([float(predictor.proba_from_logits(r["logit"])) for _, r in ok]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--kaggle", type=Path, default=DATA / "melanoma_cancer_dataset")
    ap.add_argument("--external", type=Path, default=DATA / "isic2018_test")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "tta.json")
    args = ap.parse_args()

    plain = load_predictor(args.model, num_workers=2)
    tta = load_predictor(args.model, num_workers=2, tta=True)
    test = discover(args.kaggle)["test"]
    clean = cached_audit(args.kaggle).clean_test_paths()
    sets = {"Kaggle clean test": [s for s in test if str(s.path) in clean],
            "ISIC 2018 test (external)": discover(args.external)["test"]}
    result = {"model": str(args.model or "bundled"), "threshold": plain.threshold,
              "model_sha256": sha256_file(Path(args.model or DEFAULT_MODEL_DIR) / "model.safetensors"),
              "ci": "95% percentile bootstrap of the paired difference, 1000 resamples of images, seed 0",
              "sets": {}}
    for name, samples in sets.items():
        y, p = scores(plain, samples)
        y_t, p_t = scores(tta, samples)
        assert (y == y_t).all()  # the same images, in the same order
        d = paired_difference(y, p, p_t, plain.threshold)
        r = {"n": len(y), "n_malignant": int(y.sum()), **{k: d[k] for k in ("roc_auc", "recall", "specificity")}}
        result["sets"][name] = r
        print(f"| {name} | {r['n']} ({r['n_malignant']} mel.) | " + " | ".join(
            f"{v['a']:.3f} -> {v['b']:.3f}, {v['difference']:+.3f} ({v['difference_ci'][0]:+.3f} to "
            f"{v['difference_ci'][1]:+.3f})" for v in (r["roc_auc"], r["recall"], r["specificity"])) + " |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
