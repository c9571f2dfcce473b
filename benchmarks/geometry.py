"""Image geometry at inference: squash a 4:3 photo to the square input (what training does), or keep its aspect
ratio by padding (reflected or black) or by a centre crop?

    python benchmarks/geometry.py MODEL_DIR runs/NAME/split.csv [--out docs/results/NAME.json]

Sets: the model's own HAM10000 validation images (200 x 150, 4:3 as photographed) and the ISIC 2018 Task 3 test
images, whose copy here was squashed to 224 x 224 from 4:3 originals: stretched back to 299 x 224 first, so that
every variant starts from a 4:3 photo. Per set and variant: ROC-AUC, sensitivity and specificity at the model's
threshold, 95% bootstrap intervals. This measures the shipped model only; whether *training* on padded images
would do better needs a training run per variant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from melanoma.bench import data_root
from melanoma.datasets import discover, read_split
from melanoma.engines import load_predictor
from melanoma.evaluate import metrics_with_ci
from melanoma.imaging import InMemory, open_rgb

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = data_root() / "isic2018_test"


def squash(img: Image.Image) -> Image.Image:
    return img  # the predictor resizes the whole image to its square input


def pad(img: Image.Image, mode: str) -> Image.Image:
    w, h = img.size
    side = max(w, h)
    if mode == "black":
        return ImageOps.pad(img, (side, side), color=(0, 0, 0))
    a = np.asarray(img)
    dy, dx = side - h, side - w
    return Image.fromarray(np.pad(a, ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0)), mode="reflect"))


def centre_crop(img: Image.Image) -> Image.Image:
    side = min(img.size)
    return ImageOps.fit(img, (side, side))


VARIANTS = {"squash (shipped)": squash, "pad, reflected": lambda im: pad(im, "reflect"),
            "pad, black": lambda im: pad(im, "black"), "centre crop": centre_crop}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "geometry.json")
    args = ap.parse_args()

    predictor = load_predictor(args.model, num_workers=2)
    ham = [s for s in read_split(args.split)["val"] if s.source == "ham10000"]
    sets = {"HAM10000 validation (200 x 150)": [(s, open_rgb(s.path)) for s in ham],
            "ISIC 2018 test, stretched back to 4:3": [(s, open_rgb(s.path).resize((299, 224), Image.BICUBIC))
                                                      for s in discover(EXTERNAL)["test"]]}
    result = {"model": str(args.model), "threshold": predictor.threshold, "sets": {}}
    for name, items in sets.items():
        y = [s.label for s, _ in items]
        result["sets"][name] = {}
        for variant, fn in VARIANTS.items():
            rs = predictor.run([InMemory(str(s.path), fn(img)) for s, img in items])
            p = [float(predictor.proba_from_logits(r["logit"])) for r in rs]
            m = metrics_with_ci(y, p, predictor.threshold)
            result["sets"][name][variant] = {k: m[k] for k in ("n", "n_malignant", "roc_auc", "roc_auc_ci", "recall",
                                                               "recall_ci", "specificity", "specificity_ci")}
            print(f"| {name} | {variant} | {m['roc_auc']:.3f} ({m['roc_auc_ci'][0]:.3f}-{m['roc_auc_ci'][1]:.3f}) | "
                  f"{m['recall']:.3f} | {m['specificity']:.3f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
