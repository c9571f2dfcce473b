"""The torch-free engine (ONNX Runtime + numpy + PIL) and the bundled model folder it reads."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.config import DEFAULT_MODEL_DIR, ModelConfig, ModelError
from melanoma.engines import load_predictor
from melanoma.engines.base import preprocess
from melanoma.engines.onnx_engine import OnnxPredictor
from melanoma.inputs import expand_paths

from conftest import SAMPLES

MB = 2**20


def test_bundled_model_folder_is_complete_small_and_verified():
    names = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"model.safetensors", "model.onnx", "config.json", "ood.safetensors", "SHA256SUMS", "README.md",
            "recipe.yaml"} <= names
    assert sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()) <= 30 * MB
    listed = {line.split()[1] for line in (DEFAULT_MODEL_DIR / "SHA256SUMS").read_text().splitlines()}
    assert listed == {"config.json", "model.safetensors", "model.onnx", "ood.safetensors"}
    cfg = ModelConfig.load(DEFAULT_MODEL_DIR / "config.json")
    assert 0 < cfg.threshold < 1 and cfg.temperature > 0 and cfg.training["calibration"]["val_n"] > 1000
    card = (DEFAULT_MODEL_DIR / "README.md").read_text().lower()
    for needed in ("not a diagnosis", "isic 2017", "clean", "melanoma train --recipe", "skin tone", "ci"):
        assert needed in card, needed
    from melanoma.recipe import load_recipe

    recipe = load_recipe(DEFAULT_MODEL_DIR / "recipe.yaml")
    assert recipe.arch == cfg.arch and recipe.img_size == cfg.img_size
    assert recipe.color_constancy == cfg.color_constancy


def test_engines_agree_on_real_images_with_and_without_tta():
    paths = expand_paths([SAMPLES])
    for tta, subset in ((False, paths), (True, paths[::6])):
        onnx_rows = load_predictor(None, "onnx", tta=tta).predict_paths(subset)
        torch_rows = load_predictor(None, "torch", tta=tta).predict_paths(subset)
        assert [r["status"] for r in onnx_rows] == [r["status"] for r in torch_rows]
        p_onnx = np.array([r["p_malignant"] for r in onnx_rows])
        p_torch = np.array([r["p_malignant"] for r in torch_rows])
        assert np.abs(p_onnx - p_torch).max() < 1e-4
        assert np.allclose([r["ood_score"] for r in onnx_rows], [r["ood_score"] for r in torch_rows],
                           rtol=1e-3, atol=1e-3)


def test_predict_runs_without_torch():
    code = (
        "import sys\n"
        "from melanoma.cli import app\n"
        f"try:\n    app(['predict', {str(SAMPLES)!r}, '--json'], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'lightning', 'timm') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    rows = json.loads(out.stdout[: out.stdout.rindex("HEAVY")])
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)


@pytest.mark.parametrize("method,downscale", [(None, None), ("shades_of_grey", None), ("shades_of_grey", 40)])
def test_numpy_preprocessing_equals_the_training_eval_transform(method, downscale):
    from melanoma.nn.data import build_transform

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (173, 301, 3), dtype=np.uint8))
    cfg = ModelConfig(img_size=64, color_constancy=method, downscale_to=downscale)
    expected = build_transform(64, cfg.mean, cfg.std, color_constancy=method, downscale_to=downscale)(img).numpy()
    assert np.abs(preprocess(img, cfg) - expected).max() < 1e-6
    if downscale:  # and it is a different picture from the one without the downscale
        assert np.abs(preprocess(img, ModelConfig(img_size=64, color_constancy=method)) - expected).max() > 0.1


@pytest.mark.parametrize("damaged", ["model.onnx", "model.safetensors", "config.json"])
def test_a_damaged_model_file_is_refused_by_its_checksum(tmp_path: Path, damaged: str):
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    path = folder / damaged
    if damaged == "config.json":  # a hand edit that still parses
        path.write_text(json.dumps({**json.loads(path.read_text()), "threshold": 0.9}))
    else:  # one flipped byte in the weights
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    engine = "torch" if damaged == "model.safetensors" else "onnx"
    with pytest.raises(ModelError, match="checksum"):
        load_predictor(folder, engine)
    result = CliRunner().invoke(app, ["predict", str(SAMPLES), "--model", str(folder), "--engine", engine])
    assert result.exit_code == 3 and "checksum" in result.output and "Traceback" not in result.output


def test_onnx_engine_without_model_onnx_says_so(tmp_path: Path, tiny_model_dir: Path):
    with pytest.raises(ModelError, match="model.onnx is missing"):
        OnnxPredictor(tiny_model_dir)
    assert type(load_predictor(tiny_model_dir)).__name__ == "TorchPredictor"  # auto falls back to PyTorch


def test_prevalence_moves_the_probabilities_and_keeps_every_label():
    paths = expand_paths([SAMPLES])
    as_calibrated = OnnxPredictor().predict_paths(paths)
    cal = OnnxPredictor().cfg.training["calibration"]
    same = OnnxPredictor().with_prevalence(cal["val_n_malignant"] / cal["val_n"]).predict_paths(paths)
    rare = OnnxPredictor().with_prevalence(0.05)
    lowered = rare.predict_paths(paths)
    assert [r["p_malignant"] for r in same] == pytest.approx([r["p_malignant"] for r in as_calibrated], abs=1e-6)
    assert all(b["p_malignant"] < a["p_malignant"] for a, b in zip(as_calibrated, lowered))
    assert [r["label"] for r in lowered] == [r["label"] for r in as_calibrated]
    assert rare.threshold < rare.cfg.threshold
    with pytest.raises(ValueError, match="between 0 and 1"):
        OnnxPredictor().with_prevalence(1.5)


def test_prevalence_needs_the_validation_prevalence_in_the_model_folder(tiny_model_dir: Path):
    with pytest.raises(ModelError, match="prevalence of its validation split"):
        load_predictor(tiny_model_dir, "torch").with_prevalence(0.1)
    result = CliRunner().invoke(app, ["predict", str(SAMPLES), "--prevalence", "0.1", "--model", str(tiny_model_dir),
                                      "--engine", "torch"])
    assert result.exit_code == 3 and "prevalence of its validation split" in result.output


def test_big_jpegs_decode_at_no_less_than_twice_the_model_input(tmp_path: Path):
    from melanoma.engines.base import draft_size
    from melanoma.imaging import Sample, open_rgb

    rng = np.random.default_rng(0)
    path = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(path, quality=90)
    cfg = ModelConfig(img_size=224)
    # libjpeg scales by powers of two: 1/4 would give 500 x 375, under 448 px, so it stops at 1/2
    assert open_rgb(path, draft_size=draft_size(cfg)).size == (1000, 750)
    small = tmp_path / "small.jpg"
    Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(small)
    assert open_rgb(small, draft_size=draft_size(cfg)).size == (400, 400)  # under 2x the input: decoded in full
    # and the predictor decodes through it: the same pixels as decoding at that size by hand
    predictor = OnnxPredictor(use_ood=False)
    by_hand = preprocess(open_rgb(path, draft_size=2 * predictor.cfg.img_size), predictor.cfg)
    np.testing.assert_array_equal(predictor._load(Sample(path, 0))[0], by_hand)


def test_a_refused_picture_says_why_in_words_the_user_can_act_on(tmp_path: Path):
    from melanoma.framing import DEFAULT, REASONS
    from melanoma.views import transform

    picture = Image.open(sorted(SAMPLES.glob("benign/*.jpg"))[0]).convert("RGB")
    transform(picture, "zoom_out", 0).save(tmp_path / "far.png")
    transform(picture, "grid", 0).save(tmp_path / "grid.png")
    picture.save(tmp_path / "plain.png")
    predictor = OnnxPredictor(DEFAULT_MODEL_DIR)
    predictor.ood.threshold = -np.inf  # every picture refused: only the sentence is under test
    rows = predictor.predict_paths([tmp_path / "far.png", tmp_path / "grid.png", tmp_path / "plain.png"])
    assert [r["status"] for r in rows] == ["out_of_distribution"] * 3
    assert [r["error"] for r in rows] == [f"cannot assess: {REASONS['small']}", f"cannot assess: {REASONS['marks']}",
                                          f"cannot assess: {DEFAULT}"]  # nothing to fix: the gate's own words
    predictor.ood.threshold = np.inf
    assert predictor.predict_paths([tmp_path / "far.png"])[0]["status"] == "ok"  # the gate decides, not the sentence
