import json
from pathlib import Path

from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.config import DEFAULT_MODEL_DIR
from melanoma.inputs import expand_paths
from melanoma.nn.torch_engine import TorchPredictor

from conftest import SAMPLES, files_git_would_refuse


def test_exported_repository_predicts_exactly_like_the_original(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["export-hub", str(DEFAULT_MODEL_DIR), str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    repo = tmp_path / "repo"
    assert {p.name for p in repo.iterdir()} >= {"config.json", "model.safetensors", "model.onnx", "README.md"}
    config = json.loads((repo / "config.json").read_text())
    assert config["architecture"] == config["arch"] and config["num_classes"] == len(config["diagnoses"]) == 7
    assert config["pretrained_cfg"]["input_size"] == [3, config["img_size"], config["img_size"]]
    assert files_git_would_refuse(repo) == [] and (repo / "model.onnx").stat().st_size > 10 * 2**20
    card = (repo / "README.md").read_text()
    assert card.startswith("---\n") and "license: cc-by-nc-4.0" in card and "Not a diagnosis" in card
    paths = expand_paths([SAMPLES])[::3]
    assert TorchPredictor(repo).predict_paths(paths) == TorchPredictor().predict_paths(paths)


def test_push_failure_is_one_clear_line_and_keeps_the_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["export-hub", str(DEFAULT_MODEL_DIR), str(tmp_path / "r"),
                                      "--push", "someone/melanoma"])
    assert result.exit_code == 3 and "upload to someone/melanoma failed" in result.output
    assert "Traceback" not in result.output and (tmp_path / "r" / "model.onnx").is_file()


def test_static_same_padding_keeps_the_outputs_at_the_image_size():
    import timm
    import torch

    from melanoma.nn.export import static_same_padding

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        after = static_same_padding(net, img_size=64)(x)
    assert not any(type(m).__name__ == "Conv2dSame" for m in net.modules())
    assert torch.allclose(before, after, atol=1e-6)


def test_onnx_runtime_folds_every_pad_of_the_bundled_graph_into_its_conv(tmp_path: Path):
    # A Pad left in the graph makes ONNX Runtime leave its blocked layout around it (31% of the time
    # at batch 32, see static_same_padding); this checks the shipped model.onnx.
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(DEFAULT_MODEL_DIR / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "Conv" in ops and "Pad" not in ops and "Shape" not in ops
