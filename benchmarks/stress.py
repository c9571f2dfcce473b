"""Site-shift stress suite (issue 34): a model on real lesion images seen as other clinics see them
(:mod:`melanoma.views`: zoom-out, grid, ruler, film, glare, bubbles, hair, round field, rotation, JPEG, blur,
large photos), each family paired with the untransformed images.

    python benchmarks/stress.py MODEL [--limit N] [--families zoom_out,grid] [--against OTHER] --out FILE.json

Set: the external ISIC 2018 test (``MELANOMA_DATA``). Per family: the share of real lesions refused as "cannot
assess" (and which sentence of :mod:`melanoma.framing` told them why), the melanoma-vs-rest ROC-AUC of p(melanoma),
and at the model's threshold the sensitivity and specificity of the verdict for cancers; each as a paired change
from the untransformed images with a 95% bootstrap interval. ``--against OTHER``: also OTHER's on the same
transformed images, and MODEL's change from it (``against``: a candidate judged against the bundled model).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from melanoma import bench
from melanoma.config import atomic_write_text
from melanoma.engines import load_predictor
from melanoma.imaging import Sample, open_rgb
from melanoma.views import FAMILIES, transform


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--limit", type=int, help="a stratified subset of about this many images")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--against", type=Path, help="a second model folder scored on the same transformed images")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    predictor = load_predictor(args.model, num_workers=2)
    other = load_predictor(args.against, num_workers=2) if args.against else None
    samples = bench.stratified(bench.external_set(), args.limit)
    plain = bench.score(predictor, samples)
    result = {"model": str(args.model), "n": len(samples), "threshold": predictor.threshold,
              "ci": "95% percentile bootstrap of the paired change, 1000 resamples of images, seed 0",
              "untransformed": {"refused": float(plain.refused.mean())}, "families": {}}
    for family in args.families.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            seen = []
            for i, s in enumerate(samples):
                path = Path(tmp) / f"{i:05d}.{'jpg' if family in ('large', 'jpeg') else 'png'}"
                img = transform(open_rgb(s.path), family, i)
                img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path, compress_level=1)
                seen.append(Sample(path, s.label, s.source, s.group, s.dx))
            shifted = bench.score(predictor, seen)
            reference = bench.score(other, seen) if other else None
        shifted.samples = plain.samples  # the same lesions: pair them by their original paths
        cancer = bench.paired(plain, shifted, "cancer")
        melanoma = bench.paired(plain, shifted, "melanoma", "p_melanoma")
        said = [shifted.refusals[k] or "lesion image" for k in np.flatnonzero(shifted.refused)]
        result["families"][family] = r = {
            "refused": float(shifted.refused.mean()),
            "refusals_said": {k: said.count(k) for k in dict.fromkeys(said)},  # framing.REASONS keys
            "refused_change": float(shifted.refused.mean() - plain.refused.mean()),
            "melanoma_roc_auc": melanoma["roc_auc"], "cancer_roc_auc": cancer["roc_auc"],
            "sensitivity": cancer["recall"], "specificity": cancer["specificity"]}
        if reference is not None:  # OTHER -> MODEL on the same transformed pictures
            reference.samples = plain.samples
            vs = bench.paired(reference, shifted, "cancer")
            r["against"] = {"model": str(args.against), "refused": float(reference.refused.mean()),
                            "cancer_roc_auc": vs["roc_auc"], "sensitivity": vs["recall"],
                            "specificity": vs["specificity"]}
        print(f"{family:9s} refused {100 * r['refused']:5.1f}%  melanoma ROC-AUC "
              f"{r['melanoma_roc_auc']['b']:.3f} ({r['melanoma_roc_auc']['difference']:+.3f})  sensitivity "
              f"{r['sensitivity']['b']:.3f} specificity {r['specificity']['b']:.3f}", flush=True)
    result["untransformed"] |= {"melanoma_roc_auc": float(next(iter(result["families"].values()))
                                                          ["melanoma_roc_auc"]["a"]) if result["families"] else None}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
