"""Inference: image paths -> rows of ``path, p_malignant, label, status``."""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from .data import Sample, build_transform, is_image, load_image, make_loader
from .models import load_model_folder


def expand_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted unique files.

    A name that matches nothing is kept, so that the caller reports it as an error row.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        for p in matches:
            if p.is_dir():
                found += sorted(q for q in p.rglob("*") if is_image(q))
            else:
                found.append(p)
    return list(dict.fromkeys(found))


def unreadable_reason(path: Path) -> str:
    """Why ``path`` cannot be used, in one line (re-opens it: only called for failures)."""
    try:
        load_image(path)
    except ValueError as e:  # ImageError carries the user-facing reason
        return str(e)
    return "unreadable image"


class Predictor:
    """A loaded model folder. ``predict_proba`` maps images to calibrated p(malignant)."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 32, num_workers: int = 0):
        self.model, self.cfg = load_model_folder(model_dir)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.transform = build_transform(self.cfg.img_size, self.cfg.mean, self.cfg.std)
        self.batch_size, self.num_workers = batch_size, num_workers

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> (N,) logits."""
        return self.model(x.contiguous(memory_format=torch.channels_last)).squeeze(1)

    def proba_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits / self.cfg.temperature)

    def predict_logits(self, samples: list[Sample],
                       on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """Raw logit per sample, in order; ``None`` where the image could not be read."""
        out: list[float | None] = [None] * len(samples)
        loader = make_loader(samples, self.transform, self.batch_size, num_workers=self.num_workers)
        for batch in loader:
            if batch is None:
                continue
            x, _, idx = batch
            for i, z in zip(idx.tolist(), self.logits(x).tolist()):
                out[i] = z
            if on_batch:
                on_batch(len(idx))
        return out

    def predict_samples(self, samples: list[Sample],
                        on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """Calibrated p(malignant) per sample, in order; ``None`` where the image could not be read."""
        logits = self.predict_logits(samples, on_batch)
        return [None if z is None else float(self.proba_from_logits(torch.tensor(z))) for z in logits]

    def label(self, p: float) -> str:
        return self.cfg.class_names[int(p >= self.cfg.threshold)]

    def predict_paths(self, paths: list[Path], on_batch: Callable[[int], None] | None = None) -> list[dict]:
        """One dict per path: ``path``, ``p_malignant``, ``label``, ``status`` ('ok' or 'error'), ``error``."""
        readable = [p for p in paths if p.is_file()]
        with warnings.catch_warnings():  # the rows below carry the reason instead
            warnings.simplefilter("ignore")
            probs = dict(zip(readable, self.predict_samples([Sample(p, 0) for p in readable], on_batch)))
        rows = []
        for p in paths:
            prob = probs.get(p)
            if prob is None:
                reason = "no such file" if not p.exists() else "not a file" if not p.is_file() else \
                    unreadable_reason(p)
                rows.append({"path": str(p), "p_malignant": None, "label": None, "status": "error",
                             "error": reason})
            else:
                rows.append({"path": str(p), "p_malignant": round(prob, 6), "label": self.label(prob),
                             "status": "ok", "error": None})
        return rows
