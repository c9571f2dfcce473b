"""Opening any image a user throws at us: one function, one kind of error with a one-line reason.

Accepted: JPEG, PNG, BMP, TIFF, WebP, GIF (first frame); modes 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr,
I;16 and I (16/32-bit grey), with the EXIF orientation applied. Transparent pixels are composited
onto white, as a viewer would show them. Refused before full decoding: empty files, non-images, images
over MAX_PIXELS (decompression bombs) and images under MIN_SIDE pixels on a side.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 80_000_000  # about 9,000 x 9,000; larger is refused before its pixels are decoded
MIN_SIDE = 32  # pixels; smaller images hold too little of a lesion to judge
FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "MPO")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 = benign, 1 = malignant
    source: str = ""  # the dataset it came from (its folder's name), e.g. "ham10000"
    group: str = ""  # images of one lesion share it (HAM10000's lesion_id); "" when unknown
    dx: str = ""  # the diagnosis, where the data names one (datasets.DIAGNOSES); "" when unknown


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def find_images(root: Path) -> list[Path]:
    """Image files under ``root``, recursively and following symbolic links, sorted."""
    import os

    return sorted(p for d, _, names in os.walk(root, followlinks=True) for n in names
                  if is_image(p := Path(d) / n))


class ImageError(ValueError):
    """An input that is not a usable image; ``str(e)`` is a one-line reason for the user."""


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        # 16-bit files use 0-65535; 32-bit and float ones any range: their own maximum becomes 255
        scale = 255.0 / 65535.0 if im.mode.startswith("I;16") else 255.0 / a.max() if a.max() > 255 else 1.0
        return Image.fromarray(np.clip(a * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def open_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Decode ``path`` into an RGB image, or raise ImageError with the reason.

    ``draft_size`` lets the JPEG decoder scale down by powers of two while decoding (much faster for
    big photos) while keeping at least that many pixels on each side.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as e:
        raise ImageError(f"cannot read file: {e.strerror or e}") from None
    if path.is_dir():
        raise ImageError("is a folder, not an image")
    if size == 0:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below decides
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image too large (over {MAX_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"truncated or corrupt image ({e})") from None
    with im:
        if im.format not in FORMATS:
            raise ImageError(f"unsupported format {im.format}; use JPEG, PNG, BMP, TIFF, WebP or GIF")
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageError(f"image too large ({w}x{h} > {MAX_PIXELS:,} pixels)")
        if min(w, h) < MIN_SIDE:
            raise ImageError(f"image too small ({w}x{h}; at least {MIN_SIDE} px a side)")
        try:
            if draft_size and im.format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            im.seek(0)  # animated images: the first frame
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
        except (OSError, SyntaxError, ValueError, IndexError, EOFError) as e:
            raise ImageError(f"truncated or corrupt image ({e})") from None


Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class InMemory:
    """An image given as a PIL image or numpy array instead of a file; ``path`` names it in output rows."""

    path: str
    image: object  # PIL.Image.Image or numpy.ndarray
    label: int = 0
    source: str = ""
    group: str = ""


def to_rgb(image) -> Image.Image:
    """A PIL image or numpy array (H x W grey, H x W x 3 RGB or H x W x 4 RGBA; uint8, or float in [0, 1])
    as RGB, checked like a file (:func:`open_rgb`); raises ImageError with the reason."""
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
            raise ImageError(f"array of shape {a.shape} is not an image (H x W, H x W x 3 or H x W x 4)")
        if a.dtype != np.uint8:
            if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                raise ImageError(f"array of dtype {a.dtype}: give uint8 0-255 or floats in [0, 1]")
            a = np.round(a * 255).astype(np.uint8)
        image = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)
    if not isinstance(image, Image.Image):
        raise ImageError(f"not an image: {type(image).__name__} (give a path, a PIL image or a numpy array)")
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"image too large ({w}x{h} > {MAX_PIXELS:,} pixels)")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"image too small ({w}x{h}; at least {MIN_SIDE} px a side)")
    return _to_rgb(image)


def load_any(sample, draft_size: int | None = None) -> Image.Image:
    """The RGB image of a :class:`Sample` (a file) or an :class:`InMemory` image."""
    image = getattr(sample, "image", None)
    return open_rgb(sample.path, draft_size) if image is None else to_rgb(image)


def cap_shorter_side(img: Image.Image, px: int | None) -> Image.Image:
    """``img`` shrunk, aspect ratio kept, until its shorter side is ``px`` (PIL bilinear, antialiased); unchanged
    when ``px`` is None or the image is no larger. A model's ``downscale_to``: every image, from any source or
    clinic, reaches the square resize with no more detail than its coarsest training source was stored at (the
    external images' sharpness moved ROC-AUC: benchmarks/resolution.py, experiments/018-resolution)."""
    w, h = img.size
    if px is None or min(w, h) <= px:
        return img
    scale = px / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)


COLOR_CONSTANCY = (None, "shades_of_grey")


def shades_of_grey_levels(rgb: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Colour constancy (Finlayson & Trezzi 2004) as a lookup table: (H, W, 3) uint8 RGB -> (3, 256)
    float32, the corrected value (a whole number in 0..255) of each input level of each channel.

    The illuminant of each channel is the Minkowski p-norm mean of its pixels; each channel is rescaled
    so that the illuminant becomes neutral grey. Different dermatoscopes and clinics tint their images;
    removing the tint keeps a classifier from learning the camera.
    """
    # Hand-written: no maintained library ships this estimator. A uint8 image has only 256 levels per
    # channel, so histograms and lookup tables do per level what would otherwise be done per pixel:
    # several times faster than whole-array numpy, and this runs on every image of training and inference.
    levels = np.arange(256, dtype=np.float32)
    counts = np.stack([np.bincount(rgb[..., c].ravel(), minlength=256) for c in range(3)])  # (3, 256)
    powered = levels * levels * levels * levels * levels * levels if p == 6.0 else np.power(levels, p)
    illum = (counts @ powered.astype(np.float64) / (rgb.size // 3)) ** (1.0 / p)  # (3,)
    gain = np.linalg.norm(illum) / (np.sqrt(3.0) * np.maximum(illum, 1e-6))  # grey illuminant: gain 1
    return np.clip(levels[None] * gain.astype(np.float32)[:, None], 0, 255).round()


def shades_of_grey(img: Image.Image, p: float = 6.0) -> Image.Image:
    """Shades-of-grey colour constancy (:func:`shades_of_grey_levels`) of an RGB image: RGB uint8 in,
    RGB uint8 out, same size. Used in training; inference applies the same table (inference.preprocess),
    so training, PyTorch inference and the torch-free ONNX path see identical pixels."""
    table = shades_of_grey_levels(np.asarray(img), p).astype(np.uint8)
    return img.point(table.ravel().tolist())
