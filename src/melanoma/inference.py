"""Inference without PyTorch: image files -> decisions with ONNX Runtime, numpy and PIL only.

``melanoma predict`` and the app run on this path when the model folder holds ``model.onnx``: it starts
in a fraction of a second (importing torch alone takes longer) and runs faster on a CPU than PyTorch
eager. :class:`BasePredictor` holds what both engines share (the gate, the calibrated probability,
the decision row); :class:`melanoma.predict.Predictor` is the PyTorch engine, needed for Grad-CAM.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .calibrate import sigmoid
from .config import DEFAULT_MODEL_DIR, ModelConfig, ModelError, load_config
from .imaging import Sample, find_images, load_any, open_rgb, shades_of_grey_levels
from .ood import OODDetector, is_flat

ONNX_FILE = "model.onnx"
ENGINES = ("auto", "onnx", "torch")


def expand_paths(inputs: Iterable[str | Path], skipped: list[dict] | None = None) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted unique files.

    A name that matches nothing is kept, so that the caller reports it as an error row. Files inside a
    folder that are not images by their name (``notes.txt``, ``.DS_Store``) are not returned; with ``skipped``,
    a row for each (status ``skipped``, the reason in ``error``) is appended to it, so none goes unmentioned.
    """
    import os

    found: list[Path] = []
    for item in map(str, inputs):
        matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        for p in matches:
            if not p.is_dir():
                found.append(p)
                continue
            images = find_images(p)
            found += images
            if skipped is not None:
                wanted = set(images)
                others = sorted(f for d, _, names in os.walk(p, followlinks=True) for n in names
                                if (f := Path(d) / n) not in wanted)
                skipped += [skipped_row(f) for f in others]
    return list(dict.fromkeys(found))


def skipped_row(path: Path) -> dict:
    """The output row of a file in a folder that was not looked at, and why."""
    reason = "hidden file" if path.name.startswith(".") else f"not an image file ({path.suffix or 'no extension'})"
    return {"path": str(path), "status": "skipped", "p_malignant": None, "label": None, "error": reason,
            "ood_score": None}


def unreadable_reason(path: Path) -> str:
    """Why ``path`` cannot be used, in one line (re-opens it: only called for failures)."""
    try:
        open_rgb(path)
    except ValueError as e:  # ImageError carries the user-facing reason
        return str(e)
    return "unreadable image"


# Big JPEGs decode at a power-of-two reduction (libjpeg's DCT scaling: 4-6x faster at 2048-4096 px), but
# only down to twice the model's input, not to the input itself. On the 150 ISIC 2017 validation images
# upscaled to 1024-4096 px, decoding straight to >= 224 px moved p(malignant) by 0.017-0.021 on average
# from a full decode and flipped 1-8 labels; stopping at >= 448 px, by 0.000-0.011 and 0-5, for 3-4 ms
# more per image (benchmarks/large_images.py). Images under twice the input decode in full either way.
DRAFT_FACTOR = 2


def draft_size(cfg: ModelConfig) -> int:
    """The smallest side, in pixels, a JPEG may be decoded at for this model (``open_rgb``'s draft_size)."""
    return DRAFT_FACTOR * cfg.img_size


def preprocess(img: Image.Image, cfg: ModelConfig) -> np.ndarray:
    """RGB PIL image -> (3, S, S) float32, normalised; the same pixels as the eval transform of
    :func:`melanoma.data.build_transform` (PIL bilinear resize, colour constancy, scale, normalise)."""
    if img.size != (cfg.img_size, cfg.img_size):
        img = img.resize((cfg.img_size, cfg.img_size), Image.BILINEAR)
    rgb = np.asarray(img)
    if cfg.color_constancy == "shades_of_grey":
        levels = shades_of_grey_levels(rgb)
    else:
        levels = np.tile(np.arange(256, dtype=np.float32), (3, 1))
    # Colour constancy, scaling and normalisation are all per channel and per level: one (3, 256)
    # table, then one lookup per pixel (the arithmetic of the eval transform, applied to 256 values).
    table = (levels / 255.0 - np.asarray(cfg.mean, np.float32)[:, None]) / np.asarray(cfg.std, np.float32)[:, None]
    return np.stack([table[c][rgb[..., c]] for c in range(3)])


def dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a (N, C, H, W) batch, for test-time augmentation."""
    rots = [np.rot90(x, k, axes=(2, 3)) for k in range(4)]
    return [np.ascontiguousarray(r) for r in rots + [r[..., ::-1] for r in rots]]


def log_odds(p):
    """log(p / (1 - p)), p clipped away from 0 and 1; scalar or array."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def session_options(threads: int | None = None):
    """ONNX Runtime session options for CPU inference, as every ONNX graph of this package runs.

    Measured on 2 cores (README, "Speed"): real images drive some activations into denormal floats,
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


class BasePredictor:
    """Shared by both engines. A subclass sets ``cfg`` and ``ood`` and implements :meth:`run`:
    samples (anything with a ``.path``) -> per sample ``{"logit", "ood_score", "flat", "features"}``
    or None when the image is unreadable."""

    cfg: ModelConfig
    ood: OODDetector | None
    prior_shift: float = 0.0  # log-odds added to every calibrated logit (see with_prevalence)

    def run(self, samples: list, on_batch: Callable[[int], None] | None = None) -> list[dict | None]:
        raise NotImplementedError

    def with_prevalence(self, prevalence: float | None) -> BasePredictor:
        """Report probabilities for a population in which a fraction ``prevalence`` (0-1) of lesions is
        malignant, instead of the validation split's fraction they were calibrated on: the prior-shift
        correction logit + log odds(prevalence) - log odds(validation prevalence) (Saerens et al. 2002).
        Labels do not change: the decision threshold moves with the probabilities, and sensitivity and
        specificity do not depend on prevalence. ``None``: as calibrated. Returns self."""
        if prevalence is None:
            self.prior_shift = 0.0
            return self
        if not 0 < prevalence < 1:
            raise ValueError(f"prevalence must be a fraction between 0 and 1, exclusive (got {prevalence})")
        cal = self.cfg.training.get("calibration") or {}
        if not cal.get("val_n") or not 0 < cal.get("val_n_malignant", 0) < cal["val_n"]:
            raise ModelError("this model folder does not record the prevalence of its validation split "
                             "(training.calibration in config.json), so --prevalence cannot be applied")
        self.prior_shift = float(log_odds(prevalence) - log_odds(cal["val_n_malignant"] / cal["val_n"]))
        return self

    def proba_from_logits(self, logits):
        """Calibrated p(malignant) = sigmoid(logit / temperature [+ prior shift]); array in, array out."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.cfg.temperature + self.prior_shift)

    @property
    def threshold(self) -> float:
        """The decision threshold on this predictor's probabilities: the model's, moved by the prior shift."""
        if not self.prior_shift:
            return self.cfg.threshold
        return float(sigmoid(log_odds(self.cfg.threshold) + self.prior_shift))

    def is_out_of_distribution(self, r: dict) -> bool:
        return r["flat"] or (self.ood is not None and r["ood_score"] > self.ood.threshold)

    def features(self, samples: list) -> np.ndarray:
        """(N, D) gate features of the readable samples."""
        return np.stack([r["features"] for r in self.run(samples) if r is not None])

    def predict_logits(self, samples: list, on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """Raw logit per sample, in order; ``None`` where the image could not be read."""
        return [None if r is None else r["logit"] for r in self.run(samples, on_batch)]

    def predict_samples(self, samples: list, on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """Calibrated p(malignant) per sample, in order; ``None`` where the image could not be read."""
        return [None if z is None else float(self.proba_from_logits(z)) for z in self.predict_logits(samples, on_batch)]

    def label(self, p: float) -> str:
        return self.cfg.class_names[int(p >= self.threshold)]

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
            prob = float(self.proba_from_logits(r["logit"]))
            row.update(p_malignant=round(prob, 6), label=self.label(prob),
                       ood_score=None if r["ood_score"] is None else round(r["ood_score"], 4))
        return row

    def results_from_outputs(self, x: np.ndarray, logits: np.ndarray, feats: np.ndarray | None) -> list[dict]:
        """:meth:`run` results for a batch ``x`` (N, 3, S, S) and its network outputs."""
        flat = is_flat(x, self.cfg.mean, self.cfg.std)
        scores = self.ood.score(feats) if self.ood is not None and feats is not None else [None] * len(x)
        return [{"logit": float(logits[k]), "flat": bool(flat[k]),
                 "ood_score": None if scores[k] is None else float(scores[k]),
                 "features": None if feats is None else feats[k]} for k in range(len(x))]


class OnnxPredictor(BasePredictor):
    """A model folder's ``model.onnx`` under ONNX Runtime (CPU). Outputs of the graph: ``logit`` (N,)
    and, for EfficientNets, ``gate_features`` (N, D) for the "cannot assess" gate and ``cam`` for
    Grad-CAM (:mod:`melanoma.explain`).

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

    @property
    def has_cam(self) -> bool:
        """Whether the graph draws Grad-CAM maps (exports older than the ``cam`` output do not)."""
        return "cam" in self.outputs

    def forward(self, x: np.ndarray, cam: bool = False) -> tuple[np.ndarray, ...]:
        """(N, 3, S, S) float32 -> (N,) logits and (N, D) gate features (or None); with ``cam``, also
        the (N, h, w) class activation maps."""
        views = dihedral(x) if self.tta else [x]
        outs = [dict(zip(self.outputs, self.session.run(None, {"image": v}))) for v in views]
        logits = np.mean([o["logit"].reshape(len(x)) for o in outs], axis=0)
        feats = outs[0].get("gate_features")  # the gate (and the heatmap) judge the image as given
        return (logits, feats, outs[0]["cam"]) if cam else (logits, feats)

    def _load(self, sample) -> np.ndarray | None:
        try:
            return preprocess(load_any(sample, draft_size=draft_size(self.cfg)), self.cfg)
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


def load_predictor(model_dir: str | Path | None = None, engine: str = "auto", **kwargs) -> BasePredictor:
    """The predictor for a model folder. ``engine``: ``onnx``, ``torch``, or ``auto`` (ONNX Runtime when
    the folder holds model.onnx and onnxruntime is installed, else PyTorch)."""
    folder = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    if engine not in ENGINES:
        raise ValueError(f"engine must be auto, onnx or torch (got {engine!r})")
    if engine == "auto":
        import importlib.util

        has_ort = importlib.util.find_spec("onnxruntime") is not None
        engine = "onnx" if has_ort and (folder / ONNX_FILE).is_file() else "torch"
    if engine == "onnx":
        return OnnxPredictor(folder, **kwargs)
    from .predict import Predictor

    return Predictor(folder, **kwargs)
