"""The site-shift stress transforms (melanoma.views): deterministic, and each does what it claims."""

import numpy as np
import pytest
from PIL import Image

from melanoma.views import FAMILIES, LARGE_SIDE, ZOOM_OUT_FRACTION, transform, view

from conftest import SAMPLES


@pytest.fixture(scope="module")
def lesion() -> Image.Image:  # a real dermoscopic sample: texture for blur and JPEG to act on
    return Image.open(SAMPLES / "benign" / "test_benign_7076.jpg").convert("RGB").resize((96, 96))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_fixed_by_its_seed_and_changes_the_picture(lesion: Image.Image, family: str):
    a, b = transform(lesion, family, 3), transform(lesion, family, 3)
    assert np.array_equal(np.asarray(a), np.asarray(b))  # the same image index and seed: the same pixels
    assert a.mode == "RGB"
    if family not in ("large", "blur"):  # a fixed size; a radius drawn from a narrow range: other draws may agree
        assert not np.array_equal(np.asarray(a), np.asarray(transform(lesion, family, 4)))  # another image's draw
    assert a.size != lesion.size or not np.array_equal(np.asarray(a), np.asarray(lesion))


def test_zoom_out_puts_the_picture_in_a_wider_frame_of_uneven_skin(lesion: Image.Image):
    for i in range(5):
        out = transform(lesion, "zoom_out", i)
        assert ZOOM_OUT_FRACTION[0] - 0.01 <= lesion.size[0] / out.size[0] <= ZOOM_OUT_FRACTION[1] + 0.01
        corner = np.asarray(out, float)[:20, :20]
        assert corner.std() > 1.0  # skin with tone and grain, not a flat colour


def test_large_photos_and_the_round_field(lesion: Image.Image):
    assert max(transform(lesion, "large", 0).size) == LARGE_SIDE
    field = np.asarray(transform(lesion, "field", 0), float)
    assert field[:3, :3].mean() < 15 and field[40:56, 40:56].mean() > 30  # dark corners, the lesion kept
    with pytest.raises(ValueError, match=r"unknown site view\(s\) \['fog'\]"):
        transform(lesion, "fog", 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_view_built_for_training_stays_within_its_size(lesion: Image.Image, family: str):
    out = view(lesion, family, np.random.default_rng(0), max_side=160)
    assert max(out.size) <= 160 and out.mode == "RGB"
    if family == "zoom_out":  # the full-size frame (96 px / 15-35%) scaled down whole: the picture shrunk first
        full = view(lesion, family, np.random.default_rng(0))
        assert max(full.size) > 160 and abs(max(out.size) - 160) <= 2 and out.size[0] / out.size[1] == pytest.approx(
            full.size[0] / full.size[1], abs=0.05)
