"""A reproducible set of images that are *not* dermoscopic lesions, to measure the "cannot assess"
gate: scikit-image's bundled sample photos (people, animals, objects, text, microscopy, a retina) and their
crops, plus synthetic graphics (charts, text screenshots, blank and single-colour images, gradients,
noise, shapes, cartoon landscapes)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

SKIMAGE_NAMES = ("astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "horse", "moon", "page", "text",
                 "clock", "coins", "grass", "gravel", "brick", "colorwheel", "logo", "hubble_deep_field",
                 "immunohistochemistry", "retina", "cell", "checkerboard", "microaneurysms")  # all ship with skimage


def _photos() -> Iterator[tuple[str, Image.Image]]:
    from skimage import data

    for name in SKIMAGE_NAMES:
        a = getattr(data, name)()
        a = np.asarray(a, dtype=np.float64) if np.asarray(a).dtype != np.uint8 else np.asarray(a)
        if a.dtype != np.uint8:
            a = (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-6)).astype(np.uint8)
        yield name, Image.fromarray(a).convert("RGB")


def _chart(rng: np.random.Generator, kind: str) -> Image.Image:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.arange(12)
    y = rng.normal(0, 1, 12).cumsum()
    {"line": lambda: ax.plot(x, y), "bar": lambda: ax.bar(x, np.abs(y)),
     "scatter": lambda: ax.scatter(rng.random(50), rng.random(50)),
     "pie": lambda: ax.pie(np.abs(y[:5]) + 0.1)}[kind]()
    ax.set_title(f"{kind} chart")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _text_screenshot(rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (400, 300), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(img)
    words = "the quick brown fox jumps over the lazy dog lorem ipsum dolor sit amet".split()
    for line in range(14):
        draw.text((10, 8 + 20 * line), " ".join(rng.choice(words, 8)), fill=(20, 20, 20))
    return img


def _landscape(rng: np.random.Generator) -> Image.Image:
    h = 240
    img = Image.new("RGB", (320, h))
    draw = ImageDraw.Draw(img)
    horizon = int(rng.integers(90, 160))
    sky, ground = rng.integers(120, 230, 3), rng.integers(30, 140, 3)
    for yy in range(h):
        c = sky * (1 - yy / h * 0.5) if yy < horizon else ground * (0.7 + 0.3 * yy / h)
        draw.line([(0, yy), (320, yy)], fill=tuple(int(v) for v in c))
    for _ in range(4):  # mountains
        cx = int(rng.integers(0, 320))
        draw.polygon([(cx - 80, horizon), (cx, horizon - int(rng.integers(30, 80))), (cx + 80, horizon)],
                     fill=tuple(int(v) for v in rng.integers(60, 120, 3)))
    draw.ellipse([250, 20, 290, 60], fill=(250, 230, 120))
    return img


def _synthetic(rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    for kind in ("line", "bar", "scatter", "pie"):
        for k in range(3):
            yield f"chart_{kind}_{k}", _chart(rng, kind)
    for k in range(8):
        yield f"text_screenshot_{k}", _text_screenshot(rng)
    for k in range(8):
        yield f"blank_{k}", Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(0, 256, 3)))
    for k in range(6):
        a = np.linspace(0, 255, 256)[None, :, None] * rng.random(3)[None, None, :]
        yield f"gradient_{k}", Image.fromarray(np.repeat(a, 256, axis=0).astype(np.uint8))
    for k in range(6):
        yield f"noise_{k}", Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    for k in range(8):
        img = Image.new("RGB", (256, 256), "white")
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            box = sorted(rng.integers(0, 256, 2).tolist()), sorted(rng.integers(0, 256, 2).tolist())
            draw.rectangle([box[0][0], box[1][0], box[0][1], box[1][1]],
                           fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        yield f"shapes_{k}", img
    for k in range(8):
        yield f"landscape_{k}", _landscape(rng)


def nonlesion_images(seed: int = 0, crops_per_photo: int = 3) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB image) pairs; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    for name, img in _photos():
        yield name, img
        w, h = img.size
        for k in range(crops_per_photo):
            s = int(min(w, h) * rng.uniform(0.4, 0.7))
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            yield f"{name}_crop{k}", img.crop((x, y, x + s, y + s))
    yield from _synthetic(rng)
