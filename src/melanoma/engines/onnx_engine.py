"""The ONNX Runtime engine: image files -> decisions with ONNX Runtime, numpy and PIL only (no torch).

``melanoma predict``, evaluate, explain and the app run on it when the model folder holds ``model.onnx``: it
starts in a fraction of a second (importing torch alone takes longer) and runs faster on a CPU than PyTorch eager.
Grad-CAM comes from the graph's own ``cam`` output (:class:`OnnxExplainer`). A folder's lesion segmenter runs here
too (:class:`LesionCropper`, for both engines and for training on crops).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..calibrate import sigmoid
from ..config import DEFAULT_MODEL_DIR, ModelError, load_config, verify_checksums
from ..imaging import load_any
from ..lesion_crop import SEGMENTER_FILE, CropSpec, crop_box, lesion_box, lesion_evidence, segmenter_input
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

    def _load(self, sample) -> tuple[np.ndarray, np.ndarray | None] | None:
        try:
            img, evidence = self.frame(load_any(sample, draft_size=draft_size(self.cfg)))
            return preprocess(img, self.cfg), evidence
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            warnings.warn(f"skipping unreadable image {sample.path}: {e}", stacklevel=1)
            return None

    def _batches(self, samples: list) -> Iterator[tuple[list[int], np.ndarray, np.ndarray | None]]:
        with ThreadPoolExecutor(max_workers=self.decoders) as pool:
            loaded = pool.map(self._load, samples)  # lazy and in order: decoding runs ahead
            idx, batch = [], []
            for i, a in enumerate(loaded):
                if a is not None:
                    idx.append(i)
                    batch.append(a)
                if len(batch) == self.batch_size or (i == len(samples) - 1 and batch):
                    x, evidence = zip(*batch)
                    yield idx, np.stack(x), None if evidence[0] is None else np.stack(evidence)
                    idx, batch = [], []

    def run(self, samples: list, on_batch: Callable[[int], None] | None = None) -> list[dict | None]:
        out: list[dict | None] = [None] * len(samples)
        for idx, x, evidence in self._batches(samples):
            logits, feats = self.forward(x)
            for i, r in zip(idx, self.results_from_outputs(x, logits, feats, evidence)):
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

    def explain(self, img: Image.Image, evidence: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
        x = preprocess(img, self.predictor.cfg)[None]
        logits, feats, cam = self.predictor.forward(x, cam=True)
        result = self.predictor.results_from_outputs(x, logits, feats, None if evidence is None else evidence[None])[0]
        return result, heatmap_from_cam(cam[0], self.predictor.cfg.img_size)


class LesionCropper:
    """A model folder's segmenter and crop: ``cropper(img)`` -> the lesion-centred picture (the picture itself when
    no lesion is found). Its ONNX session opens on first use, so a cropper can be sent to data-loading processes."""

    def __init__(self, path: str | Path, spec: CropSpec, threads: int | None = 1):
        self.path, self.spec, self.threads = Path(path), spec, threads
        self._session = None

    def __getstate__(self):
        return {**self.__dict__, "_session": None}

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(self.path), session_options(self.threads),
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def probs(self, img: Image.Image) -> np.ndarray:
        """(h, w) lesion probabilities of the picture."""
        logits = self.session.run(None, {"image": segmenter_input(img, self.spec.size)[None]})[0]
        return sigmoid(logits[0, 0].astype(np.float64))

    def _box(self, prob: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        found = lesion_box(prob, self.spec.threshold)
        return None if found is None else crop_box(found, *size, self.spec.margin)

    def box(self, img: Image.Image) -> tuple[int, int, int, int] | None:
        """The pixel crop for the picture, or None when the segmenter finds no lesion."""
        return self._box(self.probs(img), img.size)

    def frame(self, img: Image.Image) -> tuple[Image.Image, np.ndarray]:
        """The lesion-centred picture (the picture itself when no lesion is found) and the map's
        :func:`~melanoma.lesion_crop.lesion_evidence`, from one run of the segmenter."""
        prob = self.probs(img)
        box = self._box(prob, img.size)
        framed = img if box is None or box == (0, 0, *img.size) else img.crop(box)
        return framed, lesion_evidence(prob, self.spec.threshold)

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.frame(img)[0]


def load_cropper(model_dir: Path, cfg) -> LesionCropper | None:
    """The cropper a model folder's config asks for (its ``segmenter.onnx`` checksum verified), or None."""
    if not cfg.lesion_crop:
        return None
    if not (model_dir / SEGMENTER_FILE).is_file():
        raise ModelError(f"{model_dir}: config.json asks for a lesion crop but {SEGMENTER_FILE} is missing")
    verify_checksums(model_dir, (SEGMENTER_FILE,))
    try:
        return LesionCropper(model_dir / SEGMENTER_FILE, CropSpec.from_dict(cfg.lesion_crop))
    except (TypeError, ValueError) as e:
        raise ModelError(f"{model_dir}/config.json: invalid lesion_crop: {e}") from e
