"""tools/bundle_model.py: a trained folder becomes a bundled one that verifies, with the recipe that made it."""

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_dark_segmenter


@pytest.mark.train
def test_the_bundled_folder_verifies_and_its_recipe_reproduces_the_run(tmp_path: Path, kaggle_like: Path,
                                                                        monkeypatch):
    from typer.testing import CliRunner

    from melanoma.cli import app
    from melanoma.config import sha256_file
    from melanoma.engines import load_predictor
    from melanoma.imaging import Sample
    from melanoma.recipe import load_recipe

    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import bundle_model

    recipe = tmp_path / "r.yaml"
    recipe.write_text("notes: a change\narch: small_cnn\npretrained: none\nimg_size: 40\nepochs: 1\n")
    run = CliRunner().invoke(app, ["train", str(kaggle_like), "--recipe", str(recipe), "--out", str(tmp_path / "run"),
                                   "--set", "seed=7", "--set", "fast_dev_run=true"])
    assert run.exit_code == 0, run.output
    model = tmp_path / "run" / "model"
    crop = CliRunner().invoke(app, ["crop-to-lesion", str(model), str(write_dark_segmenter(tmp_path / "seg"))])
    assert crop.exit_code == 0, crop.output
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"model_sha256": "0" * 64, "sets": {}}))
    dest = tmp_path / "bundled"
    argv = ["bundle_model.py", str(model), "--table", str(table), "--recipe", str(recipe), "--dest", str(dest)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="was not computed on"):  # a table of another model is refused
        bundle_model.main()
    assert not dest.exists()

    table.write_text(json.dumps({"model_sha256": sha256_file(model / "model.safetensors"), "sets": {}}))
    bundle_model.main()
    bundled_files = {p.name for p in dest.iterdir()}
    assert {"model.onnx", "README.md", "SHA256SUMS", "recipe.yaml", "segmenter.onnx"} <= bundled_files
    images = [Sample(path, 0) for path in sorted(kaggle_like.rglob("*.jpg"))[:4]]
    onnx, source = load_predictor(dest, "onnx"), load_predictor(model, "torch")  # loads, checksums verified
    assert onnx.threshold == source.threshold and onnx.cropper is not None  # it frames as the source folder does
    assert onnx.predict_logits(images) == pytest.approx(source.predict_logits(images), abs=1e-4)  # the same network
    bundled = load_recipe(dest / "recipe.yaml")
    assert bundled.seed == 7 and bundled.fast_dev_run and bundled.img_size == 40  # the run's, not the file's
    header = [line for line in (dest / "recipe.yaml").read_text().splitlines() if line.startswith("#")]
    assert any("command line's" in line and "seed" in line for line in header)  # says what the options changed


def test_the_flagship_recipe_is_the_tools_pointer_to_the_shipped_experiment(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import bundle_model

    shipped = REPO / "experiments" / "031-broad-negatives" / "recipe.yaml"
    assert bundle_model.flagship_text(shipped) == (REPO / "recipes" / "flagship.yaml").read_text()


def test_a_refits_pictures_folder_is_the_recipes_wherever_it_was_made(monkeypatch):
    from melanoma.recipe import TrainConfig

    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import bundle_model

    recipe = TrainConfig(gate_negatives=1600, gate_negative_pictures="nonlesions/fit")  # beside the data
    refit = TrainConfig(gate_negatives=1600, gate_negative_pictures="/srv/x/nonlesions/fit")  # calibrate records it
    assert bundle_model.same_run(recipe, refit)
    assert not bundle_model.same_run(recipe, TrainConfig(gate_negatives=1600, gate_negative_pictures="/x/held_out"))
    assert not bundle_model.same_run(recipe, TrainConfig(gate_negatives=1600))
