"""Inference: image paths -> rows of ``path, p_malignant, label, status``."""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from .data import Sample, build_transform, find_images, load_image, make_loader
from .models import load_model_folder
from .ood import OODDetector, is_flat


def expand_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted unique files.

    A name that matches nothing is kept, so that the caller reports it as an error row.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        for p in matches:
            if p.is_dir():
                found += find_images(p)
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
    """A loaded model folder: images -> logits, calibrated p(malignant), and the "cannot assess" gate.

    ``tta`` averages the logits of the 8 flips/rotations of each image (8x the compute).
    """

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 32, num_workers: int = 0,
                 use_ood: bool = True, tta: bool = False):
        self.model, self.cfg = load_model_folder(model_dir)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.model_dir = Path(model_dir) if model_dir else None
        self.transform = build_transform(self.cfg.img_size, self.cfg.mean, self.cfg.std,
                                         color_constancy=self.cfg.color_constancy)
        self.batch_size, self.num_workers, self.tta = batch_size, num_workers, tta
        self.has_features = hasattr(self.model, "forward_head")  # timm models; not small_cnn
        self._stages: dict[int, torch.Tensor] = {}
        blocks = getattr(self.model, "blocks", None)
        if self.has_features and blocks is not None and len(blocks) >= 7:  # EfficientNet: gate on blocks 3-6
            for i in range(3, 7):
                blocks[i].register_forward_hook(lambda _m, _i, out, i=i: self._stages.__setitem__(i, out))
        from .models import DEFAULT_MODEL_DIR

        self.ood = OODDetector.load(self.model_dir or DEFAULT_MODEL_DIR) if use_ood and self.has_features else None

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, 3, S, S) normalised images -> (N,) logits and (N, D) gate features (or None)."""
        x = x.contiguous(memory_format=torch.channels_last)
        if not self.has_features:
            return self.model(x).squeeze(1), None
        self._stages.clear()
        pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        logits = self.model.get_classifier()(pooled).squeeze(1)
        feats = self._gate_features(pooled)
        if self.tta:
            views = [torch.rot90(v, k, dims=(2, 3)) for v in (x, x.flip(3)) for k in range(4)][1:]
            logits = (logits + sum(self.model(v).squeeze(1) for v in views)) / 8
        return logits, feats

    def _gate_features(self, pooled: torch.Tensor | None) -> torch.Tensor | None:
        """The gate's features of the last forward pass: the pooled intermediate stages where hooked
        (see ood.py for why), else the final pooled features."""
        if not self._stages:
            return pooled
        return torch.cat([self._stages[i].mean(dim=(2, 3)) for i in sorted(self._stages)], 1).detach()

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def proba_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits / self.cfg.temperature)

    def run(self, samples: list[Sample], on_batch: Callable[[int], None] | None = None) -> list[dict | None]:
        """Per sample, in order: ``{"logit", "ood_score", "flat", "features"}``; None if unreadable."""
        out: list[dict | None] = [None] * len(samples)
        loader = make_loader(samples, self.transform, self.batch_size, num_workers=self.num_workers,
                             draft_size=self.cfg.img_size)
        for batch in loader:
            if batch is None:
                continue
            x, _, idx = batch
            logits, feats = self.forward(x)
            flat = is_flat(x, self.cfg.mean, self.cfg.std)
            scores = self.ood.score(feats.numpy()) if self.ood is not None else [None] * len(idx)
            for k, i in enumerate(idx.tolist()):
                out[i] = {"logit": float(logits[k]), "flat": bool(flat[k]),
                          "ood_score": None if scores[k] is None else float(scores[k]),
                          "features": None if feats is None else feats[k].numpy()}
            if on_batch:
                on_batch(len(idx))
        return out

    def is_out_of_distribution(self, r: dict) -> bool:
        return r["flat"] or (self.ood is not None and r["ood_score"] > self.ood.threshold)

    def features(self, samples: list[Sample]) -> np.ndarray:
        """(N, D) pooled features of the readable samples."""
        return np.stack([r["features"] for r in self.run(samples) if r is not None])

    def predict_logits(self, samples: list[Sample],
                       on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """Raw logit per sample, in order; ``None`` where the image could not be read."""
        return [None if r is None else r["logit"] for r in self.run(samples, on_batch)]

    def predict_samples(self, samples: list[Sample],
                        on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """Calibrated p(malignant) per sample, in order; ``None`` where the image could not be read."""
        logits = self.predict_logits(samples, on_batch)
        return [None if z is None else float(self.proba_from_logits(torch.tensor(z))) for z in logits]

    def label(self, p: float) -> str:
        return self.cfg.class_names[int(p >= self.cfg.threshold)]

    def predict_paths(self, paths: list[Path], on_batch: Callable[[int], None] | None = None) -> list[dict]:
        """One dict per path: ``path``, ``status`` (ok, error or out_of_distribution), ``p_malignant``
        and ``label`` (None unless ok), ``error`` (the reason, for errors), ``ood_score``."""
        readable = [p for p in paths if p.is_file()]
        with warnings.catch_warnings():  # the rows below carry the reason instead
            warnings.simplefilter("ignore")
            results = dict(zip(readable, self.run([Sample(p, 0) for p in readable], on_batch)))
        return [self.decide(results.get(p), p) for p in paths]

    def decide(self, r: dict | None, path: Path) -> dict:
        """The output row for one image from its :meth:`run` result (None = unreadable)."""
        row = {"path": str(path), "status": "ok", "p_malignant": None, "label": None, "error": None,
               "ood_score": None}
        if r is None:
            row.update(status="error", error=unreadable_reason(path) if path.exists() else "no such file")
        elif self.is_out_of_distribution(r):
            row.update(status="out_of_distribution", ood_score=r["ood_score"],
                       error="cannot assess: blank or single-colour image" if r["flat"] else
                       "cannot assess: does not look like a dermoscopic lesion image")
        else:
            prob = float(self.proba_from_logits(torch.tensor(r["logit"])))
            row.update(p_malignant=round(prob, 6), label=self.label(prob),
                       ood_score=None if r["ood_score"] is None else round(r["ood_score"], 4))
        return row

    def result_from_outputs(self, x: torch.Tensor, logits: torch.Tensor) -> dict:
        """:meth:`run`'s result for a one-image batch ``x`` whose forward pass has just run (its logits
        given; the gate's stage features still held by the hooks), e.g. inside Grad-CAM."""
        feats = self._gate_features(None)
        score = None if self.ood is None or feats is None else float(self.ood.score(feats.numpy())[0])
        return {"logit": float(logits.reshape(-1)[0]), "flat": bool(is_flat(x, self.cfg.mean, self.cfg.std)[0]),
                "ood_score": score, "features": None}
