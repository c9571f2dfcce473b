"""Lesion-centred framing: find the lesion with a small segmenter and crop the picture around it at a fixed margin,
so a lesion photographed zoomed out reaches the classifier framed as the training archives frame one.

The geometry lives here; :class:`melanoma.engines.onnx_engine.LesionCropper` runs a folder's segmenter (an ONNX
graph, under ONNX Runtime as the classifier's) and crops. A model folder that carries it holds ``segmenter.onnx``
(input ``image`` (N, 3, S, S), the whole picture resized and scaled as :func:`segmenter_input` does; output
``lesion_logits`` (N, 1, h, w), a coarse map) and a ``lesion_crop`` entry in its config (:class:`CropSpec`). The
segmenter is trained on HAM10000's lesion masks by :mod:`melanoma.nn.segment`; ``experiments/032-lesion-crop``
measured whether the crop helps.

Hand-written with numpy and scipy: a bounding box of the largest connected region of one small map; no library
turns a mask into a margin crop, and this path stays torch-free like the ONNX core it belongs to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SEGMENTER_FILE = "segmenter.onnx"
MEAN, STD = 0.5, 0.5  # the segmenter's input normalisation (EfficientNet-Lite's), per channel on [0, 1]


@dataclass(frozen=True)
class CropSpec:
    """How a model frames its input: the segmenter's input side ``size`` (px), the crop's ``margin`` on each side
    as a share of the lesion's longer side (the crop's side is (1 + 2 margin) times it), and the probability above
    which a map cell is lesion (``threshold``)."""

    size: int = 160
    margin: float = 0.25
    threshold: float = 0.5

    def __post_init__(self):
        if self.size < 32 or self.margin < 0 or not 0 < self.threshold < 1:
            raise ValueError(f"lesion_crop needs size >= 32, margin >= 0 and 0 < threshold < 1 (got {asdict(self)})")

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        unknown = set(d) - {"size", "margin", "threshold"}
        if unknown:
            raise ValueError(f"lesion_crop has unknown keys {sorted(unknown)}")
        return cls(**d)


def segmenter_spec(segmenter: str | Path, margin: float) -> CropSpec:
    """The crop a segmenter written by :func:`melanoma.nn.segment.train_segmenter` makes at ``margin``: its input
    size from the ``segmenter.json`` beside it."""
    import json

    record = Path(segmenter).with_name("segmenter.json")
    if not Path(segmenter).is_file() or not record.is_file():
        raise FileNotFoundError(f"{segmenter}: no segmenter (an ONNX file with segmenter.json beside it, written by "
                                "`melanoma segmenter`)")
    return CropSpec(size=json.loads(record.read_text())["settings"]["size"], margin=margin)


def segmenter_input(img: Image.Image, size: int) -> np.ndarray:
    """RGB picture -> (3, size, size) float32: the whole picture resized (bilinear), scaled and normalised."""
    rgb = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255
    return np.moveaxis((rgb - MEAN) / STD, -1, 0)


EVIDENCE = ("one_region", "region_mean", "peak", "regions")  # lesion_evidence's columns, in order
PEAK_CLIP = 8.0  # |log-odds| past which a map cell's peak says nothing more


def _regions(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The connected regions of cells at or above ``threshold`` (a label map, 1..n) and each one's summed
    probability."""
    from scipy import ndimage

    regions, n = ndimage.label(prob >= threshold)
    return regions, np.asarray(ndimage.sum(prob, regions, index=np.arange(1, n + 1)), np.float64).reshape(n)


def lesion_box(prob: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float, float] | None:
    """(h, w) lesion probabilities -> the largest connected lesion region's box (left, top, right, bottom) as
    fractions of the map's width and height; None when no cell reaches ``threshold``. Largest by summed
    probability: a hair or a ruler tick that lights a cell does not move the box."""
    regions, mass = _regions(prob, threshold)
    if not len(mass):
        return None
    ys, xs = np.nonzero(regions == 1 + int(np.argmax(mass)))
    h, w = prob.shape
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


def lesion_evidence(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(h, w) lesion probabilities -> how much the map looks like one lesion (:data:`EVIDENCE`, float32): the
    share of the map's probability in its largest region, the mean probability inside that region, the log-odds
    of the map's peak (clipped at :data:`PEAK_CLIP`) and log(1 + the number of regions). A lesion lights one
    confident blob; a photograph's dark patches light several weak ones, or none. A cropping model's results keep it
    (``lesion_evidence``) and a refusal with no region found says so; as an input of the gate it did not help
    (experiments/033-lesion-evidence: the map misses some zoomed-out lesions altogether)."""
    from scipy.special import logit

    regions, mass = _regions(prob, threshold)
    peak = float(np.clip(logit(prob.max()), -PEAK_CLIP, PEAK_CLIP))
    if not len(mass):
        return np.array([0.0, 0.0, peak, 0.0], np.float32)
    largest = regions == 1 + int(np.argmax(mass))
    return np.array([mass.max() / max(float(prob.sum()), 1e-12), prob[largest].mean(), peak, np.log1p(len(mass))],
                    np.float32)


def crop_box(box: tuple[float, float, float, float], width: int, height: int,
             margin: float) -> tuple[int, int, int, int]:
    """A lesion's box (fractions) -> the pixel crop (left, top, right, bottom): a square of (1 + 2 margin) times
    the lesion's longer side around its centre, moved inside the picture; an axis shorter than the square is kept
    whole (a well-framed lesion keeps its picture)."""
    left, top, right, bottom = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    side = (1 + 2 * margin) * max(right - left, bottom - top)
    out = []
    for lo, hi, extent in ((left, right, width), (top, bottom, height)):
        if side >= extent:
            out.append((0, extent))
            continue
        start = min(max((lo + hi) / 2 - side / 2, 0), extent - side)
        out.append((int(round(start)), int(round(start + side))))
    return out[0][0], out[1][0], out[0][1], out[1][1]
