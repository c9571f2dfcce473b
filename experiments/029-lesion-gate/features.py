"""Cache 028's gate features for ``choose.py`` (fit and validation data only): the gate's 2,000 fit images and half
of them through each of 028's gate views, 1,200 negatives, the validation images, and 450 of them through each of
nine site views (melanoma.views.transform, as the stress suite draws them).

    python experiments/029-lesion-gate/features.py RUN_DIR OUT_DIR [--negatives N] [--pictures DIR] [--only NAME]

(031 caches 1,600 negatives with its folder of pictures, ``--only neg`` beside a copy of this cache.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from melanoma.bench import gate_features
from melanoma.config import ModelConfig
from melanoma.datasets import read_split
from melanoma.imaging import InMemory, load_any
from melanoma.negatives import gate_negatives
from melanoma.nn.torch_engine import TorchPredictor
from melanoma.ood import gate_views
from melanoma.sources import balanced_by_source
from melanoma.views import transform

VAL_VIEWS = ("zoom_out", "grid", "ruler", "film", "glare", "bubbles", "hair", "field", "blur")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--negatives", type=int, default=1200)
    ap.add_argument("--pictures", type=Path, help="a folder of non-lesion pictures: the negatives' fourth kind")
    ap.add_argument("--only", help="cache this one array (e.g. neg)")
    args = ap.parse_args()
    run, out = args.run, args.out
    out.mkdir(exist_ok=True, parents=True)
    split = read_split(run / "split.csv")
    predictor = TorchPredictor(run / "model", batch_size=32, num_workers=1, use_ood=False)

    def save(name: str, make) -> None:  # make: the pictures, drawn only when they are cached
        if args.only and name != args.only:
            return
        samples = make()
        f, _ = gate_features(predictor, samples)
        np.save(out / f"{name}.npy", f)
        np.save(out / f"{name}_src.npy", np.array([s.source for s in samples], object), allow_pickle=True)
        print(name, f.shape, flush=True)

    fit = balanced_by_source(split["train"], 2000, 43)  # 028's seed: the draw its gate was fitted on
    save("fit", lambda: fit)
    save("neg", lambda: gate_negatives(fit, args.negatives, pictures=args.pictures))
    save("val", lambda: split["val"])
    for kind in ModelConfig.load(run / "model" / "config.json").training["recipe"]["gate_views"]:  # 028's
        save(f"view_{kind}", lambda kind=kind: gate_views(fit, (kind,), 0.5))
    some = balanced_by_source(split["val"], 450, 0)
    for family in VAL_VIEWS:
        save(f"valview_{family}", lambda family=family: [
            InMemory(f"{s.path}#{family}", transform(load_any(s), family, i), s.label, s.source)
            for i, s in enumerate(some)])


if __name__ == "__main__":
    main()
