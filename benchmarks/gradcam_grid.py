"""A grid of Grad-CAM overlays on random test images, to check by eye where the model looks.

    python benchmarks/gradcam_grid.py ../shared/data/melanoma_cancer_dataset --n 24 --out docs/gradcam_examples.png
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

from melanoma.datasets import discover, load_image, select_split
from melanoma.engines import ENGINES, explainer_for, load_predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/gradcam_examples.png"))
    ap.add_argument("--engine", default="auto", choices=ENGINES)
    args = ap.parse_args()
    samples = random.Random(1).sample(select_split(discover(args.data), "test"), args.n)
    predictor = load_predictor(args.model, args.engine)
    explainer = explainer_for(predictor)
    probs = predictor.predict_samples(samples)
    t, cols = 160, 6
    grid = Image.new("RGB", (cols * 2 * t, -(-args.n // cols) * (t + 18)), "white")
    draw = ImageDraw.Draw(grid)
    for k, (s, p) in enumerate(zip(samples, probs)):
        img = load_image(s.path)
        x, y = (k % cols) * 2 * t, (k // cols) * (t + 18)
        grid.paste(img.resize((t, t)), (x, y))
        grid.paste(explainer.overlay(img).resize((t, t)), (x + t, y))
        truth = "malignant" if s.label else "benign"
        draw.text((x + 4, y + t + 2), f"{truth}, p={p:.2f}", fill=(0, 0, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
