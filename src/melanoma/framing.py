"""Why a picture was refused, in a sentence that says what to try: the lesion too small in the frame, a ruler or
grid in it, or out of focus. Two measures of the model's input pixels, compared with limits fitted on ordinary
lesion images (``benchmarks/framing.py``: each limit is the value only a small share of them cross):

- ``dark_share``: the share of pixels clearly darker than the skin (under 80% of the 90th-percentile grey level).
  A zoomed-out lesion is a speck in a frame of skin.
- ``sharpness``: the 99th percentile of the grey level's absolute Laplacian. Printed lines (a grid, a ruler's
  ticks) are sharper than anything in skin; a picture out of focus has no sharp edge at all.

Hand-written in numpy: two statistics of one small image, on the torch-free path, where scikit-image would be a
dependency for one filter. Only refused pictures are measured; the gate decides, this only explains.
"""

from __future__ import annotations

import numpy as np

# limits fitted by benchmarks/framing.py on the training sources' images through the bundled model's preprocessing
# (docs/results/framing.json holds the fit and what each sentence catches on the external set's stress views)
SMALL_DARK_SHARE = 0.021  # under this: too small
BLUR_SHARPNESS = 6.3  # under this: out of focus
MARKS_SHARPNESS = 46.0  # over this: printed lines
DEFAULT = "does not look like a dermoscopic lesion image"
REASONS = {
    "marks": "a ruler, grid or printed marks are in the picture: crop them out or take it without them",
    "small": "the lesion is too small in the picture: zoom in or crop to it",
    "blur": "the picture is out of focus: take it again in focus",
    # a cropping model's segmenter found no lesion anywhere in the picture (engines.base, lesion_crop.lesion_evidence)
    "no_lesion": "no skin lesion was found in the picture: photograph the lesion itself, close up",
}


def measure(rgb: np.ndarray) -> tuple[float, float]:
    """(H, W, 3) RGB on a 0-255 scale -> (dark_share, sharpness)."""
    grey = np.asarray(rgb, np.float32).mean(axis=2)
    dark_share = float((grey < 0.8 * np.percentile(grey, 90)).mean())
    lap = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    return dark_share, float(np.percentile(lap, 99))


def reason(rgb: np.ndarray, small: float = SMALL_DARK_SHARE, blur: float = BLUR_SHARPNESS,
           marks: float = MARKS_SHARPNESS) -> str | None:
    """The key in :data:`REASONS` that explains a refused picture, or None when none does. Printed lines are checked
    first (a grid beside a well-framed lesion), then size (a zoomed-out lesion is also soft), then focus."""
    dark_share, sharpness = measure(rgb)
    if sharpness > marks:
        return "marks"
    if dark_share < small:
        return "small"
    if sharpness < blur:
        return "blur"
    return None


def fit_limits(measures: np.ndarray, false_rate: float = 0.02) -> dict[str, float]:
    """Limits from (N, 2) measures of ordinary lesion pictures: each check fires on ``false_rate`` of them."""
    measures = np.asarray(measures, float)
    return {"small": float(np.quantile(measures[:, 0], false_rate)),
            "blur": float(np.quantile(measures[:, 1], false_rate)),
            "marks": float(np.quantile(measures[:, 1], 1 - false_rate))}
