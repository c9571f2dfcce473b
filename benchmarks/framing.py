"""Fit and check the refusal sentences (:mod:`melanoma.framing`): why a refused picture was refused, in words.

    python benchmarks/framing.py [--fit-per-source 200] [--limit 400] --out docs/results/framing.json

Fit: ordinary lesion pictures of the three training sources (Kaggle train, ISIC 2017, HAM10000; a seeded draw of
each), through the bundled model's preprocessing; each limit is the value 2% of them cross. Check, on the
external ISIC 2018 test (a stratified subset; never used to fit): for the untransformed pictures and each stress
family (:mod:`melanoma.views`), the share that each sentence would explain, and the same for the test suite's
non-lesion images. The limits printed are what :mod:`melanoma.framing` ships.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from melanoma import bench, framing
from melanoma.config import DEFAULT_MODEL_DIR, ModelConfig, atomic_write_text
from melanoma.datasets import discover
from melanoma.engines.base import input_rgb, preprocess
from melanoma.imaging import open_rgb
from melanoma.views import transform

FAMILIES = (None, "zoom_out", "grid", "ruler", "blur", "film", "bubbles", "hair", "glare", "field")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit-per-source", type=int, default=200)
    ap.add_argument("--limit", type=int, default=400, help="a stratified external subset of about this many")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = ModelConfig.load(DEFAULT_MODEL_DIR / "config.json")

    def rgb(img):
        return input_rgb(preprocess(img, cfg), cfg)

    rng = np.random.default_rng(0)
    fit, sources = [], [n for n in (bench.KAGGLE, bench.ISIC2017, bench.HAM10000) if (bench.data_root() / n).is_dir()]
    print(f"fitted on {', '.join(sources)} under {bench.data_root()}")
    for name in sources:
        pool = [s for split in discover(bench.data_root() / name).values() for s in split]
        fit += [pool[i] for i in rng.choice(len(pool), min(args.fit_per_source, len(pool)), replace=False)]
    limits = framing.fit_limits([framing.measure(rgb(open_rgb(s.path))) for s in fit])
    print("limits", {k: round(v, 4) for k, v in limits.items()})

    def shares(images) -> dict:
        said = Counter(framing.reason(rgb(img), **limits) or "none" for img in images)
        return {k: said[k] / sum(said.values()) for k in (*framing.REASONS, "none")}

    external = bench.stratified(bench.external_set(), args.limit)
    result = {"fit": {"n": len(fit), "sources": sources, "false_rate": 0.02},
              "limits": limits, "external_n": len(external), "said": {}}
    for family in FAMILIES:
        images = (open_rgb(s.path) if family is None else transform(open_rgb(s.path), family, i)
                  for i, s in enumerate(external))
        result["said"][family or "untransformed"] = r = shares(images)
        print(f"{family or 'untransformed':13s} " + "  ".join(f"{k} {100 * v:5.1f}%" for k, v in r.items()), flush=True)
    result["said"]["non-lesion"] = r = shares(img for img in (s.image for s in bench.nonlesion_set()))
    print("non-lesion    " + "  ".join(f"{k} {100 * v:5.1f}%" for k, v in r.items()))
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
