"""Grad-CAM heatmaps (pytorch-grad-cam) of the malignancy logit, overlaid on the input image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import atomic_write_bytes
from .data import load_image


def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last convolutional stage: for timm EfficientNets the 1x1 head conv + BN + activation
    (7x7 at 224 px), whose maps still say *where*; for small_cnn its last conv block."""
    if hasattr(model, "bn2") and hasattr(model, "conv_head"):
        return model.bn2
    if hasattr(model, "features"):
        return model.features[-4]  # SmallCNN: the last conv's BatchNorm, before its pooling
    raise ValueError(f"no Grad-CAM target layer known for {type(model).__name__}")


class Explainer:
    """Grad-CAM for a :class:`~melanoma.predict.Predictor`'s model. ``heatmap``: image -> (S, S) in [0, 1]."""

    def __init__(self, predictor):
        from pytorch_grad_cam import GradCAM

        self.predictor = predictor
        self.model = predictor.model
        layer = target_layer(self.model)
        # Grad-CAM needs the gradient at the target layer only. With every other parameter frozen,
        # backward stops there instead of running through the whole backbone: same map, half the time.
        for param in self.model.parameters():
            param.requires_grad_(False)
        for param in layer.parameters():
            param.requires_grad_(True)
        self.cam = GradCAM(model=self.model, target_layers=[layer])

    def heatmap(self, img: Image.Image, x: torch.Tensor | None = None) -> np.ndarray:
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        x = self.predictor.transform(img)[None] if x is None else x
        # Category 1: the gradient of the malignancy logit itself (its sign flips for category 0).
        with torch.enable_grad():
            return self.cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)])[0]

    def assess(self, img: Image.Image, path: Path) -> tuple[dict, Image.Image | None]:
        """The predict row and the overlay from one forward (+ partial backward) pass: the gate's
        features and the logit are read off Grad-CAM's own forward. Overlay is None unless assessed."""
        x = self.predictor.transform(img)[None]
        cam = self.heatmap(img, x)
        row = self.predictor.decide(self.predictor.result_from_outputs(x, self.cam.outputs), path)
        return row, (self.overlay(img, cam=cam) if row["status"] == "ok" else None)

    def overlay(self, img: Image.Image, size: int | None = None, cam: np.ndarray | None = None) -> Image.Image:
        """The image (resized to the model's input) with the heatmap blended on top."""
        from pytorch_grad_cam.utils.image import show_cam_on_image

        s = size or self.predictor.cfg.img_size
        rgb = np.asarray(img.resize((s, s), Image.Resampling.BILINEAR), dtype=np.float32) / 255
        cam = self.heatmap(img) if cam is None else cam
        if cam.shape != (s, s):
            cam = np.asarray(Image.fromarray((cam * 255).astype(np.uint8)).resize((s, s)), np.float32) / 255
        return Image.fromarray(show_cam_on_image(rgb, cam, use_rgb=True, image_weight=0.55))

    def explain_file(self, path: Path, out_dir: Path) -> Path:
        """Write ``<out_dir>/<stem>_gradcam.png``; raises ImageError for unusable images."""
        img = load_image(path, draft_size=self.predictor.cfg.img_size)
        out = Path(out_dir) / f"{Path(path).stem}_gradcam.png"
        buf = io.BytesIO()
        self.overlay(img).save(buf, "PNG")
        atomic_write_bytes(out, buf.getvalue())
        return out
