import json
from pathlib import Path

from conftest import SAMPLES, write_class_folders
from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.predict import Predictor, expand_paths


def test_expand_paths_files_folders_and_globs(tmp_path: Path):
    write_class_folders(tmp_path / "d", 2)
    (tmp_path / "d" / "readme.txt").write_text("x")
    assert len(expand_paths([tmp_path / "d"])) == 4  # recursive, images only
    assert len(expand_paths([str(tmp_path / "d" / "*" / "*.png")])) == 4
    one = tmp_path / "d" / "benign" / "benign_0.png"
    assert expand_paths([one, tmp_path / "d"]).count(one) == 1  # no duplicates


def test_predict_json_contract(tmp_path: Path, tiny_model_dir: Path):
    write_class_folders(tmp_path / "d", 2)
    (tmp_path / "d" / "benign" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "d"), str(tmp_path / "absent.jpg"),
                                      "--model", str(tiny_model_dir), "--json"])
    assert result.exit_code == 1  # some files could not be read
    rows = json.loads(result.stdout)
    assert len(rows) == 6
    for row in rows:
        assert {"path", "p_malignant", "label", "status"} <= row.keys()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    assert all(0 <= r["p_malignant"] <= 1 and r["label"] in ("benign", "malignant") for r in ok)
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "error"}
    assert errors.keys() == {"truncated.png", "absent.jpg"}
    assert errors["absent.jpg"] == "no such file" and errors["truncated.png"] == "not an image (unrecognised format)"


def test_label_follows_the_configured_threshold(tiny_model_dir: Path):
    predictor = Predictor(tiny_model_dir)
    predictor.cfg.threshold = 0.3
    assert predictor.label(0.31) == "malignant" and predictor.label(0.29) == "benign"


def test_bundled_model_on_the_bundled_samples():
    """The shipped model loads without arguments and separates the shipped labelled samples."""
    from melanoma.evaluate import compute_metrics

    paths = expand_paths([SAMPLES])
    rows = Predictor().predict_paths(paths)
    assert all(r["status"] == "ok" for r in rows)
    labels = [int(Path(r["path"]).parent.name == "malignant") for r in rows]
    assert compute_metrics(labels, [r["p_malignant"] for r in rows])["roc_auc"] > 0.8
