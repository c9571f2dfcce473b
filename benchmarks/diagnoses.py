"""A model by diagnosis (issue 33's table): the external ISIC 2018 test with its seven-class ground truth, the
Kaggle clean test, each source's validation images (``--split``), and the non-lesion images; with ``--against``,
every change paired with another model on the same images.

    python benchmarks/diagnoses.py MODEL [--split runs/NAME/split.csv] [--against BASE] --out docs/results/F.json \
        [--nonlesion-pictures DEST/held_out]    # the wider non-lesion set, tools/nonlesion_pictures.sh

Every number has a 95% bootstrap interval. Scores are taken on every readable image, refused or not; the share
refused is reported beside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma import bench
from melanoma.config import atomic_write_text, sha256_file
from melanoma.engines import load_predictor
from melanoma.evaluate import diagnosis_metrics, metrics_with_ci


def by_diagnosis(s: bench.Scores) -> dict:
    named = np.array([bool(x.dx) for x in s.samples])
    return {"refused": float(s.refused.mean()), **diagnosis_metrics(
        s.dx[named], s.p_verdict[named], s.threshold, s.p_melanoma[named],
        None if s.probs is None else s.probs[named],
        None if s.probs_equal_priors is None else s.probs_equal_priors[named])}


def melanoma_set(s: bench.Scores) -> dict:
    """A benign / melanoma set: p(melanoma)'s ROC-AUC, and the verdict's sensitivity and specificity."""
    ranking = metrics_with_ci(s.labels, s.p_melanoma, s.threshold)
    verdict = metrics_with_ci(s.labels, s.p_verdict, s.threshold)
    return {"n": len(s.labels), "n_melanoma": int(s.labels.sum()), "refused": float(s.refused.mean()),
            "melanoma_roc_auc": ranking["roc_auc"], "melanoma_roc_auc_ci": ranking["roc_auc_ci"],
            **{k: verdict[k] for k in ("recall", "recall_ci", "specificity", "specificity_ci")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", type=Path, help="the model's split.csv: its validation images, per source")
    ap.add_argument("--against", type=Path, help="a model to pair every change with (e.g. the bundled one)")
    ap.add_argument("--nonlesion-pictures", type=Path, help="a folder of held-out non-lesion pictures by source")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    model = load_predictor(args.model, num_workers=2)
    base = load_predictor(args.against, num_workers=2) if args.against else None
    sets = {"external": bench.external_set(), "kaggle_clean": bench.kaggle_clean_test()}
    result: dict = {"model": str(args.model), "threshold": model.threshold, "against": str(args.against or ""),
                    "model_sha256": sha256_file(Path(model.model_dir) / "model.safetensors"),
                    "ci": "95% percentile bootstrap, 1000 resamples of images, seed 0"}
    scores = {name: bench.score(model, samples) for name, samples in sets.items()}
    result["external"] = by_diagnosis(scores["external"])
    result["kaggle_clean"] = melanoma_set(scores["kaggle_clean"])
    non = bench.score(model, bench.nonlesion_set())
    result["nonlesion"] = {"n": len(non.refused), "refused": float(non.refused.mean())}
    if args.nonlesion_pictures:
        pics = bench.nonlesion_pictures(args.nonlesion_pictures)
        refused = bench.score(model, pics).refused
        by = np.array([p.source for p in pics])
        result["nonlesion_pictures"] = {"n": len(refused), "refused": float(refused.mean()), "by_source": {
            str(k): float(refused[by == k].mean()) for k in dict.fromkeys(by.tolist())}}
    if args.split:
        result["validation"] = {src: by_diagnosis(bench.score(model, samples)) if any(x.dx for x in samples)
                                else melanoma_set(bench.score(model, samples))
                                for src, samples in bench.validation_sets(args.split).items()}
    if base is not None:
        ext = {name: bench.score(base, samples) for name, samples in sets.items()}
        result["paired"] = {
            "external_cancer_vs_benign": bench.paired(ext["external"], scores["external"], "cancer"),
            "external_melanoma_vs_rest": bench.paired(ext["external"], scores["external"], "melanoma", "p_melanoma"),
            "kaggle_clean_melanoma": bench.paired(ext["kaggle_clean"], scores["kaggle_clean"], "melanoma",
                                                  "p_melanoma"),
            "against_external": by_diagnosis(ext["external"]),
            "against_kaggle_clean": melanoma_set(ext["kaggle_clean"])}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    e = result["external"]
    print(f"external (n = {e['n']}): melanoma vs rest {e['melanoma_vs_rest_roc_auc']:.3f}, cancer vs benign "
          f"{e['cancer_vs_benign_roc_auc']:.3f}, cancer sensitivity {e['cancer_sensitivity']:.3f}, benign "
          f"specificity {e['benign_specificity']:.3f}, balanced accuracy {e.get('balanced_accuracy', float('nan')):.3f}"
          f"; written {args.out}")


if __name__ == "__main__":
    main()
