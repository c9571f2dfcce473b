"""The per-source and external table: one model on each training source's held-out images, the Kaggle test
(whole and clean) and the external ISIC 2018 Task 3 test, at the model's own threshold.

    python benchmarks/sources_table.py [--model DIR] [--split runs/NAME/split.csv] [--out docs/results/NAME.json]

Per set: n, ROC-AUC, melanoma sensitivity and specificity at the shipped threshold (each with a 95% bootstrap
interval), the median p(malignant) of its melanomas, and the share of its real lesions the "cannot assess" gate
refuses. ``--split`` is the model's own run's split.csv: its validation rows, per source, are the held-out
splits (a run's split.csv names the images it never trained on; another model's would not be held out for it).
Metrics count every readable image, refused or not, so they compare with ``melanoma evaluate``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.audit import cached_audit
from melanoma.bench import data_root, score
from melanoma.card import public_name
from melanoma.datasets import discover, read_split
from melanoma.engines import load_predictor
from melanoma.evaluate import metrics_with_ci

REPO = Path(__file__).resolve().parents[1]
DATA = data_root()


def row(predictor, samples, n_boot: int = 1000) -> dict:
    scored = score(predictor, samples)
    y, p, refused = scored.labels, scored.p_verdict, scored.refused
    m = metrics_with_ci(y.tolist(), p.tolist(), predictor.threshold, n_boot)
    keep = ("n", "n_malignant", "roc_auc", "roc_auc_ci", "recall", "recall_ci", "specificity", "specificity_ci",
            "pr_auc", "accuracy")
    return {**{k: m[k] for k in keep if k in m},
            "median_p_melanoma": float(np.median(p[y == 1])) if (y == 1).any() else None,
            "refused": float(refused.mean()), "n_refused": int(refused.sum()),
            "refused_melanomas": int(refused[y == 1].sum()), "unreadable": len(samples) - len(scored.samples)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--split", type=Path, default=None, help="the model's run's split.csv (held-out rows per source)")
    ap.add_argument("--kaggle", type=Path, default=DATA / "melanoma_cancer_dataset")
    ap.add_argument("--external", type=Path, default=DATA / "isic2018_test")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "sources_table.json")
    args = ap.parse_args()

    predictor = load_predictor(args.model, num_workers=2)
    sets: dict[str, list] = {}
    if args.split:
        for s in read_split(args.split).get("val", []):
            name = f"{public_name(s.source) if s.source else 'validation'} (held-out validation)"
            sets.setdefault(name, []).append(s)
    test = discover(args.kaggle)["test"]
    clean = cached_audit(args.kaggle).clean_test_paths()
    sets["Kaggle test"] = test
    sets["Kaggle clean test"] = [s for s in test if str(s.path) in clean]
    sets["ISIC 2018 test (external)"] = discover(args.external)["test"]

    from melanoma.config import DEFAULT_MODEL_DIR, sha256_file

    result = {"model": str(args.model or "bundled"), "threshold": predictor.threshold,
              "model_sha256": sha256_file(Path(args.model or DEFAULT_MODEL_DIR) / "model.safetensors"),
              "temperature": predictor.cfg.temperature, "split": str(args.split) if args.split else None,
              "ci": "95% percentile bootstrap, 1000 resamples of images, seed 0", "sets": {}}
    for name, samples in sets.items():
        result["sets"][name] = r = row(predictor, samples)
        print(f"| {name} | {r['n']} ({r['n_malignant']} mel.) | {r['roc_auc']:.3f} ({r['roc_auc_ci'][0]:.3f}-"
              f"{r['roc_auc_ci'][1]:.3f}) | {r['recall']:.3f} ({r['recall_ci'][0]:.2f}-{r['recall_ci'][1]:.2f}) | "
              f"{r['specificity']:.3f} ({r['specificity_ci'][0]:.2f}-{r['specificity_ci'][1]:.2f}) | "
              f"{r['median_p_melanoma']:.2f} | {100 * r['refused']:.1f}% |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
