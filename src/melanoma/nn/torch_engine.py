"""The PyTorch engine: for models without an ONNX file, and pytorch-grad-cam's Grad-CAM (:class:`TorchExplainer`).

The decisions themselves (gate, calibrated probability, output rows) live in
:class:`~melanoma.engines.base.BasePredictor`, shared with the torch-free ONNX Runtime engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..backbones import backbone
from ..config import DEFAULT_MODEL_DIR
from ..diagnoses import IS_CANCER
from ..engines.base import BaseExplainer, BasePredictor, draft_size
from ..engines.onnx_engine import load_cropper
from ..imaging import Sample
from ..ood import GATE_BLOCKS, OODDetector, stage_columns
from .data import build_transform, make_loader
from .models import load_model_folder


class TorchPredictor(BasePredictor):
    """A loaded model folder: images -> logits, calibrated p(malignant), and the "cannot assess" gate.

    ``tta`` averages the logits of the 8 flips/rotations of each image (8x the compute).
    """

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 32, num_workers: int = 0,
                 use_ood: bool = True, tta: bool = False):
        self.model, self.cfg = load_model_folder(model_dir)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.model_dir = Path(model_dir) if model_dir else None
        self.transform = build_transform(self.cfg.img_size, self.cfg.mean, self.cfg.std,
                                         color_constancy=self.cfg.color_constancy,
                                         downscale_to=self.cfg.downscale_to)
        self.batch_size, self.num_workers, self.tta = batch_size, num_workers, tta
        self.has_features = hasattr(self.model, "forward_head")  # timm models; not small_cnn
        self._stages: dict[int, torch.Tensor] = {}
        if self.has_features:  # the gate's stages, as the backbone's entry names them (melanoma.backbones)
            for i, module in enumerate(backbone(self.cfg.arch).gate_modules(self.model)):
                module.register_forward_hook(lambda _m, _i, out, i=i: self._stages.__setitem__(i, out))
        self.ood = OODDetector.load(self.model_dir or DEFAULT_MODEL_DIR) if use_ood and self.has_features else None
        self.cropper = load_cropper(self.model_dir or DEFAULT_MODEL_DIR, self.cfg)

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

    def gate_columns(self, blocks) -> np.ndarray | None:
        """:func:`ood.stage_columns` of ``blocks`` for this network; None (all features) for all GATE_BLOCKS. The
        stages' channel counts come from one blank forward pass."""
        if set(blocks) == set(GATE_BLOCKS):
            return None
        self.forward(torch.zeros(1, 3, self.cfg.img_size, self.cfg.img_size))
        if not self._stages:
            raise ValueError(f"{self.cfg.arch} has no stages for the gate to choose from")
        return stage_columns([self._stages[i].shape[1] for i in sorted(self._stages)], blocks)

    def run(self, samples: list[Sample], on_batch: Callable[[int], None] | None = None) -> list[dict | None]:
        """Per sample, in order: ``{"logit", "ood_score", "flat", "features", "refusal", "lesion_evidence"}``; None if
        unreadable."""
        out: list[dict | None] = [None] * len(samples)
        frame = None if self.cropper is None else self.cropper.frame  # the cropper's, not self's: sent to workers
        loader = make_loader(samples, self.transform, self.batch_size, num_workers=self.num_workers,
                             draft_size=draft_size(self.cfg), frame=frame)
        for batch in loader:
            if batch is None:
                continue
            x, _, idx, *evidence = batch  # the segmenter's evidence, from a cropping model's frame
            logits, feats = self.forward(x)
            results = self.results_from_outputs(x.numpy(), logits.numpy(), None if feats is None else feats.numpy(),
                                                evidence[0].numpy() if evidence else None)
            for i, r in zip(idx.tolist(), results):
                out[i] = r
            if on_batch:
                on_batch(len(idx))
        return out

    def result_from_outputs(self, x: torch.Tensor, logits: torch.Tensor, evidence: np.ndarray | None = None) -> dict:
        """:meth:`run`'s result for a one-image batch ``x`` whose forward pass has just run (its logits
        given; the gate's stage features still held by the hooks), e.g. inside Grad-CAM; ``evidence``: its
        framing's (:meth:`frame`)."""
        feats = self._gate_features(None)
        logits = logits.detach().reshape(len(x), -1)
        return self.results_from_outputs(x.detach().numpy(), (logits if self.cfg.diagnoses else logits[:, 0]).numpy(),
                                         None if feats is None else feats.numpy(),
                                         None if evidence is None else evidence[None])[0]


def _cancer_direction(output: torch.Tensor) -> torch.Tensor:
    cancer = torch.as_tensor(IS_CANCER)
    return output[..., cancer].mean(-1) - output[..., ~cancer].mean(-1)


class TorchExplainer(BaseExplainer):
    """pytorch-grad-cam on a :class:`TorchPredictor`'s model (any architecture)."""

    def __init__(self, predictor):
        from pytorch_grad_cam import GradCAM

        super().__init__(predictor)
        self.model = predictor.model
        layer = backbone(predictor.cfg.arch).cam_layer(self.model)  # the last conv maps (melanoma.backbones)
        # Grad-CAM needs the gradient at the target layer only. With every other parameter frozen,
        # backward stops there instead of running through the whole backbone: same map, half the time.
        for param in self.model.parameters():
            param.requires_grad_(False)
        for param in layer.parameters():
            param.requires_grad_(True)
        self.cam = GradCAM(model=self.model, target_layers=[layer])

    def explain(self, img: Image.Image, evidence: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
        import torch
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        x = self.predictor.transform(img)[None]
        # Category 1: the gradient of the malignancy logit itself (its sign flips for category 0); seven classes:
        # of the cancers' mean logit minus the benign ones' (base.cam_weights, as the ONNX graph's map).
        target = BinaryClassifierOutputTarget(1) if not self.predictor.cfg.diagnoses else _cancer_direction
        with torch.enable_grad():
            heat = self.cam(input_tensor=x, targets=[target])[0]
        # The gate's features and the logit are read off Grad-CAM's own forward pass.
        return self.predictor.result_from_outputs(x, self.cam.outputs, evidence), heat
