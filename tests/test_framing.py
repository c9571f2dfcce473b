"""The refusal sentences (melanoma.framing) on real pictures: each view is explained by its own sentence."""

import numpy as np
import pytest
from PIL import Image

from melanoma.framing import DEFAULT, REASONS, fit_limits, measure, reason
from melanoma.views import transform

from conftest import SAMPLES


def model_input(img: Image.Image) -> np.ndarray:  # what the bundled model's preprocessing makes of a picture
    from melanoma.imaging import cap_shorter_side

    return np.asarray(cap_shorter_side(img, 150).resize((224, 224), Image.BILINEAR), np.float32)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*/*.jpg"))]


@pytest.mark.parametrize("family, expected", [(None, None), ("zoom_out", "small"), ("grid", "marks"),
                                              ("blur", "blur")])
def test_each_view_is_explained_by_its_own_sentence(pictures, family, expected):
    said = [reason(model_input(img if family is None else transform(img, family, i))) for i, img in enumerate(pictures)]
    assert said.count(expected) >= 0.75 * len(pictures), said


def test_the_measures_and_the_fitted_limits():
    skin = np.full((64, 64, 3), 200.0)
    lesion = skin.copy()
    lesion[16:48, 16:48] = 60.0  # a quarter of the frame clearly darker than the skin, with sharp edges
    dark, sharp = measure(lesion)
    assert dark == pytest.approx(0.25) and sharp > 100
    assert measure(skin) == (0.0, 0.0)
    limits = fit_limits(np.array([[0.1 + i / 100, 10.0 + i] for i in range(100)]), false_rate=0.05)
    assert limits["small"] == pytest.approx(0.1495) and limits["blur"] == pytest.approx(14.95)
    assert limits["marks"] == pytest.approx(104.05)
    # the three measured here, and the segmenter's (a cropping model's engines say it: tests/test_segment.py)
    assert set(REASONS) == {"marks", "small", "blur", "no_lesion"} and DEFAULT not in REASONS.values()
