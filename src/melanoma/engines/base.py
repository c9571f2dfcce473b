"""What both inference engines share: the input pixels, the decision (gate, calibrated probability, output row)
and Grad-CAM's rendering. Torch-free.

An engine is a :class:`BasePredictor` subclass that sets ``cfg`` and ``ood`` and implements ``run`` (samples ->
per sample ``{"logit", "ood_score", "flat", "features", "refusal", "lesion_evidence"}``, or None when unreadable),
with an explainer, a :class:`BaseExplainer` subclass that implements ``explain`` (RGB image -> run result and heatmap):
:mod:`melanoma.engines.onnx_engine` (ONNX Runtime) and :mod:`melanoma.nn.torch_engine` (PyTorch).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ..calibrate import log_odds, sigmoid
from ..config import ModelConfig, ModelError, atomic_write_bytes
from ..diagnoses import IS_CANCER, calibrated, differential, p_cancer
from ..framing import DEFAULT as UNEXPLAINED
from ..framing import REASONS, reason
from ..imaging import Sample, cap_shorter_side, open_rgb, shades_of_grey_levels
from ..inputs import row as output_row
from ..inputs import unreadable_reason
from ..ood import OODDetector, is_flat

# Big JPEGs decode at a power-of-two reduction (libjpeg's DCT scaling: several times faster), but only down
# to twice the model's input, not to the input itself: decoding straight to the input size moves p(malignant)
# measurably from a full decode and flips labels, stopping at twice the input almost never does, for a few ms
# more per image (benchmarks/large_images.py, docs/results.md). Images under twice the input decode in full.
DRAFT_FACTOR = 2


CROP_DRAFT_FACTOR = 4  # a model that crops to the lesion: a lesion a quarter of the frame keeps its pixels


def draft_size(cfg: ModelConfig) -> int:
    """The smallest side, in pixels, a JPEG may be decoded at for this model (``open_rgb``'s draft_size)."""
    return DRAFT_FACTOR * cfg.img_size * (CROP_DRAFT_FACTOR if cfg.lesion_crop else 1)


def preprocess(img: Image.Image, cfg: ModelConfig) -> np.ndarray:
    """RGB PIL image -> (3, S, S) float32, normalised; the same pixels as the eval transform of
    :func:`melanoma.nn.data.build_transform` (downscale, PIL bilinear resize, colour constancy, scale, normalise)."""
    img = cap_shorter_side(img, cfg.downscale_to)
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


def input_rgb(x: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """A model input (3, S, S), normalised, back to (S, S, 3) RGB on a 0-255 scale (as colour constancy left it)."""
    return (np.moveaxis(x, 0, -1) * np.asarray(cfg.std, np.float32) + np.asarray(cfg.mean, np.float32)) * 255


# What a label means to the person reading it: one threshold, two plain answers.
VERDICTS = {"malignant": "see a dermatologist", "benign": "looks benign"}


def cam_weights(weight: np.ndarray) -> np.ndarray:
    """The classifier direction a heatmap shows, from the head's (outputs, D) weights: the malignancy logit's, or for
    seven diagnoses the mean of the cancers' weights minus the mean of the benign ones' (linear, so Grad-CAM's map
    of it is that of "cancer rather than benign")."""
    if weight.shape[0] == 1:
        return weight[0]
    return weight[IS_CANCER].mean(0) - weight[~IS_CANCER].mean(0)


def dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a (N, C, H, W) batch, for test-time augmentation."""
    rots = [np.rot90(x, k, axes=(2, 3)) for k in range(4)]
    return [np.ascontiguousarray(r) for r in rots + [r[..., ::-1] for r in rots]]


class Framer(Protocol):
    """What frames a picture for a model (:class:`melanoma.engines.onnx_engine.LesionCropper`)."""

    def frame(self, img: Image.Image) -> tuple[Image.Image, np.ndarray]: ...


class BasePredictor:
    """Shared by both engines. A subclass sets ``cfg`` and ``ood`` and implements :meth:`run`:
    samples (anything with a ``.path``) -> per sample ``{"logit", "ood_score", "flat", "features", "refusal",
    "lesion_evidence"}`` or None when the image is unreadable."""

    cfg: ModelConfig
    ood: OODDetector | None
    cropper: Framer | None = None  # lesion-centred framing (onnx_engine.LesionCropper)
    prior_shift: float = 0.0  # log-odds added to every calibrated logit (see with_prevalence)

    def frame(self, img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
        """The picture as this model looks at it: cropped around the lesion when the folder says so
        (:mod:`melanoma.lesion_crop`), else as it is; and the segmenter's evidence of a lesion
        (:func:`~melanoma.lesion_crop.lesion_evidence`; None without a segmenter). Every engine frames a decoded
        picture before its pixels."""
        return (img, None) if self.cropper is None else self.cropper.frame(img)

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
        """Calibrated p(malignant) = sigmoid(logit / temperature [+ prior shift]); array in, array out. A seven-class
        model's: p(skin cancer), the sum of :meth:`diagnosis_probs` over the cancers."""
        if self.cfg.diagnoses:
            return p_cancer(self.diagnosis_probs(logits))
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.cfg.temperature + self.prior_shift)

    def diagnosis_probs(self, logits, equal_priors: bool = False) -> np.ndarray:
        """A seven-class model's calibrated probabilities, (..., 7) from logits (..., 7); the prior shift moves the
        cancers' share. ``equal_priors``: before the calibration's bias and any shift, every diagnosis at equal
        priors (what the logit-adjusted network scores)."""
        if equal_priors:
            return calibrated(logits, self.cfg.temperature, np.zeros(len(self.cfg.diagnoses)))
        bias = self.cfg.class_bias or (0.0,) * len(self.cfg.diagnoses)
        return calibrated(logits, self.cfg.temperature, bias, self.prior_shift)

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
        row = output_row(path)
        if r is None:
            row.update(status="error", error=unreadable_reason(path) if path.exists() else "no such file")
        elif self.is_out_of_distribution(r):
            why = ("blank or single-colour image" if r["flat"] else
                   REASONS.get(r.get("refusal"), UNEXPLAINED))
            row.update(status="out_of_distribution", ood_score=r["ood_score"], error=f"cannot assess: {why}")
        else:
            prob = float(self.proba_from_logits(r["logit"]))
            label = self.label(prob)
            row.update(p_malignant=round(prob, 6), label=label, verdict=VERDICTS[label], p_melanoma=round(prob, 6),
                       ood_score=None if r["ood_score"] is None else round(r["ood_score"], 4))
            if self.cfg.diagnoses:  # p_malignant is p(skin cancer); melanoma and the differential beside it
                probs = self.diagnosis_probs(r["logit"])
                row.update(p_melanoma=round(float(probs[self.cfg.diagnoses.index("mel")]), 6),
                           p_skin_cancer=round(prob, 6), diagnoses=differential(probs))
        return row

    def results_from_outputs(self, x: np.ndarray, logits: np.ndarray, feats: np.ndarray | None,
                             evidence: np.ndarray | None = None) -> list[dict]:
        """:meth:`run` results for a batch ``x`` (N, 3, S, S) and its network outputs; ``evidence`` (N, E): a cropping
        model's segmenter's (:meth:`frame`), kept in each result as ``lesion_evidence``."""
        flat = is_flat(x, self.cfg.mean, self.cfg.std)
        scores = self.ood.score(feats) if self.ood is not None and feats is not None else [None] * len(x)
        results = [{"logit": np.array(logits[k], np.float64) if np.ndim(logits) == 2 else float(logits[k]),
                    "flat": bool(flat[k]),
                    "ood_score": None if scores[k] is None else float(scores[k]),
                    "features": None if feats is None else feats[k], "refusal": None,
                    "lesion_evidence": None if evidence is None else np.asarray(evidence[k])} for k in range(len(x))]
        for k, r in enumerate(results):  # a refused picture: why, in words a user can act on (framing.REASONS)
            if not r["flat"] and self.is_out_of_distribution(r):
                nothing_found = evidence is not None and evidence[k][0] == 0  # the segmenter's map has no region
                r["refusal"] = "no_lesion" if nothing_found else reason(input_rgb(x[k], self.cfg))
        return results


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

    def explain(self, img: Image.Image, evidence: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
        """RGB image, already framed (``evidence``: the framing's, :meth:`BasePredictor.frame`) -> the predictor's
        run result for it and its (S, S) heatmap in [0, 1]."""
        raise NotImplementedError

    def framed(self, img: Image.Image) -> tuple[Image.Image, dict, np.ndarray]:
        """The picture as the model frames it (:meth:`BasePredictor.frame`), its run result and heatmap: the
        overlay is drawn on the framed picture, the one the heatmap is of."""
        img, evidence = self.predictor.frame(img)
        return img, *self.explain(img, evidence)

    def heatmap(self, img: Image.Image) -> np.ndarray:
        return self.framed(img)[2]

    def assess(self, img: Image.Image, path: Path) -> tuple[dict, Image.Image | None]:
        """The predict row and the overlay, from one forward pass. Overlay is None unless assessed."""
        img, result, heat = self.framed(img)
        row = self.predictor.decide(result, path)
        return row, (overlay(img, heat) if row["status"] == "ok" else None)

    def overlay(self, img: Image.Image) -> Image.Image:
        img, _, heat = self.framed(img)
        return overlay(img, heat)

    def explain_file(self, path: Path, out_dir: Path) -> Path:
        """Write ``<out_dir>/<stem>_gradcam.png``: the image and its Grad-CAM overlay side by side, titled with
        p(malignant) and the label (or why it cannot be assessed), with the heatmap's colour bar. Raises
        ImageError for unusable images."""
        img, result, heat = self.framed(open_rgb(path, draft_size=draft_size(self.predictor.cfg)))
        row = self.predictor.decide(result, Path(path))
        out = Path(out_dir) / f"{Path(path).stem}_gradcam.png"
        atomic_write_bytes(out, explanation_figure(img, heat if row["status"] == "ok" else None, row,
                                                   self.predictor.threshold))
        return out


def explanation_figure(img: Image.Image, heat: np.ndarray | None, row: dict, threshold: float) -> bytes:
    """PNG bytes: the photo beside its overlay (or beside the reason it was not assessed) and a colour bar."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(7.4, 3.6), dpi=100)
    left, right = fig.add_axes((0.01, 0.04, 0.43, 0.8)), fig.add_axes((0.46, 0.04, 0.43, 0.8))
    s = heat.shape[0] if heat is not None else 224
    left.imshow(img.resize((s, s), Image.Resampling.BILINEAR))
    left.set_title("image", fontsize=9)
    if heat is not None:
        right.imshow(overlay(img, heat))
        right.set_title("Grad-CAM of the verdict's score", fontsize=9)
        bar = fig.colorbar(ScalarMappable(cmap="jet"), cax=fig.add_axes((0.91, 0.08, 0.02, 0.72)))
        bar.set_ticks([0, 1], labels=["low", "high"])
        name = "p(skin cancer)" if row["p_skin_cancer"] is not None else "p(melanoma)"
        title = f"{name} = {row['p_malignant']:.3f}: {row['verdict']} (threshold {threshold:.3f})"
    else:
        right.text(0.5, 0.5, row.get("error") or row["status"], ha="center", va="center", wrap=True, fontsize=9)
        title = "cannot assess" if row["status"] == "out_of_distribution" else row["status"]
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{Path(row['path']).name} - {title}", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
