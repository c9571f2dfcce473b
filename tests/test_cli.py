import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.inputs import expand_paths
from melanoma.nn.torch_engine import TorchPredictor

from conftest import SAMPLES, write_class_folders


def test_expand_paths_files_folders_and_globs(tmp_path: Path):
    write_class_folders(tmp_path / "d", 2)
    (tmp_path / "d" / "readme.txt").write_text("x")
    assert len(expand_paths([tmp_path / "d"])) == 4  # recursive, images only
    assert len(expand_paths([str(tmp_path / "d" / "*" / "*.png")])) == 4
    one = tmp_path / "d" / "benign" / "benign_0.png"
    assert expand_paths([one, tmp_path / "d"]).count(one) == 1  # no duplicates


def test_files_in_a_folder_that_are_not_images_are_listed_as_skipped(tmp_path: Path, tiny_model_dir: Path):
    write_class_folders(tmp_path / "d", 1)
    (tmp_path / "d" / "notes.txt").write_text("x")
    (tmp_path / "d" / "benign" / ".DS_Store").write_bytes(b"\0")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "d"), "--model", str(tiny_model_dir), "--json"])
    rows = json.loads(result.stdout)
    skipped = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "skipped"}
    assert skipped == {"notes.txt": "not an image file (.txt)", ".DS_Store": "hidden file"}
    assert sum(r["status"] == "ok" for r in rows) == 2
    assert result.exit_code == 0  # every image was assessed; the other files are named, not failed
    table = CliRunner().invoke(app, ["predict", str(tmp_path / "d"), "--model", str(tiny_model_dir)]).stdout
    assert "notes.txt" in table and "skipped" in table


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
    predictor = TorchPredictor(tiny_model_dir)
    predictor.cfg.threshold = 0.3
    assert predictor.label(0.31) == "malignant" and predictor.label(0.29) == "benign"


def test_bundled_model_on_the_bundled_samples():
    """The shipped model loads without arguments and separates the shipped labelled samples."""
    from melanoma.evaluate import compute_metrics

    paths = expand_paths([SAMPLES])
    rows = TorchPredictor().predict_paths(paths)
    assert all(r["status"] == "ok" for r in rows)
    labels = [int(Path(r["path"]).parent.name == "malignant") for r in rows]
    assert compute_metrics(labels, [r["p_malignant"] for r in rows])["roc_auc"] > 0.8


def test_csv_output_tta_and_explain(tmp_path: Path):
    import csv

    from melanoma.config import DEFAULT_MODEL_DIR

    imgs = [str(SAMPLES / "malignant" / "test_malignant_5744.jpg"), str(SAMPLES / "benign" / "test_benign_6340.jpg")]
    runner = CliRunner()
    result = runner.invoke(app, ["predict", *imgs, "--format", "csv", "--out", str(tmp_path / "p.csv"),
                                 "--explain", str(tmp_path / "cam")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"] and {"path", "p_malignant", "label"} <= set(rows[0])
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [
        "test_benign_6340_gradcam.png", "test_malignant_5744_gradcam.png"]
    # TTA is the mean logit of the 8 flips/rotations: the same as predicting 8 rotated copies of each (square) file
    from PIL import Image

    tta = TorchPredictor(DEFAULT_MODEL_DIR, tta=True).predict_paths([Path(p) for p in imgs])
    views = []
    for i, path in enumerate(imgs):
        img = Image.open(path).convert("RGB")
        for k, view in enumerate(v.rotate(90 * r) for v in (img, img.transpose(Image.FLIP_LEFT_RIGHT))
                                 for r in range(4)):
            views.append(tmp_path / f"{i}_{k}.png")
            view.save(views[-1])
    plain = TorchPredictor(DEFAULT_MODEL_DIR, use_ood=False).predict_paths(views)
    t = TorchPredictor(DEFAULT_MODEL_DIR).cfg.temperature
    logits = np.array([t * np.log(r["p_malignant"] / (1 - r["p_malignant"])) for r in plain]).reshape(len(imgs), 8)
    mean_p = 1 / (1 + np.exp(-logits.mean(1) / t))
    # within 0.02, not exactly: the shrink to 150 px resamples a rotated file a little differently
    assert [r["p_malignant"] for r in tta] == pytest.approx(mean_p.tolist(), abs=0.02)
    assert [r["p_malignant"] for r in tta] != pytest.approx([r["p_malignant"] for r in plain[::8]], abs=0.05)
    assert len({round(r["p_malignant"], 3) for r in plain[:8]}) > 1  # the views do differ


def test_every_bad_input_gets_its_own_error_row_and_the_batch_goes_on(tmp_path: Path, tiny_model_dir: Path):
    from test_imaging import BAD

    from conftest import textured_lesion

    good = tmp_path / "good.png"
    lesion = textured_lesion(np.random.default_rng(0), size=96)
    lesion.save(good)
    for name, (make, _) in BAD.items():
        (tmp_path / name).write_bytes(make(lesion))
    args = ["predict", str(good), *[str(tmp_path / n) for n in sorted(BAD)], "--model", str(tiny_model_dir), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert rows["good.png"]["status"] == "ok"
    for name, (_, reason) in BAD.items():
        assert rows[name]["status"] == "error" and reason in rows[name]["error"], name


def test_model_may_be_a_hub_id_read_from_the_local_cache_only(tmp_path: Path, tiny_model_dir: Path, monkeypatch):
    import shutil

    import huggingface_hub.constants

    from melanoma import Classifier

    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--acme--lesions"  # the Hub cache's layout: refs/main names the snapshot
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["predict", str(SAMPLES), "--model", "acme/lesions", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in json.loads(result.stdout)} <= {"ok", "cannot_assess"}
    assert Classifier.from_pretrained("hf-hub:acme/lesions").predictor.model_dir == repo / "snapshots" / commit
    missing = CliRunner().invoke(app, ["predict", str(SAMPLES), "--model", "acme/absent"])
    assert missing.exit_code != 0 and "local Hugging Face cache" in missing.output
    assert "Traceback" not in missing.output


def test_the_launcher_keeps_freed_memory_mapped_unless_the_user_set_glibc_tunables():
    import os
    import subprocess
    import sys

    code = "from melanoma.cli import tune_malloc; print(tune_malloc())"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")
    own = subprocess.run([sys.executable, "-c", code], env={**env, "GLIBC_TUNABLES": "glibc.malloc.mmap_max=1"},
                         capture_output=True, text=True, check=True)
    assert own.stdout.strip() == "False"  # the user's setting wins
