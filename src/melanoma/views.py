"""Site-shift views: what other clinics do to a dermoscopic picture (zoom out, a grid or ruler beside the lesion,
a film scan, glare, bubbles, hair, a round field, rotation, JPEG, blur, a large photo), each a function of a PIL
image and a numpy random generator.

Three users: the stress suite (``benchmarks/stress.py``: :func:`transform`, deterministic, a family, an image's
index and a seed fix every pixel), training augmentation (``AugConfig.site_views``: ``data.RandomSiteView``) and the
gate's fit (``TrainConfig.gate_views``: :func:`melanoma.ood.gate_views`).

Hand-written with PIL and numpy: torchvision's transforms need torch (the stress harness and the gate's views are
torch-free, as the ONNX core they measure), and none of them draws a measurement grid, a ruler, hair or
immersion-fluid bubbles.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FAMILIES = ("zoom_out", "grid", "ruler", "film", "glare", "bubbles", "hair", "field", "rotation", "jpeg", "blur",
            "large")
ZOOM_OUT_FRACTION = (0.15, 0.35)  # the lesion image's width as a share of the new frame's
LARGE_SIDE = 3200  # px: the longer side of a "large photo"


def rng_for(family: str, index: int, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, FAMILIES.index(family), index])


def _skin_around(img: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Plausible surrounding skin: the colour of the image's outer ring, with a soft, uneven tone and fine grain
    (not a flat colour, which no camera sees)."""
    a = np.asarray(img, np.float32)
    ring = np.concatenate([a[:4].reshape(-1, 3), a[-4:].reshape(-1, 3), a[:, :4].reshape(-1, 3),
                           a[:, -4:].reshape(-1, 3)])
    tone = np.median(ring, 0)
    w, h = size
    coarse = rng.normal(0, 1, (max(2, h // 64), max(2, w // 64), 1)).astype(np.float32)
    low = Image.fromarray(((coarse[..., 0] + 3) * 40).clip(0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    low = np.asarray(low.filter(ImageFilter.GaussianBlur(w / 40)), np.float32)[..., None] / 40 - 3  # smooth, ~N(0, 1)
    skin = tone * (1 + 0.05 * low) + rng.normal(0, 3.0, (h, w, 1))
    return Image.fromarray(skin.clip(0, 255).astype(np.uint8))


def zoom_out(img: Image.Image, rng: np.random.Generator, max_side: int | None = None) -> Image.Image:
    """The picture shrunk to 15-35% of a wider frame's width, inside skin, its edges feathered into it.
    ``max_side``: the frame's longer side at most this (the picture shrunk first), for training and the gate's
    fit, which resize to the model's input anyway; the stress suite keeps the full-size frame."""
    return zoom_out_placed(img, rng, max_side)[0]


def zoom_out_placed(img: Image.Image, rng: np.random.Generator,
                    max_side: int | None = None) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """:func:`zoom_out` and where the picture went in the new frame, (left, top, width, height): a lesion mask
    follows the picture through it (the segmenter's training, :mod:`melanoma.nn.segment`)."""
    frac = rng.uniform(*ZOOM_OUT_FRACTION)
    if max_side is not None and max(img.size) / frac > max_side:
        scale = max_side * frac / max(img.size)
        img = img.resize((max(8, round(img.size[0] * scale)), max(8, round(img.size[1] * scale))), Image.BILINEAR)
    w, h = img.size
    canvas = (int(round(w / frac)), int(round(h / frac)))
    if max_side is not None:  # rounding may add a pixel
        canvas = (min(canvas[0], max(max_side, w)), min(canvas[1], max(max_side, h)))
    out = _skin_around(img, canvas, rng)
    x = int(rng.uniform(0.3, 0.7) * (canvas[0] - w))
    y = int(rng.uniform(0.3, 0.7) * (canvas[1] - h))
    yy, xx = np.mgrid[0:h, 0:w]
    edge = np.minimum.reduce([xx, yy, w - 1 - xx, h - 1 - yy]) / (0.2 * min(w, h))
    mask = Image.fromarray((255 * np.clip(edge, 0, 1)).astype(np.uint8))
    out.paste(img, (x, y), mask)
    return out, (x, y, w, h)


def grid(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A printed millimetre grid over a band beside the lesion: fine lines, a heavier one every fifth."""
    out = img.copy()
    draw = ImageDraw.Draw(out, "RGBA")
    w, h = img.size
    step = max(4, int(w * rng.uniform(0.025, 0.04)))
    band = int(w * rng.uniform(0.25, 0.4))
    x0 = 0 if rng.random() < 0.5 else w - band
    ink = (20, 20, 60, int(rng.uniform(140, 220)))
    for k, x in enumerate(range(x0, x0 + band, step)):
        draw.line([(x, 0), (x, h)], fill=ink, width=2 if k % 5 == 0 else 1)
    for k, y in enumerate(range(0, h, step)):
        draw.line([(x0, y), (x0 + band, y)], fill=ink, width=2 if k % 5 == 0 else 1)
    return out


def ruler(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A pale ruler along one edge with ticks and numbers."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = img.size
    depth = int(h * rng.uniform(0.1, 0.16))
    top = rng.random() < 0.5
    y0 = 0 if top else h - depth
    draw.rectangle([0, y0, w, y0 + depth], fill=tuple(int(v) for v in rng.uniform(215, 250, 3)))
    step = max(3, int(w * rng.uniform(0.02, 0.035)))
    for k, x in enumerate(range(step, w, step)):
        length = depth * (0.6 if k % 10 == 9 else 0.4 if k % 5 == 4 else 0.25)
        base = y0 if top else y0 + depth
        draw.line([(x, base), (x, base + (length if top else -length))], fill=(30, 30, 30), width=1)
        if k % 10 == 9:
            draw.text((x + 2, y0 + depth * 0.45), str((k + 1) // 10), fill=(30, 30, 30))
    return out


def film(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A scanned-film look: a warm cast, lower contrast, grain and a little softness."""
    a = np.asarray(img, np.float32)
    a = a * np.array([1 + rng.uniform(0.05, 0.12), 1.0, 1 - rng.uniform(0.08, 0.18)])
    contrast = rng.uniform(0.7, 0.85)
    a = a.mean((0, 1)) + contrast * (a - a.mean((0, 1))) + rng.normal(0, rng.uniform(5, 9), a.shape[:2])[..., None]
    out = Image.fromarray(a.clip(0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(0.004 * max(img.size) * rng.uniform(0.8, 1.5)))


def glare(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Specular highlights: a few bright, soft ellipses."""
    a = np.asarray(img, np.float32)
    h, w = a.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    light = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        rx, ry = rng.uniform(0.02, 0.08) * w, rng.uniform(0.01, 0.04) * h
        light = np.maximum(light, np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)))
    return Image.fromarray((a + (255 - a) * light[..., None] * 0.95).clip(0, 255).astype(np.uint8))


def bubbles(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Immersion-fluid bubbles: circles with a bright rim and a faint highlight."""
    out = img.copy()
    draw = ImageDraw.Draw(out, "RGBA")
    w, h = img.size
    for _ in range(int(rng.integers(4, 12))):
        r = rng.uniform(0.015, 0.06) * w
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 255, 255, 200), width=max(1, int(r / 6)))
        draw.ellipse([cx - r / 2, cy - r / 1.5, cx - r / 5, cy - r / 3], fill=(255, 255, 255, 160))
    return out


def hair(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Dark hairs: gently curved strokes across the picture."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = img.size
    for _ in range(int(rng.integers(5, 16))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle, points = rng.uniform(0, 2 * np.pi), []
        for _ in range(12):
            points.append((x, y))
            angle += rng.normal(0, 0.15)
            x, y = x + np.cos(angle) * w / 20, y + np.sin(angle) * h / 20
        shade = int(rng.uniform(10, 60))
        width = max(1, int(w * rng.uniform(0.003, 0.008)))
        draw.line(points, fill=(shade, int(shade * 0.8), int(shade * 0.6)), width=width)
    return out


def field(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A round dermatoscope field: everything outside a circle near-black."""
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w]
    r = rng.uniform(0.85, 1.1) * min(w, h) / 2
    d = np.hypot(xx - w / 2 + rng.normal(0, 0.03 * w), yy - h / 2 + rng.normal(0, 0.03 * h))
    mask = np.clip((r - d) / (0.03 * min(w, h)), 0, 1)[..., None]
    return Image.fromarray((np.asarray(img, np.float32) * mask + 8 * (1 - mask)).astype(np.uint8))


def rotation(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotated by 15-345 degrees, the exposed corners filled by reflection."""
    w, h = img.size
    pad = max(w, h) // 2
    big = Image.fromarray(np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
    big = big.rotate(rng.uniform(15, 345), resample=Image.BILINEAR)
    return big.crop((pad, pad, pad + w, pad + h))


def jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Saved again as a JPEG at quality 25-50."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(25, 51)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Out of focus: a Gaussian blur of 0.6-1.2% of the image's width."""
    return img.filter(ImageFilter.GaussianBlur(max(1.0, img.size[0] * rng.uniform(0.006, 0.012))))


def large(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The picture as a modern dermatoscope camera stores it: its longer side LARGE_SIDE px."""
    scale = LARGE_SIDE / max(img.size)
    return img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BICUBIC)


def check_families(families) -> None:
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown site view(s) {unknown} (known: {', '.join(FAMILIES)})")


def view(img: Image.Image, family: str, rng: np.random.Generator, max_side: int | None = None) -> Image.Image:
    """``img`` (RGB) seen as ``family`` does, drawn from ``rng``; with ``max_side``, no side of the result longer
    than that (a zoom-out frame built small, a large photo not enlarged past it)."""
    check_families([family])
    img = img.convert("RGB")
    if family == "zoom_out":
        return zoom_out(img, rng, max_side)
    out = globals()[family](img, rng)
    if max_side is not None and max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.BILINEAR)
    return out


def transform(img: Image.Image, family: str, index: int, seed: int = 0) -> Image.Image:
    """``img`` (RGB) seen as ``family`` does, fixed by (family, index, seed): the stress suite's view."""
    check_families([family])
    return view(img, family, rng_for(family, index, seed))
