"""What a model says about HAM10000's basal cell carcinomas and actinic keratoses, which it never trained on.

    python benchmarks/other_dx.py [--model DIR ...] [--split runs/NAME/split.csv] [--out docs/results/NAME.json]

With ``other_dx: exclude`` (the default) these 841 images are in neither training nor validation. They are not
melanomas, but they are (pre)cancers a clinician wants flagged; the ISIC 2018 test set counts them among its
"other lesions", so every one flagged is a false positive in its melanoma-or-not specificity. Per model and
diagnosis: n, the share at or above the model's threshold (95% Clopper-Pearson interval), the median p of the
assessed ones, and the share refused as "cannot assess".

With ``--split`` (the models' run's split.csv), what they cost a melanoma-or-not ROC-AUC: the model's HAM10000
validation melanomas against its validation benign lesions alone, and against those plus the BCCs and AKs weighted
to the share of "other lesions" they have in the ISIC 2018 test set by its challenge's published class counts
(93 + 43 of 1,341). Every image is scored, refused or not (as ``sources_table.py`` does); 95% bootstrap intervals,
each group resampled on its own.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from melanoma import Classifier
from melanoma.bench import data_root
from melanoma.bench import labels_and_scores as scores
from melanoma.config import atomic_write_text
from melanoma.datasets import read_split
from melanoma.engines import load_predictor

REPO = Path(__file__).resolve().parents[1]
HAM = data_root() / "ham10000"
ISIC2018_OTHER_SHARE = (93 + 43) / 1341  # BCC + AK among the ISIC 2018 Task 3 test's non-melanomas (published)


def weighted_auc(p_mel, p_benign, p_other, other_share: float) -> float:
    """ROC-AUC of melanomas against benign lesions plus (pre)cancers, the latter weighted to ``other_share`` of
    the negatives: P(a melanoma scores above a negative drawn from that mix), ties counted half."""
    def above(neg):  # P(mel > neg) + P(mel == neg) / 2, over all pairs
        order = np.sort(neg)
        lo, hi = np.searchsorted(order, p_mel, "left"), np.searchsorted(order, p_mel, "right")
        return float(((lo + hi) / 2).mean() / len(neg))
    return (1 - other_share) * above(p_benign) + other_share * above(p_other)


def auc_cost(predictor, val, other_paths, n_boot: int = 1000, seed: int = 0) -> dict:
    from melanoma.imaging import Sample

    p_mel = scores(predictor, [s for s in val if s.label == 1])[1]
    p_ben = scores(predictor, [s for s in val if s.label == 0])[1]
    p_oth = scores(predictor, [Sample(p, 0) for p in other_paths])[1]
    rng = np.random.default_rng(seed)
    out = {"n_melanomas": len(p_mel), "n_benign": len(p_ben), "n_bcc_akiec": len(p_oth),
           "other_share": ISIC2018_OTHER_SHARE}
    draws = []  # per resample: (benign only, with BCC/AK), the same images in both, so the cost is paired
    for _ in range(n_boot):
        groups = [g[rng.integers(0, len(g), len(g))] for g in (p_mel, p_ben, p_oth)]
        draws.append([weighted_auc(*groups, 0.0), weighted_auc(*groups, ISIC2018_OTHER_SHARE)])
    draws = np.array(draws)
    values = {"roc_auc_benign_only": draws[:, 0], "roc_auc_with_bcc_akiec": draws[:, 1],
              "roc_auc_cost": draws[:, 0] - draws[:, 1]}
    out["roc_auc_benign_only"] = weighted_auc(p_mel, p_ben, p_oth, 0.0)
    out["roc_auc_with_bcc_akiec"] = weighted_auc(p_mel, p_ben, p_oth, ISIC2018_OTHER_SHARE)
    out["roc_auc_cost"] = out["roc_auc_benign_only"] - out["roc_auc_with_bcc_akiec"]
    for key, v in values.items():
        out[f"{key}_ci"] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, nargs="+", default=[None])
    ap.add_argument("--ham", type=Path, default=HAM)
    ap.add_argument("--split", type=Path, default=None, help="the models' run's split.csv: the ROC-AUC cost too")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "other_dx_bundled.json")
    args = ap.parse_args()

    rows = list(csv.DictReader((args.ham / "HAM10000_metadata.csv").open()))
    out = {"data": "HAM10000 images with dx bcc or akiec (never trained or validated on with other_dx: exclude)",
           "ci": "95% Clopper-Pearson", "models": {}}
    for model in args.model:
        clf = Classifier.from_pretrained(model)
        res = {"threshold": clf.threshold}
        for dx in ("bcc", "akiec"):
            paths = [args.ham / "images" / f"{r['image_id']}.jpg" for r in rows if r["dx"] == dx]
            # the verdict's probability (p(skin cancer) for a seven-class model), NaN where not assessed
            p = np.array([r["p_malignant"] if r["status"] == "ok" else np.nan for r in clf.assess(paths)], float)
            ok = p[~np.isnan(p)]
            k = int((ok >= clf.threshold).sum())
            ci = binomtest(k, len(ok)).proportion_ci() if len(ok) else None
            res[dx] = {"n": len(p), "n_assessed": len(ok), "flagged": k / len(ok) if len(ok) else None,
                       "flagged_ci": [ci.low, ci.high] if ci else None,
                       "median_p": float(np.median(ok)) if len(ok) else None,
                       "refused": float(np.isnan(p).mean())}
        if args.split:
            val = [s for s in read_split(args.split)["val"] if s.source == "ham10000"]
            others = [args.ham / "images" / f"{r['image_id']}.jpg" for r in rows if r["dx"] in ("bcc", "akiec")]
            res["auc_cost"] = auc_cost(load_predictor(model, num_workers=2), val, others)
        out["models"][str(model or "bundled")] = res
        print(model or "bundled", json.dumps(res), flush=True)
    atomic_write_text(args.out, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
