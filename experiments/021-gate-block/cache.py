"""Run from the repository root: python experiments/021-gate-block/cache.py MODEL SPLIT OUT.npz.
Cache gate features of one model: training draws (1000/source) + field views, validation, external, the test
suite's 148 non-lesions, and a dev set of non-lesion photos from installed packages (not in
melanoma.bench.nonlesion)."""
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from melanoma.bench import external_set
from melanoma.bench import gate_features as features
from melanoma.bench.nonlesion import nonlesion_images
from melanoma.datasets import read_split
from melanoma.engines import load_predictor
from melanoma.imaging import InMemory
from melanoma.ood import gate_views

model, split_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
pred = load_predictor(model, num_workers=2)
split = read_split(split_path)
rng = random.Random(0)
train, val = {}, {}
for s in split["train"]:
    train.setdefault(s.source, []).append(s)
for s in split["val"]:
    val.setdefault(s.source, []).append(s)
names = sorted(val)
drawn = {n: rng.sample(train[n], min(1000, len(train[n]))) for n in names}
arrs = {}
for n in names:
    arrs[f"train/{n}"] = features(pred, drawn[n])[0]
    arrs[f"field/{n}"] = features(pred, gate_views(drawn[n], ("field",)))[0]
    arrs[f"val/{n}"] = features(pred, val[n])[0]
    print(n, flush=True)
arrs["ext"], _ = features(pred, external_set())
non = [InMemory(a, b) for a, b in nonlesion_images()]
arrs["non"], arrs["non_flat"] = features(pred, non)
site = Path(".venv/lib/python3.11/site-packages")
files = [site / "gradio/media_assets/images" / f for f in ("cheetah1.jpg", "lion.jpg", "tower.jpg")]
files += [site / "gradio/test_data/cheetah2.jpg", site / "sklearn/datasets/images/flower.jpg",
          site / "sklearn/datasets/images/china.jpg", site / "matplotlib/mpl-data/sample_data/grace_hopper.jpg"]
dev = []
r = np.random.default_rng(1)
for f in files:
    im = Image.open(f).convert("RGB")
    dev.append(InMemory(f.stem, im))
    w, h = im.size
    for k in range(3):
        c = r.uniform(0.3, 0.6)
        cw, ch = int(c * w), int(c * h)
        x0, y0 = int(r.uniform(0, w - cw)), int(r.uniform(0, h - ch))
        dev.append(InMemory(f"{f.stem}_crop{k}", im.crop((x0, y0, x0 + cw, y0 + ch))))
arrs["dev"], arrs["dev_flat"] = features(pred, dev)
np.savez(out, **arrs)
print("saved", {k: v.shape for k, v in arrs.items()})
