"""The ONNX Runtime engine: image files -> decisions with ONNX Runtime, numpy and PIL only (no torch).

``melanoma predict``, evaluate, explain and the app run on it when the model folder holds ``model.onnx``: it
starts in a fraction of a second (importing torch alone takes longer) and runs faster on a CPU than PyTorch eager.
Grad-CAM comes from the graph's own ``cam`` output (:class:`OnnxExplainer`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DEFAULT_MODEL_DIR, ModelError, load_config
from ..imaging import load_any
from ..lesion_crop import load_cropper
from ..ood import OODDetector
from .base import BaseExplainer, BasePredictor, dihedral, draft_size, heatmap_from_cam, preprocess

ONNX_FILE = "model.onnx"


def session_options(threads: int | None = None):
    """ONNX Runtime session options for CPU inference, as every ONNX graph of this package runs.

    Measured on 2 cores (benchmarks/inference_speed.py): real images drive some activations into denormal floats,
    which are slow; flushing them to zero gave +7% images/s and bit-identical logits. Idle ORT threads
    that spin steal the cores the decoding threads need: without spinning, 2,000 images end to end take
    ~1 s less and batch-1 latency is steadier."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return opts


class OnnxPredictor(BasePredictor):
    """A model folder's ``model.onnx`` under ONNX Runtime (CPU). Outputs of the graph: ``logit`` (N,) (a
    seven-class model: ``diagnosis_logits`` (N, 7)) and, for EfficientNets, ``gate_features`` (N, D) for the
    "cannot assess" gate and ``cam`` for Grad-CAM (:class:`OnnxExplainer`).

    Images are decoded on ``num_workers`` threads while the previous batch runs (PIL and ONNX Runtime
    both release the GIL). ``tta`` averages the logits of the 8 flips/rotations of each image.
    """

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 32, num_workers: int = 2,
                 use_ood: bool = True, tta: bool = False, threads: int | None = None):
        import onnxruntime as ort

        self.model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
        self.cfg = load_config(self.model_dir, ONNX_FILE)
        opts = session_options(threads)
        try:
            self.session = ort.InferenceSession(str(self.model_dir / ONNX_FILE), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"{self.model_dir / ONNX_FILE} cannot be loaded: {e}") from e
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.batch_size, self.tta, self.decoders = batch_size, tta, max(1, num_workers)
        self.ood = OODDetector.load(self.model_dir) if use_ood and "gate_features" in self.outputs else None
        self.cropper = load_cropper(self.model_dir, self.cfg)

    @property
    def has_cam(self) -> bool:
        """Whether the graph draws Grad-CAM maps (exports older than the ``cam`` output do not)."""
        return "cam" in self.outputs

    def forward(self, x: np.ndarray, cam: bool = False) -> tuple[np.ndarray, ...]:
        """(N, 3, S, S) float32 -> (N,) logits and (N, D) gate features (or None); with ``cam``, also
        the (N, h, w) class activation maps."""
        views = dihedral(x) if self.tta else [x]
        outs = [dict(zip(self.outputs, self.session.run(None, {"image": v}))) for v in views]
        if self.cfg.diagnoses:
            logits = np.mean([o["diagnosis_logits"] for o in outs], axis=0)
        else:
            logits = np.mean([o["logit"].reshape(len(x)) for o in outs], axis=0)
        feats = outs[0].get("gate_features")  # the gate (and the heatmap) judge the image as given
        return (logits, feats, outs[0]["cam"]) if cam else (logits, feats)

    def _load(self, sample) -> np.ndarray | None:
        try:
            return preprocess(self.frame(load_any(sample, draft_size=draft_size(self.cfg))), self.cfg)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            warnings.warn(f"skipping unreadable image {sample.path}: {e}", stacklevel=1)
            return None

    def _batches(self, samples: list) -> Iterator[tuple[list[int], np.ndarray]]:
        with ThreadPoolExecutor(max_workers=self.decoders) as pool:
            arrays = pool.map(self._load, samples)  # lazy and in order: decoding runs ahead
            idx, batch = [], []
            for i, a in enumerate(arrays):
                if a is not None:
                    idx.append(i)
                    batch.append(a)
                if len(batch) == self.batch_size or (i == len(samples) - 1 and batch):
                    yield idx, np.stack(batch)
                    idx, batch = [], []

    def run(self, samples: list, on_batch: Callable[[int], None] | None = None) -> list[dict | None]:
        out: list[dict | None] = [None] * len(samples)
        for idx, x in self._batches(samples):
            logits, feats = self.forward(x)
            for i, r in zip(idx, self.results_from_outputs(x, logits, feats)):
                out[i] = r
            if on_batch:
                on_batch(len(idx))
        return out


class OnnxExplainer(BaseExplainer):
    """Grad-CAM from the ``cam`` output of an :class:`OnnxPredictor`'s graph."""

    def __init__(self, predictor):
        if not predictor.has_cam:
            raise ModelError(f"{predictor.model_dir / 'model.onnx'} has no 'cam' output (an older export): "
                             "re-export it with `melanoma export`, or use --engine torch")
        super().__init__(predictor)

    def explain(self, img: Image.Image) -> tuple[dict, np.ndarray]:
        x = preprocess(img, self.predictor.cfg)[None]
        logits, feats, cam = self.predictor.forward(x, cam=True)
        result = self.predictor.results_from_outputs(x, logits, feats)[0]
        return result, heatmap_from_cam(cam[0], self.predictor.cfg.img_size)
