"""The Python API: the same rows as the command line, for paths, PIL images and numpy arrays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from melanoma import Classifier
from melanoma.cli import app

from conftest import SAMPLES


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.from_pretrained()


def test_predict_takes_str_path_pil_and_numpy_and_agrees_with_the_command_line(clf: Classifier):
    one = sorted((SAMPLES / "malignant").iterdir())[0]
    cli = json.loads(CliRunner().invoke(app, ["predict", str(one), "--json"]).stdout)[0]
    as_str, as_path, as_pil, as_array = clf.assess([str(one), one, Image.open(one), np.asarray(Image.open(one))])
    assert as_str == cli and as_path == cli
    for row in (as_pil, as_array):
        assert row["status"] == "ok" and row["label"] == cli["label"]
        assert row["p_malignant"] == pytest.approx(cli["p_malignant"], abs=1e-6)
    floats = clf.assess(np.asarray(Image.open(one), np.float32) / 255)[0]
    assert floats["p_malignant"] == pytest.approx(cli["p_malignant"], abs=1e-3)


def test_a_folder_gives_a_row_per_image_and_bad_inputs_give_error_rows(clf: Classifier):
    rows = clf.assess([SAMPLES, np.zeros((8, 8, 3), np.uint8), np.full((64, 64), 2.0), "absent.jpg", 42])
    assert len(rows) == 24 + 4 and all(r["status"] == "ok" for r in rows[:24])
    small, bad_range, absent, number = rows[24:]
    assert small["status"] == "error" and "too small" in small["error"]
    assert bad_range["status"] == "error" and "[0, 1]" in bad_range["error"]
    assert absent["error"] == "no such file"
    assert number["status"] == "error" and "int" in number["error"]


def test_predict_proba_is_nan_where_not_assessed_and_explain_gives_heatmaps(clf: Classifier):
    one = sorted((SAMPLES / "benign").iterdir())[0]
    p = clf.predict_proba([one, np.full((64, 64, 3), 128, np.uint8)])
    # scikit-learn's conventions; the bundled model answers with the seven diagnoses
    assert list(clf.classes_) == ["mel", "nv", "bkl", "df", "vasc", "bcc", "akiec"] and p.shape == (2, 7)
    assert p[0].sum() == pytest.approx(1) and np.isnan(p[1]).all()  # a flat grey square cannot be assessed
    row = clf.assess(one)[0]
    assert p[0, 0] == pytest.approx(row["p_melanoma"]) and p[0, [0, 5, 6]].sum() == pytest.approx(row["p_skin_cancer"])
    top = row["diagnoses"][0]["dx"]
    assert p[0].argmax() == list(clf.classes_).index(top)
    assert list(clf.predict([one, np.full((64, 64, 3), 128, np.uint8)])) == [top, None]
    (row, heat), (flat_row, none) = clf.explain([one, np.full((64, 64, 3), 128, np.uint8)])
    assert row["status"] == "ok" and heat.shape == (224, 224) and 0 <= heat.min() and heat.max() <= 1
    assert flat_row["status"] == "out_of_distribution" and none is None


def test_the_api_on_the_bundled_model_imports_no_torch():
    code = ("import sys\nfrom melanoma import Classifier\n"
            f"rows = Classifier.from_pretrained().assess({str(SAMPLES)!r})\n"
            "print(len(rows), [m for m in ('torch', 'torchvision', 'lightning', 'timm') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "24 []", out.stdout + out.stderr


def test_evaluate_from_python_reports_the_clean_test_as_the_command_does(tmp_path: Path, kaggle_like: Path,
                                                                         tiny_model_dir: Path):
    import shutil

    from melanoma.api import evaluate

    test_img = next((kaggle_like / "test" / "malignant").iterdir())
    shutil.copy(test_img, kaggle_like / "train" / "Malignant" / "copy.jpg")  # one test image leaks
    m = evaluate(kaggle_like, tmp_path / "eval", model=tiny_model_dir)
    assert m["n"] == 12 and m["clean"]["n_excluded"] == 1 and (tmp_path / "eval" / "audit.json").is_file()


@pytest.mark.train
def test_train_from_python_takes_the_overrides_the_command_line_takes(tmp_path: Path, kaggle_like: Path):
    from melanoma.api import train
    from melanoma.config import ModelConfig

    with pytest.raises(ValueError, match="'learning_rate'"):  # checked before anything runs, as --set is
        train(kaggle_like, tmp_path / "bad", learning_rate=0.1)
    assert not (tmp_path / "bad").exists()
    model = train(kaggle_like, tmp_path / "run", arch="small_cnn", pretrained="none", img_size=32, batch_size=8,
                  num_workers=0, fast_dev_run=True, aug={"zoom": 0.25, "hflip": False})
    recipe = ModelConfig.load(model / "config.json").training["recipe"]
    assert (recipe["img_size"], recipe["aug"]["zoom"], recipe["aug"]["hflip"]) == (32, 0.25, False)
