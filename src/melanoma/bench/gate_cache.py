"""A model's gate features, cached once, for studies that refit its gate many ways (experiments/029, 031: which
head, which penalty, which source or kind of negative held out), each refit then a second instead of minutes.

The cache is a folder of ``NAME.npy`` (features) and ``NAME_src.npy`` (each row's source) pairs: ``fit`` (the
gate's fit images, drawn as train draws them), ``view_KIND`` (half of them through each of the model's gate views),
``neg`` (:func:`melanoma.negatives.gate_negatives`), ``val`` (the run's validation images) and ``valview_FAMILY``
(450 of them through each site-shift family, :func:`melanoma.views.transform`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..ood import OODDetector

VAL_VIEWS = ("zoom_out", "grid", "ruler", "film", "glare", "bubbles", "hair", "field", "blur")
VAL_VIEW_IMAGES = 450


def write(run: str | Path, out: str | Path, negatives: int, pictures: str | Path | None = None,
          seed: int | None = None, only: str | None = None) -> None:
    """Cache the gate features of ``run``'s model (``run/model``, ``run/split.csv``) into ``out``; ``seed`` draws the
    fit images (the recipe's by default), ``only`` caches that one array. Needs torch."""
    from ..datasets import read_split
    from ..imaging import InMemory, load_any
    from ..negatives import gate_negatives
    from ..nn.fit import GATE_FIT_IMAGES
    from ..nn.torch_engine import TorchPredictor
    from ..ood import gate_views
    from ..sources import balanced_by_source
    from ..views import transform
    from . import gate_features

    run, out = Path(run), Path(out)
    out.mkdir(exist_ok=True, parents=True)
    split = read_split(run / "split.csv")
    recipe = ModelConfig.load(run / "model" / "config.json").training["recipe"]
    predictor = TorchPredictor(run / "model", batch_size=32, num_workers=1, use_ood=False)

    def save(name: str, make) -> None:  # make: the pictures, drawn only when they are cached
        if only and name != only:
            return
        samples = make()
        f, _ = gate_features(predictor, samples)
        np.save(out / f"{name}.npy", f)
        np.save(out / f"{name}_src.npy", np.array([s.source for s in samples], object), allow_pickle=True)
        print(name, f.shape, flush=True)

    fit = balanced_by_source(split["train"], GATE_FIT_IMAGES, recipe.get("seed", 42) if seed is None else seed)
    save("fit", lambda: fit)
    save("neg", lambda: gate_negatives(fit, negatives, pictures=pictures))
    save("val", lambda: split["val"])
    for kind in recipe["gate_views"]:
        save(f"view_{kind}", lambda kind=kind: gate_views(fit, (kind,), 0.5))
    some = balanced_by_source(split["val"], VAL_VIEW_IMAGES, 0)
    for family in VAL_VIEWS:
        save(f"valview_{family}", lambda family=family: [
            InMemory(f"{s.path}#{family}", transform(load_any(s), family, i), s.label, s.source)
            for i, s in enumerate(some)])


@dataclass
class GateCache:
    """What a gate refit needs, read back: lesions (fit images and their views), negatives, the threshold's
    groups (validation images and their trained-on views, each view a group ``view:KIND``) and every view."""

    columns: np.ndarray | None  # the stages the model's gate reads
    fit_views: tuple[str, ...]
    pos_f: np.ndarray
    pos_s: np.ndarray
    neg_f: np.ndarray
    neg_s: np.ndarray
    val_f: np.ndarray
    val_s: np.ndarray
    val_views: dict[str, tuple[np.ndarray, np.ndarray]]
    thr_f: np.ndarray
    thr_g: np.ndarray


def read(folder: str | Path, model: str | Path, held_out_views: tuple[str, ...] = ("ruler", "bubbles")) -> GateCache:
    """The cache in ``folder`` of the network in ``model`` (its gate's stages and views), with the validation
    images through ``held_out_views`` too."""
    folder = Path(folder)

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        return np.load(folder / f"{name}.npy"), np.load(folder / f"{name}_src.npy", allow_pickle=True)

    fit_views = tuple(ModelConfig.load(Path(model) / "config.json").training["recipe"]["gate_views"])
    fit_f, fit_s = load("fit")
    views = [load(f"view_{k}") for k in fit_views]
    neg_f, neg_s = load("neg")
    val_f, val_s = load("val")
    val_views = {k: load(f"valview_{k}") for k in fit_views + held_out_views}
    return GateCache(
        columns=OODDetector.load(model).columns, fit_views=fit_views,
        pos_f=np.concatenate([fit_f, *[v[0] for v in views]]), pos_s=np.concatenate([fit_s, *[v[1] for v in views]]),
        neg_f=neg_f, neg_s=neg_s, val_f=val_f, val_s=val_s, val_views=val_views,
        thr_f=np.concatenate([val_f, *[val_views[k][0] for k in fit_views]]),
        thr_g=np.concatenate([val_s, *[[f"view:{k}"] * len(val_views[k][0]) for k in fit_views]]))
