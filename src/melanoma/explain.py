"""Grad-CAM heatmaps of the malignancy logit, overlaid on the input image.

Two engines draw the same map. PyTorch: pytorch-grad-cam on the last convolutional stage. ONNX Runtime
(torch-free; the app's and ``melanoma explain``'s default): the graph's ``cam`` output. Grad-CAM weighs
each channel A_c of that stage by the spatial mean of d logit / d A_c. Behind a global-average-pool +
linear head (every timm EfficientNet here) that gradient is w_c / (h w) at every location, so Grad-CAM is
ReLU(sum_c w_c A_c) up to scale, the class activation map (Selvaraju et al. 2017, section 3.1): the
exported graph computes it in the forward pass. A test checks that both engines give the same heatmap.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .config import ModelError, atomic_write_bytes
from .imaging import open_rgb
from .inference import draft_size

IMAGE_WEIGHT = 0.55  # share of the photo in the overlay; the rest is the heatmap


def heatmap_from_cam(cam: np.ndarray, size: int) -> np.ndarray:
    """(h, w) class activation map -> (size, size) heatmap in [0, 1]: ReLU, min-max, bilinear
    upsampling, as pytorch-grad-cam scales its maps."""
    cam = np.maximum(cam.astype(np.float32), 0)
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    return np.asarray(Image.fromarray(cam).resize((size, size), Image.Resampling.BILINEAR))


def overlay(img: Image.Image, heatmap: np.ndarray) -> Image.Image:
    """The image, resized to the heatmap's (S, S), blended with the heatmap in the jet colour map."""
    from matplotlib import colormaps  # not pyplot: no backend, a tenth of the import time

    s = heatmap.shape[0]
    rgb = np.asarray(img.resize((s, s), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    heat = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    blend = (1 - IMAGE_WEIGHT) * heat + IMAGE_WEIGHT * rgb
    return Image.fromarray(np.uint8(255 * blend / blend.max()))


class BaseExplainer:
    """Shared by both engines; a subclass implements :meth:`explain`."""

    def __init__(self, predictor):
        self.predictor = predictor

    def explain(self, img: Image.Image) -> tuple[dict, np.ndarray]:
        """RGB image -> the predictor's run result for it and its (S, S) heatmap in [0, 1]."""
        raise NotImplementedError

    def heatmap(self, img: Image.Image) -> np.ndarray:
        return self.explain(img)[1]

    def assess(self, img: Image.Image, path: Path) -> tuple[dict, Image.Image | None]:
        """The predict row and the overlay, from one forward pass. Overlay is None unless assessed."""
        result, heat = self.explain(img)
        row = self.predictor.decide(result, path)
        return row, (overlay(img, heat) if row["status"] == "ok" else None)

    def overlay(self, img: Image.Image) -> Image.Image:
        return overlay(img, self.heatmap(img))

    def explain_file(self, path: Path, out_dir: Path) -> Path:
        """Write ``<out_dir>/<stem>_gradcam.png``; raises ImageError for unusable images."""
        img = open_rgb(path, draft_size=draft_size(self.predictor.cfg))
        out = Path(out_dir) / f"{Path(path).stem}_gradcam.png"
        buf = io.BytesIO()
        self.overlay(img).save(buf, "PNG")
        atomic_write_bytes(out, buf.getvalue())
        return out


class OnnxExplainer(BaseExplainer):
    """Grad-CAM from the ``cam`` output of an :class:`~melanoma.inference.OnnxPredictor`'s graph."""

    def __init__(self, predictor):
        if not predictor.has_cam:
            raise ModelError(f"{predictor.model_dir / 'model.onnx'} has no 'cam' output (an older export): "
                             "re-export it with `melanoma export`, or use --engine torch")
        super().__init__(predictor)

    def explain(self, img: Image.Image) -> tuple[dict, np.ndarray]:
        from .inference import preprocess

        x = preprocess(img, self.predictor.cfg)[None]
        logits, feats, cam = self.predictor.forward(x, cam=True)
        result = self.predictor.results_from_outputs(x, logits, feats)[0]
        return result, heatmap_from_cam(cam[0], self.predictor.cfg.img_size)


def target_layer(model):
    """The last convolutional stage: for timm EfficientNets the 1x1 head conv + BN + activation
    (7x7 at 224 px), whose maps still say *where*; for small_cnn its last conv block."""
    if hasattr(model, "bn2") and hasattr(model, "conv_head"):
        return model.bn2
    if hasattr(model, "features"):
        return model.features[-4]  # SmallCNN: the last conv's BatchNorm, before its pooling
    raise ValueError(f"no Grad-CAM target layer known for {type(model).__name__}")


class Explainer(BaseExplainer):
    """pytorch-grad-cam on a :class:`~melanoma.predict.Predictor`'s model (any architecture)."""

    def __init__(self, predictor):
        from pytorch_grad_cam import GradCAM

        super().__init__(predictor)
        self.model = predictor.model
        layer = target_layer(self.model)
        # Grad-CAM needs the gradient at the target layer only. With every other parameter frozen,
        # backward stops there instead of running through the whole backbone: same map, half the time.
        for param in self.model.parameters():
            param.requires_grad_(False)
        for param in layer.parameters():
            param.requires_grad_(True)
        self.cam = GradCAM(model=self.model, target_layers=[layer])

    def explain(self, img: Image.Image) -> tuple[dict, np.ndarray]:
        import torch
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        x = self.predictor.transform(img)[None]
        # Category 1: the gradient of the malignancy logit itself (its sign flips for category 0).
        with torch.enable_grad():
            heat = self.cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)])[0]
        # The gate's features and the logit are read off Grad-CAM's own forward pass.
        return self.predictor.result_from_outputs(x, self.cam.outputs), heat


def explainer_for(predictor) -> BaseExplainer:
    """The Grad-CAM explainer for a loaded predictor of either engine (PyTorch for an ONNX export that
    predates the ``cam`` output)."""
    from .inference import OnnxPredictor

    if isinstance(predictor, OnnxPredictor):
        if predictor.has_cam:
            return OnnxExplainer(predictor)
        from .predict import Predictor

        predictor = Predictor(predictor.model_dir)
    return Explainer(predictor)
