"""Every kind of input a user may throw at the tool: accepted and converted, or refused with a reason."""

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melanoma.imaging import MAX_PIXELS, ImageError, open_rgb

from conftest import textured_lesion


@pytest.fixture
def lesion() -> Image.Image:
    return textured_lesion(np.random.default_rng(0), size=96)


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif"),
                                      ("WEBP", "webp"), ("GIF", "gif")])
def test_formats(tmp_path: Path, lesion, fmt, ext):
    p = tmp_path / f"x.{ext}"
    lesion.save(p, fmt)
    im = open_rgb(p)
    assert im.mode == "RGB" and im.size == (96, 96)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I"])
def test_modes_become_rgb(tmp_path: Path, lesion, mode):
    if mode == "I;16":
        src = Image.fromarray(np.asarray(lesion.convert("L"), np.uint16) * 257)
        assert src.mode == "I;16"
    else:
        src = lesion.convert(mode)
    p = tmp_path / ("x.tif" if mode in ("CMYK", "I") else "x.png")
    src.save(p)
    im = open_rgb(p)
    assert im.mode == "RGB" and im.size == (96, 96)
    grey = np.asarray(im.convert("L"), float)
    assert 30 < grey.mean() < 230  # not blown out to white or black (16-bit scaled, not clipped)


def test_transparency_is_flattened_on_white(tmp_path: Path):
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    rgba.save(tmp_path / "a.png")
    a = np.asarray(open_rgb(tmp_path / "a.png"))
    assert tuple(a[10, 10]) == (0, 0, 255) and tuple(a[10, 50]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path):
    img = Image.new("RGB", (80, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif)
    assert open_rgb(tmp_path / "o.jpg").size == (40, 80)


def test_animated_gif_first_frame(tmp_path: Path):
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    r, g, b = np.asarray(open_rgb(tmp_path / "a.gif")).mean(axis=(0, 1))
    assert r > 200 and b < 50


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that announces w x h pixels but carries almost no data: a decompression-bomb stand-in."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


BAD = {
    "empty.jpg": (lambda img: b"", "empty file"),
    "truncated.jpg": (lambda img: jpeg_bytes(img)[:300], "truncated or corrupt"),
    "text.jpg": (lambda img: b"hello, this is text\n" * 20, "not an image"),
    "doc.pdf": (lambda img: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "not an image"),
    "page.html": (lambda img: b"<!doctype html><html><body>hi</body></html>", "not an image"),
    "bomb.png": (lambda img: png_header_only(20000, 20000), "too large"),
    "tiny.png": (lambda img: (lambda b: (img.resize((16, 16)).save(b, "PNG"), b.getvalue())[1])(io.BytesIO()),
                 "too small"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_are_refused_with_a_reason(tmp_path: Path, lesion, name):
    make, reason = BAD[name]
    p = tmp_path / name
    p.write_bytes(make(lesion))
    with pytest.raises(ImageError, match=reason):
        open_rgb(p)


def test_bomb_is_refused_before_decoding(tmp_path: Path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(30000, 30000))  # 900 Mpx announced, no pixel data at all
    with pytest.raises(ImageError, match="too large"):
        open_rgb(p)
    assert 30000 * 30000 > MAX_PIXELS


def test_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(ImageError, match="no such file"):
        open_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        open_rgb(tmp_path)


def test_cap_shorter_side_keeps_the_aspect_ratio_and_never_enlarges():
    from melanoma.imaging import cap_shorter_side

    photo = Image.new("RGB", (600, 450))
    assert cap_shorter_side(photo, 150).size == (200, 150)  # HAM10000's 600 x 450 -> 200 x 150
    assert cap_shorter_side(Image.new("RGB", (450, 600)), 150).size == (150, 200)  # portrait too
    small = Image.new("RGB", (120, 90))
    assert cap_shorter_side(small, 150) is small and cap_shorter_side(photo, None) is photo
    rng = np.random.default_rng(0)
    sharp = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    back = np.asarray(cap_shorter_side(sharp, 112).resize((224, 224), Image.BILINEAR), float)
    assert back.std() < 0.8 * np.asarray(sharp, float).std()  # detail finer than 112 px is gone
