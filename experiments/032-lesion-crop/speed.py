"""Clause 6 of 032's rule: end-to-end images/s of a model folder against the bundled model on the same images
(decoding, framing, network, gate), alternating the two, three rounds each; the median of each.

    python experiments/032-lesion-crop/speed.py MODEL --out FILE.json [--n 300]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from melanoma import bench
from melanoma.config import DEFAULT_MODEL_DIR, atomic_write_text
from melanoma.engines import load_predictor

ap = argparse.ArgumentParser()
ap.add_argument("model", type=Path)
ap.add_argument("--n", type=int, default=300)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()
paths = [s.path for s in bench.stratified(bench.kaggle_clean_test(), args.n)]
models = {"bundled": DEFAULT_MODEL_DIR, "candidate": args.model}
rates: dict[str, list[float]] = {name: [] for name in models}
for _ in range(3):
    for name, folder in models.items():
        predictor = load_predictor(folder, num_workers=2)
        t = time.perf_counter()
        predictor.predict_paths(paths)
        rates[name].append(len(paths) / (time.perf_counter() - t))
result = {"n_images": len(paths), "set": "Kaggle clean test, stratified",
          "images_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
          "rounds": {k: [round(r, 1) for r in v] for k, v in rates.items()}}
result["ratio"] = round(result["images_per_s"]["candidate"] / result["images_per_s"]["bundled"], 3)
atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
print(json.dumps(result))
