"""Pictures that are not a lesion, to teach the "cannot assess" gate what a lesion is (``TrainConfig.gate_negatives``;
:func:`melanoma.ood.fit_gate`): a distance gate learns only from lesions, so every kind of picture its fit admits
(zoomed out, gridded, blurred) widens what it lets through; negatives tell it which side of the boundary is not a
lesion.

Three kinds, and a fourth when a folder of pictures is given, in equal shares, each seeded:

- ``skin``: skin with no lesion on it, cut from the fit's own pictures beside their lesion (where a lesion mask is
  next to the picture, as HAM10000's ``masks/<id>_segmentation.png``; else from the plausible skin that
  :func:`melanoma.views.zoom_out` frames a lesion in, without the lesion);
- ``photos``: crops of the photographs and figures that installed Python packages ship (matplotlib's, scikit-learn's,
  gradio's...), except scikit-image's: those are the test suite's non-lesion set (:mod:`melanoma.bench.nonlesion`),
  which stays out of every fit;
- ``patterns``: smooth colour fields, gratings, printed pages and line plots, drawn here;
- ``pictures``: crops of the pictures in a folder given for the purpose (recipe ``gate_negative_pictures``), whose
  first-level subfolders are its sources (e.g. one per package of ``tools/nonlesion_pictures.sh``), each drawn
  equally often so that one large source does not make the kind.

Hand-written with PIL and numpy: no library generates such a set, and the gate's fit stays torch-free.
"""

from __future__ import annotations

import sysconfig
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .views import _skin_around

KINDS = ("skin", "photos", "patterns")
PICTURES = "pictures"  # the fourth kind, from a folder (picture_sources)
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
HELD_OUT_PACKAGES = ("skimage",)  # the test suite's non-lesion photos come from here
MIN_PHOTO_SIDE = 120  # px: smaller package images are icons
SIDE = 256  # px: the side of every negative (the model resizes to its input)


def mask_path(image_path: str | Path) -> Path:
    """Where a lesion mask would be: ``<root>/masks/<stem>_segmentation.png`` beside ``<root>/images/`` (HAM10000)."""
    p = Path(image_path)
    return p.parent.parent / "masks" / f"{p.stem}_segmentation.png"


def skin_beside_lesion(image: Image.Image, mask: Image.Image, rng: np.random.Generator) -> Image.Image | None:
    """A square of ``image`` that the (dilated) lesion ``mask`` does not touch, as large as a corner allows (at least
    a third of the shorter side); None when every corner touches the lesion."""
    w, h = image.size
    lesion = np.asarray(mask.convert("L").resize((w, h)).filter(ImageFilter.MaxFilter(9))) > 127
    for side in (int(0.5 * min(w, h)), int(0.4 * min(w, h)), int(min(w, h) / 3)):
        corners = [(0, 0), (w - side, 0), (0, h - side), (w - side, h - side)]
        free = [(x, y) for x, y in corners if not lesion[y: y + side, x: x + side].any()]
        if free:
            x, y = free[int(rng.integers(len(free)))]
            return image.crop((x, y, x + side, y + side)).resize((SIDE, SIDE), Image.BICUBIC)
    return None


@lru_cache(maxsize=1)
def package_photos() -> tuple[Path, ...]:
    """The PNG and JPEG pictures installed packages ship, at least MIN_PHOTO_SIDE px on each side, sorted; none
    from HELD_OUT_PACKAGES."""
    root = Path(sysconfig.get_paths()["purelib"])
    found = []
    for path in sorted(p for ext in ("png", "jpg", "jpeg") for p in root.rglob(f"*.{ext}")):
        if path.relative_to(root).parts[0] in HELD_OUT_PACKAGES:
            continue
        try:
            with Image.open(path) as im:
                if min(im.size) >= MIN_PHOTO_SIDE:
                    found.append(path)
        except (OSError, ValueError):
            continue
    return tuple(found)


def _is_picture(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return min(im.size) >= MIN_PHOTO_SIDE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


@lru_cache(maxsize=4)
def picture_sources(folder: str | Path) -> dict[str, tuple[Path, ...]]:
    """The pictures (PNG, JPEG, WebP, at least MIN_PHOTO_SIDE px on each side) under each first-level subfolder of
    ``folder``, sorted; subfolders with none are left out. A ValueError when there are none at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"no folder of non-lesion pictures at {folder}")
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = tuple(p for p in sorted(sub.rglob("*")) if p.suffix.lower() in PICTURE_EXTENSIONS and _is_picture(p))
        if files:
            out[sub.name] = files
    if not out:
        raise ValueError(f"{folder} has no subfolder with a picture of at least {MIN_PHOTO_SIDE} px")
    return out


def opaque(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """RGB, with any transparency laid over a random flat colour (a sprite's see-through pixels hold anything)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,))
        return Image.alpha_composite(ground, rgba).convert("RGB")
    return image.convert("RGB")


def photo_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random square crop (35-100% of the shorter side), maybe mirrored, its colour jittered a little."""
    image = opaque(image, rng)
    w, h = image.size
    s = int(min(w, h) * rng.uniform(0.35, 1.0))
    x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
    out = image.crop((x, y, x + s, y + s)).resize((SIDE, SIDE), Image.BICUBIC)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    a = np.asarray(out, np.float32) * rng.uniform(0.8, 1.2, 3) + rng.uniform(-20, 20)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def pattern(rng: np.random.Generator) -> Image.Image:
    """One drawn picture: a smooth colour field, a grating, a printed page or a line plot."""
    kind = int(rng.integers(4))
    if kind == 0:  # smooth colour field: noise at a few scales, each channel its own
        field = sum(np.asarray(Image.fromarray(rng.integers(0, 256, (g, g, 3), dtype=np.uint8)).resize(
            (SIDE, SIDE), Image.BICUBIC), np.float32) / 2 ** i for i, g in enumerate((3, 6, 12, 24)))
        return Image.fromarray((255 * (field - field.min()) / np.ptp(field)).astype(np.uint8))
    if kind == 1:  # a grating or plaid of two random colours
        yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
        wave = sum(np.sin(2 * np.pi * rng.uniform(2, 30) * (np.cos(t) * xx + np.sin(t) * yy))
                   for t in rng.uniform(0, np.pi, int(rng.integers(1, 3))))
        a, b = rng.integers(0, 256, (2, 3))
        mix = (wave - wave.min()) / max(float(np.ptp(wave)), 1e-6)
        return Image.fromarray((a * mix[..., None] + b * (1 - mix[..., None])).astype(np.uint8))
    img = Image.new("RGB", (SIDE, SIDE), tuple(int(v) for v in rng.integers(215, 256, 3)))
    draw = ImageDraw.Draw(img)
    if kind == 2:  # a printed page: a table's rules and rows of characters
        for row in range(int(rng.integers(6, 16))):
            y = 8 + row * 16
            draw.line([(4, y - 3), (SIDE - 4, y - 3)], fill=(120, 120, 120))
            text = "".join(chr(int(c)) for c in rng.integers(48, 123, int(rng.integers(10, 36))))
            draw.text((8, y), text, fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
        return img
    draw.line([(24, 8), (24, SIDE - 24), (SIDE - 8, SIDE - 24)], fill=(0, 0, 0), width=2)  # a line plot's axes
    for _ in range(int(rng.integers(1, 4))):
        ys = SIDE - 40 - np.cumsum(rng.normal(0, 12, 20)).clip(-100, 100) - 100
        draw.line(list(zip(np.linspace(30, SIDE - 12, 20), ys.clip(10, SIDE - 30), strict=True)),
                  fill=tuple(int(v) for v in rng.integers(0, 200, 3)), width=2)
    return img


def picture_crops(folder: str | Path, n: int, rng: np.random.Generator, name: str = PICTURES) -> list:
    """``n`` crops (:func:`photo_crop`) of the pictures in ``folder``, its subfolders in turn, a random picture of
    each (InMemory, label 0, path ``negative:<name>:<subfolder>:<i>``, source ``negative:<name>``)."""
    from .imaging import InMemory

    sources = picture_sources(folder)
    names = list(sources)
    out = []
    for i in range(n):
        sub = names[i % len(names)]
        with Image.open(sources[sub][int(rng.integers(len(sources[sub])))]) as im:
            out.append(InMemory(f"negative:{name}:{sub}:{i}", photo_crop(im, rng), 0, f"negative:{name}"))
    return out


def gate_negatives(samples, n: int, seed: int = 0, pictures: str | Path | None = None) -> list:
    """``n`` non-lesion pictures (InMemory, label 0, source ``negative:<kind>``, path ``negative:<kind>:...``),
    an equal share of each kind (with ``pictures``, a folder: a fourth kind, drawn last so that the other three
    are the same pictures with or without it when the shares are); the skin is cut from ``samples`` (the gate's
    fit images), in their order."""
    from .imaging import ImageError, InMemory, load_any

    rng = np.random.default_rng([seed, 7])
    kinds = KINDS + ((PICTURES,) if pictures is not None else ())
    per = {kind: n // len(kinds) + (i < n % len(kinds)) for i, kind in enumerate(kinds)}
    out = []
    for s in list(samples):
        if len(out) >= per["skin"]:  # only skin so far
            break
        try:
            image = load_any(s)
        except ImageError:
            continue
        mask = mask_path(s.path) if isinstance(s.path, (str, Path)) else None
        if mask is not None and mask.is_file():
            skin = skin_beside_lesion(image, Image.open(mask), rng)
        else:
            skin = _skin_around(image.convert("RGB"), (SIDE, SIDE), rng)
        if skin is not None:
            out.append(InMemory(f"negative:skin:{len(out)}", skin, 0, "negative:skin"))
    photos = package_photos()
    for i in range(per["photos"] if photos else 0):
        with Image.open(photos[i % len(photos)]) as im:
            out.append(InMemory(f"negative:photos:{i}", photo_crop(im, rng), 0, "negative:photos"))
    out += [InMemory(f"negative:patterns:{i}", pattern(rng), 0, "negative:patterns") for i in range(per["patterns"])]
    if pictures is not None:
        out += picture_crops(pictures, per[PICTURES], rng)
    return out
