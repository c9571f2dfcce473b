import json
from pathlib import Path

import numpy as np
from conftest import SAMPLES
from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.models import DEFAULT_MODEL_DIR
from melanoma.predict import Predictor, expand_paths


def test_exported_repository_predicts_exactly_like_the_original(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["export-hub", str(DEFAULT_MODEL_DIR), str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    repo = tmp_path / "repo"
    assert {p.name for p in repo.iterdir()} >= {"config.json", "model.safetensors", "model.onnx", "README.md"}
    config = json.loads((repo / "config.json").read_text())
    assert config["architecture"] == config["arch"] and config["num_classes"] == 1
    assert config["pretrained_cfg"]["input_size"] == [3, config["img_size"], config["img_size"]]
    card = (repo / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "Not a diagnosis" in card
    paths = expand_paths([SAMPLES])[::3]
    assert Predictor(repo).predict_paths(paths) == Predictor().predict_paths(paths)


def test_onnx_matches_pytorch_on_real_images(tmp_path: Path):
    import onnxruntime as ort
    import torch

    from melanoma.data import Sample, make_loader
    from melanoma.export import export_onnx

    export_onnx(None, tmp_path / "m.onnx")
    predictor = Predictor()
    x, _, _ = next(iter(make_loader([Sample(p, 0) for p in expand_paths([SAMPLES])], predictor.transform, 24)))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"image": x.numpy()})[0][:, 0]
    torch_logits = predictor.logits(x).numpy()
    t = predictor.cfg.temperature
    p_onnx, p_torch = 1 / (1 + np.exp(-onnx_logits / t)), 1 / (1 + np.exp(-torch_logits / t))
    assert np.abs(p_onnx - p_torch).max() < 1e-4


def test_push_failure_is_one_clear_line_and_keeps_the_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["export-hub", str(DEFAULT_MODEL_DIR), str(tmp_path / "r"),
                                      "--push", "someone/melanoma"])
    assert result.exit_code == 2 and "upload to someone/melanoma failed" in result.output
    assert "Traceback" not in result.output and (tmp_path / "r" / "model.onnx").is_file()
