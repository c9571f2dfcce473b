"""Two models (or one model two ways) on the same images: the paired change in ROC-AUC, sensitivity,
specificity and decision-curve net benefit (``evaluate.NET_BENEFIT_RISK``), each at its own model's threshold.

    python benchmarks/compare_models.py MODEL_A MODEL_B [--out experiments/NNN-name/compare.json]

Sets: the Kaggle clean test and the external ISIC 2018 Task 3 test. Each change B - A has a 95% bootstrap interval
over the same resampled images (``evaluate.paired_difference``), far narrower than the two models' own intervals
when they err on the same images, so recipes that differ by less than their intervals can still be told apart, or
not. ``benchmarks/tta.py`` uses it for one model with and without test-time augmentation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.audit import cached_audit
from melanoma.bench import data_root
from melanoma.config import DEFAULT_MODEL_DIR, sha256_file
from melanoma.datasets import discover
from melanoma.engines import load_predictor
from melanoma.evaluate import paired_difference

REPO = Path(__file__).resolve().parents[1]
DATA = data_root()


def scores(predictor, samples) -> tuple[np.ndarray, np.ndarray]:
    """Labels and p(malignant) of every readable image, in order, refused or not (as sources_table.py counts)."""
    results = predictor.run(samples)
    ok = [(s, r) for s, r in zip(samples, results) if r is not None]
    return (np.array([s.label for s, _ in ok]),
            np.array([float(predictor.proba_from_logits(r["logit"])) for _, r in ok]))


def standard_sets(kaggle: Path = DATA / "melanoma_cancer_dataset", external: Path = DATA / "isic2018_test") -> dict:
    test = discover(kaggle)["test"]
    clean = cached_audit(kaggle).clean_test_paths()
    return {"Kaggle clean test": [s for s in test if str(s.path) in clean],
            "ISIC 2018 test (external)": discover(external)["test"]}


METRICS = ("roc_auc", "recall", "specificity", "net_benefit")


def paired_sets(a, b, sets: dict) -> dict:
    """Per set: n, melanomas, and B - A for ROC-AUC, recall, specificity and net benefit (each at its model's
    threshold)."""
    out = {}
    for name, samples in sets.items():
        y, p_a = scores(a, samples)
        y_b, p_b = scores(b, samples)
        if not (y == y_b).all():
            raise ValueError(f"{name}: the two models could not read the same images")
        d = paired_difference(y, p_a, p_b, a.threshold, b.threshold)
        out[name] = r = {"n": len(y), "n_malignant": int(y.sum()),
                         **{k: d[k] for k in METRICS}}
        print(f"| {name} | {r['n']} ({r['n_malignant']} mel.) | " + " | ".join(
            f"{v['a']:.3f} -> {v['b']:.3f}, {v['difference']:+.3f} ({v['difference_ci'][0]:+.3f} to "
            f"{v['difference_ci'][1]:+.3f})" for v in (r[k] for k in METRICS)) + " |", flush=True)
    return out


def describe(model: Path | None, predictor) -> dict:
    return {"model": str(model or "bundled"), "threshold": predictor.threshold,
            "model_sha256": sha256_file(Path(model or DEFAULT_MODEL_DIR) / "model.safetensors")}


CI = "95% percentile bootstrap of the paired difference B - A, 1000 resamples of images, seed 0"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "compare.json")
    args = ap.parse_args()
    a, b = load_predictor(args.a, num_workers=2), load_predictor(args.b, num_workers=2)
    result = {"a": describe(args.a, a), "b": describe(args.b, b), "ci": CI, "sets": paired_sets(a, b, standard_sets())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
