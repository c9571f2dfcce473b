import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from melanoma.config import ModelConfig, ModelError, write_checksums
from melanoma.engines.onnx_engine import LesionCropper, load_cropper
from melanoma.lesion_crop import EVIDENCE, CropSpec, crop_box, lesion_box, lesion_evidence, segmenter_spec

from conftest import write_dark_segmenter


def skin_with_lesion(size=(400, 300), box=(200, 100, 260, 160)) -> Image.Image:
    img = Image.new("RGB", size, (205, 160, 140))
    ImageDraw.Draw(img).ellipse(box, fill=(80, 50, 40))
    return img


def test_the_box_is_the_largest_region_by_mass_and_a_speck_does_not_move_it():
    prob = np.zeros((20, 20))
    prob[5:11, 8:14] = 0.9  # the lesion
    prob[18, 1] = 0.99  # a hair tip
    assert lesion_box(prob) == (8 / 20, 5 / 20, 14 / 20, 11 / 20)
    assert lesion_box(np.full((20, 20), 0.2)) is None  # nothing found: no box


def test_the_evidence_says_one_confident_region_holds_the_map():
    one = np.full((20, 20), 0.01)
    one[5:11, 8:14] = 0.95
    two = np.full((20, 20), 0.01)
    two[2:6, 2:6] = two[12:16, 12:16] = 0.7  # two weak patches, as a photograph's dark areas light
    e_one, e_two, e_none = (dict(zip(EVIDENCE, lesion_evidence(p))) for p in (one, two, np.full((20, 20), 0.2)))
    assert e_one["one_region"] > 0.9 and e_one["region_mean"] == pytest.approx(0.95)
    assert e_one["regions"] == pytest.approx(np.log(2)) and e_two["regions"] == pytest.approx(np.log(3))
    assert e_two["one_region"] < 0.5 and e_two["peak"] < e_one["peak"]
    assert e_none["one_region"] == e_none["region_mean"] == e_none["regions"] == 0  # nothing found
    assert e_none["peak"] == pytest.approx(np.log(0.2 / 0.8), abs=1e-6)
    assert lesion_evidence(np.ones((4, 4)))[2] == 8.0  # a certain map's log-odds, clipped


def test_the_crop_is_a_square_around_the_lesion_moved_inside_the_picture():
    # a lesion 60 px across in a 400 x 300 picture: a 90 px square at margin 0.25, centred on it
    assert crop_box((0.5, 1 / 3, 0.65, 8 / 15), 400, 300, 0.25) == (185, 85, 275, 175)
    # near the edge: the square keeps its side and moves inside
    assert crop_box((0.0, 0.0, 0.15, 0.2), 400, 300, 0.25) == (0, 0, 90, 90)
    # a lesion that fills the frame keeps its whole picture (the archives' framing is left as it is)
    assert crop_box((0.1, 0.1, 0.9, 0.9), 400, 300, 0.25) == (0, 0, 400, 300)
    # an axis shorter than the square is kept whole, the other cropped
    assert crop_box((0.4, 0.1, 0.6, 0.9), 800, 300, 0.25)[1::2] == (0, 300)


def test_a_spec_checks_its_values_and_keys():
    with pytest.raises(ValueError, match="margin"):
        CropSpec(margin=-0.1)
    with pytest.raises(ValueError, match="unknown keys"):
        CropSpec.from_dict({"size": 64, "zoom": 2})
    assert CropSpec.from_dict({"size": 64, "margin": 0.5}) == CropSpec(64, 0.5)


def test_the_cropper_finds_a_small_lesion_and_frames_it(tmp_path: Path):
    cropper = LesionCropper(write_dark_segmenter(tmp_path / "seg"), CropSpec(size=64, margin=0.25))
    img = skin_with_lesion()
    out = cropper(img)
    left, top, right, bottom = cropper.box(img)
    assert out.size == (right - left, bottom - top) and out.size[0] < 200  # zoomed in
    assert left <= 200 and right >= 260 and top <= 100 and bottom >= 160  # the whole lesion is in it
    plain = Image.new("RGB", (300, 300), (205, 160, 140))
    assert cropper(plain) is plain  # no lesion found: the picture as it is
    # sent to a data-loading process without its session, which reopens there
    again = pickle.loads(pickle.dumps(cropper))
    assert again._session is None and again.box(img) == (left, top, right, bottom)


def test_a_model_folder_that_asks_for_a_crop_must_carry_an_intact_segmenter(tmp_path: Path):
    seg = write_dark_segmenter(tmp_path / "seg")
    model = tmp_path / "model"
    model.mkdir()
    cfg = ModelConfig(arch="small_cnn", img_size=48, lesion_crop={"size": 64, "margin": 0.25})
    cfg.save(model / "config.json")
    with pytest.raises(ModelError, match="segmenter.onnx is missing"):
        load_cropper(model, cfg)
    shutil.copy(seg, model / "segmenter.onnx")
    write_checksums(model)
    assert load_cropper(model, cfg).spec == CropSpec(64, 0.25)
    assert load_cropper(model, ModelConfig(arch="small_cnn", img_size=48)) is None  # none asked for
    with open(model / "segmenter.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelError, match="checksum"):
        load_cropper(model, cfg)
    assert ModelConfig.load(model / "config.json").lesion_crop == {"size": 64, "margin": 0.25}


def test_a_segmenter_without_its_record_is_refused(tmp_path: Path):
    seg = write_dark_segmenter(tmp_path / "seg")
    assert segmenter_spec(seg, 0.5) == CropSpec(64, 0.5)
    (tmp_path / "seg" / "segmenter.json").unlink()
    with pytest.raises(FileNotFoundError, match="segmenter.json"):
        segmenter_spec(seg, 0.5)
