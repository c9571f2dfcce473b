"""The Python API: a classifier in three lines, the same answers as ``melanoma predict``.

    from melanoma import Classifier
    clf = Classifier.from_pretrained()            # the bundled model, or a model folder
    rows = clf.assess(["lesion.jpg", pil_image, numpy_array])   # the rows of `melanoma predict --json`
    clf.predict_proba(images), clf.predict(images), clf.classes_  # scikit-learn's conventions

Torch-free on a model folder with ``model.onnx`` (the bundled one has it). ``train``, ``evaluate`` and
``audit`` are the functions the commands call (:func:`melanoma.nn.train.train`, :func:`melanoma.evaluate.evaluate`,
:func:`melanoma.audit.audit`), importable from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .imaging import ImageError, InMemory, to_rgb
from .inputs import row as output_row


def _as_list(inputs) -> list:
    if isinstance(inputs, (str, Path, np.ndarray)) or hasattr(inputs, "getpixel"):  # one image
        return [inputs]
    return list(inputs)


class Classifier:
    """A loaded model: :meth:`assess` (the full answer per image, as ``melanoma predict --json``), scikit-learn's
    :meth:`predict` / :meth:`predict_proba` / :attr:`classes_`, and :meth:`explain` heatmaps.

    Inputs, alone or in a list: a path (``str`` or ``Path``; folders and globs are expanded as on the command
    line), a PIL image, or a numpy array (H x W, H x W x 3 or x 4; uint8 or floats in [0, 1]).
    """

    def __init__(self, predictor):
        self.predictor = predictor
        self._explainer = None

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, engine: str = "auto", tta: bool = False,
                        prevalence: float | None = None) -> Classifier:
        """The bundled model (``model=None``) or a model folder; ``engine`` auto, onnx or torch."""
        from .engines import load_predictor

        return cls(load_predictor(model, engine, tta=tta).with_prevalence(prevalence))

    @property
    def threshold(self) -> float:
        return self.predictor.threshold

    def _items(self, inputs) -> list:
        from .inputs import expand_paths

        items: list = []
        for k, x in enumerate(_as_list(inputs)):
            if isinstance(x, (str, Path)):
                items += expand_paths([x])
            else:
                items.append(InMemory(f"<image {k}>", x))
        return items

    @property
    def classes_(self) -> np.ndarray:
        """What :meth:`predict_proba`'s columns are: ``["benign", "malignant"]`` for a one-logit model (malignant:
        melanoma), the seven diagnoses (``diagnoses.DIAGNOSES``: mel, nv, bkl, df, vasc, bcc, akiec) for a
        seven-class one."""
        return np.array(self.predictor.cfg.diagnoses or self.predictor.cfg.class_names)

    def predict(self, inputs: Any) -> np.ndarray:
        """One of :attr:`classes_` per image, None where it was not assessed: the label at the model's threshold
        (one-logit), or the most probable diagnosis (seven-class; the verdict, decided on p(skin cancer), is in
        :meth:`assess`'s rows)."""
        out = []
        for r in self.assess(inputs):
            if r["status"] != "ok":
                out.append(None)
            else:
                out.append(r["diagnoses"][0]["dx"] if r["diagnoses"] else r["label"])
        return np.array(out, dtype=object)

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """(n, len(classes_)) calibrated probabilities, a row of NaN where the image was not assessed (error or
        "cannot assess")."""
        classes = list(self.classes_)
        rows = self.assess(inputs)
        out = np.full((len(rows), len(classes)), np.nan)
        for row, r in zip(out, rows):
            if r["status"] == "ok" and r["diagnoses"]:
                for d in r["diagnoses"]:
                    row[classes.index(d["dx"])] = d["p"]
            elif r["status"] == "ok":
                row[:] = (1 - r["p_malignant"], r["p_malignant"])
        return out

    def assess(self, inputs: Any) -> list[dict]:
        """One row per image, as ``melanoma predict --json`` gives (:func:`melanoma.inputs.row`): ``path``,
        ``status`` (ok, error, out_of_distribution), ``verdict``, ``p_malignant``, ``p_melanoma``, ``p_skin_cancer``,
        ``diagnoses`` and ``label`` (None unless ok), ``error``, ``ood_score``."""
        items = self._items(inputs)
        files = [x for x in items if isinstance(x, Path)]
        rows = dict(zip(files, self.predictor.predict_paths(files))) if files else {}
        memory = [x for x in items if isinstance(x, InMemory)]
        usable, errors = [], {}
        for m in memory:
            try:
                to_rgb(m.image)
                usable.append(m)
            except ImageError as e:
                errors[m.path] = str(e)
        results = dict(zip((m.path for m in usable), self.predictor.run(usable))) if usable else {}
        out = []
        for x in items:
            if isinstance(x, Path):
                out.append(rows[x])
            elif x.path in errors:
                out.append(output_row(x.path, "error", errors[x.path]))
            else:
                out.append(self.predictor.decide(results[x.path], Path(x.path)) | {"path": x.path})
        return out

    def explain(self, inputs: Any) -> list[tuple[dict, np.ndarray | None]]:
        """Per image: its :meth:`assess` row and its Grad-CAM heatmap of the malignancy logit ((S, S) in [0, 1],
        S the model's input size), or None when it was not assessed."""
        from .engines import explainer_for
        from .engines.base import draft_size
        from .imaging import open_rgb

        if self._explainer is None:
            self._explainer = explainer_for(self.predictor)
        out = []
        for x in self._items(inputs):
            name = x.path if isinstance(x, InMemory) else str(x)
            try:
                img = to_rgb(x.image) if isinstance(x, InMemory) else open_rgb(x, draft_size(self.predictor.cfg))
            except ImageError as e:
                out.append((output_row(name, "error", str(e)), None))
                continue
            result, heat = self._explainer.explain(img)
            row = self.predictor.decide(result, Path(name)) | {"path": name}
            out.append((row, heat if row["status"] == "ok" else None))
        return out


def train(data: str | Path, out: str | Path, recipe: str | Path | None = None, resume: bool = False,
          **overrides) -> Path:
    """Train as ``melanoma train`` does: a recipe (optional), then keyword overrides of TrainConfig fields
    (``aug={...}`` for augmentation), checked as ``--set`` is (:func:`melanoma.recipe.apply_overrides`); the recipe,
    merged, is written into the model folder. Needs [train]."""
    from .config import atomic_write_text
    from .nn.train import train as run_training
    from .recipe import TrainConfig, apply_overrides, load_recipe, resolved_recipe_text

    aug = overrides.pop("aug", None) or {}
    cfg = apply_overrides(load_recipe(recipe) if recipe else TrainConfig(),
                          {**overrides, **{f"aug.{k}": v for k, v in aug.items()}})
    model_dir = run_training(data, out, cfg, resume=resume)
    if recipe:
        atomic_write_text(model_dir / "recipe.yaml", resolved_recipe_text(recipe, cfg))
    return model_dir


def evaluate(data: str | Path, out: str | Path, model: str | Path | None = None, split: str = "test",
             **kwargs) -> dict:
    """Evaluate as ``melanoma evaluate`` does, the clean test (no near-copy in train) included."""
    from .evaluate import clean_paths_for
    from .evaluate import evaluate as run_evaluate

    return run_evaluate(data, out, model, split, clean_paths=clean_paths_for(data, split, out), **kwargs)


def audit(data: str | Path, out: str | Path | None = None, against: str | Path | None = None):
    """Audit as ``melanoma audit`` does; writes clusters.csv, pairs.csv and audit.json when ``out`` is given."""
    from .audit import audit as run_audit
    from .audit import cached_audit, write_audit

    result = run_audit(data, against=against) if against else cached_audit(data)
    if out is not None:
        write_audit(result, out)
    return result


__all__ = ["Classifier", "train", "evaluate", "audit"]
