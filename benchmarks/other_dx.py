"""What a model says about HAM10000's basal cell carcinomas and actinic keratoses, which it never trained on.

    python benchmarks/other_dx.py [--model DIR ...] [--out docs/results/other_dx_bundled.json]

With ``other_dx: exclude`` (the default) these 841 images are in neither training nor validation. They are not
melanomas, but they are (pre)cancers a clinician wants flagged; the ISIC 2018 test set counts them among its
"other lesions", so every one flagged is a false positive in its melanoma-or-not specificity. Per model and
diagnosis: n, the share at or above the model's threshold (95% Clopper-Pearson interval), the median p of the
assessed ones, and the share refused as "cannot assess".
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from melanoma import Classifier
from melanoma.config import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
HAM = REPO.parent / "shared" / "data" / "ham10000"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, nargs="+", default=[None])
    ap.add_argument("--ham", type=Path, default=HAM)
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
            p = clf.predict_proba(paths)
            ok = p[~np.isnan(p)]
            k = int((ok >= clf.threshold).sum())
            ci = binomtest(k, len(ok)).proportion_ci() if len(ok) else None
            res[dx] = {"n": len(p), "n_assessed": len(ok), "flagged": k / len(ok) if len(ok) else None,
                       "flagged_ci": [ci.low, ci.high] if ci else None,
                       "median_p": float(np.median(ok)) if len(ok) else None,
                       "refused": float(np.isnan(p).mean())}
        out["models"][str(model or "bundled")] = res
        print(model or "bundled", json.dumps(res), flush=True)
    atomic_write_text(args.out, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
