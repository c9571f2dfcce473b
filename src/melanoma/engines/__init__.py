"""The inference engines behind one protocol (:mod:`melanoma.engines.base`): ONNX Runtime (torch-free) and PyTorch.

``load_predictor`` picks one for a model folder, ``explainer_for`` gives a loaded predictor its Grad-CAM explainer.
Neither imports an engine before it is asked for, so this package stays torch-free.
"""

from __future__ import annotations

from pathlib import Path

from ..config import resolve_model_dir
from .base import BaseExplainer, BasePredictor

ENGINES = ("auto", "onnx", "torch")
ONNX_FILE = "model.onnx"  # also engines.onnx_engine.ONNX_FILE; here so that choosing an engine imports neither


def load_predictor(model_dir: str | Path | None = None, engine: str = "auto", **kwargs) -> BasePredictor:
    """The predictor for a model folder (or a cached Hub model id, see ``config.resolve_model_dir``).
    ``engine``: ``onnx``, ``torch``, or ``auto`` (ONNX Runtime when the folder holds model.onnx and
    onnxruntime is installed, else PyTorch)."""
    folder = resolve_model_dir(model_dir)
    if engine not in ENGINES:
        raise ValueError(f"engine must be auto, onnx or torch (got {engine!r})")
    if engine == "auto":
        import importlib.util

        has_ort = importlib.util.find_spec("onnxruntime") is not None
        engine = "onnx" if has_ort and (folder / ONNX_FILE).is_file() else "torch"
    if engine == "onnx":
        from .onnx_engine import OnnxPredictor

        return OnnxPredictor(folder, **kwargs)
    from ..nn.torch_engine import TorchPredictor

    return TorchPredictor(folder, **kwargs)


def explainer_for(predictor) -> BaseExplainer:
    """The Grad-CAM explainer for a loaded predictor of either engine (PyTorch for an ONNX export that
    predates the ``cam`` output)."""
    from .onnx_engine import OnnxExplainer, OnnxPredictor

    if isinstance(predictor, OnnxPredictor):
        if predictor.has_cam:
            return OnnxExplainer(predictor)
        from ..nn.torch_engine import TorchPredictor

        predictor = TorchPredictor(predictor.model_dir)
    from ..nn.torch_engine import TorchExplainer

    return TorchExplainer(predictor)


__all__ = ["BaseExplainer", "BasePredictor", "ENGINES", "explainer_for", "load_predictor"]
