"""Where does the malignancy evidence sit? Share of Grad-CAM mass on the image border, per model.

    python benchmarks/gradcam_border.py MODEL_DIR [MODEL_DIR ...] [--data ../shared/data/melanoma_cancer_dataset] \
        [--split test]
    python benchmarks/gradcam_border.py MODEL_DIR ... --split-file runs/NAME/split.csv --split val  # a run's val images

For every test image a model calls malignant, the positive part of its class activation map (the ONNX
graph's ``cam`` output, 7 x 7 at 224 px; Grad-CAM up to scale, see melanoma.explain) is split into the
outer ring of cells (24 of 49, the outer 32 px of the image) and the centre. Dermoscopic lesions sit near
the centre; evidence on the ring comes from frames, vignettes, rulers and skin. No masks are needed, so it
is a coarse measure: a lesion that fills the image puts honest evidence on the ring too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.bench import data_root
from melanoma.datasets import discover, read_split, select_split
from melanoma.engines.base import preprocess
from melanoma.engines.onnx_engine import OnnxPredictor
from melanoma.imaging import open_rgb

DATA = data_root() / "melanoma_cancer_dataset"


def border_share(model_dir: Path, samples: list, batch: int = 32) -> dict:
    predictor = OnnxPredictor(model_dir)
    shares, n_called = [], 0
    for i in range(0, len(samples), batch):
        chunk = samples[i:i + batch]
        x = np.stack([preprocess(open_rgb(s.path, draft_size=predictor.cfg.img_size), predictor.cfg) for s in chunk])
        logits, _, cam = predictor.forward(x, cam=True)
        called = predictor.proba_from_logits(logits) >= predictor.cfg.threshold
        pos = np.maximum(cam[called], 0)
        ring = pos.sum(axis=(1, 2)) - pos[:, 1:-1, 1:-1].sum(axis=(1, 2))
        total = pos.sum(axis=(1, 2))
        shares += list(ring[total > 0] / total[total > 0])
        n_called += int(called.sum())
    ring_area = 1 - (cam.shape[1] - 2) * (cam.shape[2] - 2) / (cam.shape[1] * cam.shape[2])
    return {"model": str(model_dir), "n_called_malignant": n_called, "ring_area_share": round(ring_area, 3),
            "mean_border_share": round(float(np.mean(shares)), 3),
            "median_border_share": round(float(np.median(shares)), 3),
            "share_of_images_mostly_on_border": round(float(np.mean(np.array(shares) > 0.5)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", default="test", help="the split to look at (ISIC 2017: val)")
    ap.add_argument("--split-file", type=Path, default=None,
                    help="a training run's split.csv: take --split (e.g. val) from it instead of --data")
    ap.add_argument("--out", type=Path, default=Path("runs/gradcam-border.json"))
    args = ap.parse_args()
    source = args.split_file or args.data
    samples = (read_split(source)[args.split] if args.split_file
               else select_split(discover(source), args.split))
    rows = [border_share(m, samples) for m in args.models]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(source), "split": args.split, "rows": rows}, indent=2) + "\n")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
