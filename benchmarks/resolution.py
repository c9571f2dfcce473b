"""Image sharpness at inference: the external images as stored, or first brought down to the resolution a training
source was stored at?

    python benchmarks/resolution.py [--model DIR] [--out docs/results/NAME.json]

HAM10000's copy here was downscaled to 200 x 150 from 600 x 450 originals, and the model sees it upsampled to its
square input; the ISIC 2018 Task 3 test images (from the same clinics) were downscaled from 600 x 450 to 224 x 224,
so they are sharper than the HAM10000 images the model learnt those clinics' lesions from. Variants: as stored;
through 200 x 150 (exactly HAM10000's path); through 100 x 75 (blurrier still, to see the trend). Per variant on the
external set: ROC-AUC, sensitivity and specificity at the model's threshold, each as a paired change from "as
stored" with a 95% bootstrap interval (the same images and resamples).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from melanoma.bench import data_root
from melanoma.bench import labels_and_scores as scores
from melanoma.datasets import discover
from melanoma.engines import load_predictor
from melanoma.evaluate import paired_difference
from melanoma.imaging import InMemory, open_rgb

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = data_root() / "isic2018_test"


def through(size: tuple[int, int]):
    return lambda img: img.resize(size, Image.LANCZOS)


VARIANTS = {"as stored (224 x 224)": lambda img: img, "through 200 x 150 (HAM10000's copy)": through((200, 150)),
            "through 100 x 75": through((100, 75))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--external", type=Path, default=EXTERNAL)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "resolution.json")
    args = ap.parse_args()

    predictor = load_predictor(args.model, num_workers=2)
    items = [(s, open_rgb(s.path)) for s in discover(args.external)["test"]]
    y = np.array([s.label for s, _ in items])
    p = {}
    for variant, fn in VARIANTS.items():
        p[variant] = scores(predictor, [InMemory(str(s.path), fn(img), s.label) for s, img in items])[1]
    base = next(iter(VARIANTS))
    result = {"model": str(args.model or "bundled"), "threshold": predictor.threshold, "set": "ISIC 2018 test",
              "n": len(y), "n_malignant": int(y.sum()),
              "ci": "95% percentile bootstrap of the paired change from 'as stored', 1000 resamples, seed 0",
              "variants": {}}
    for variant in VARIANTS:
        d = paired_difference(y, p[base], p[variant], predictor.threshold)
        result["variants"][variant] = r = {k: d[k] for k in ("roc_auc", "recall", "specificity")}
        print(f"| {variant} | " + " | ".join(
            f"{v['b']:.3f} ({v['difference']:+.3f}, {v['difference_ci'][0]:+.3f} to {v['difference_ci'][1]:+.3f})"
            for v in (r["roc_auc"], r["recall"], r["specificity"])) + " |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
