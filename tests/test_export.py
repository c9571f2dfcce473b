import json
from pathlib import Path

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


def test_push_failure_is_one_clear_line_and_keeps_the_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["export-hub", str(DEFAULT_MODEL_DIR), str(tmp_path / "r"),
                                      "--push", "someone/melanoma"])
    assert result.exit_code == 2 and "upload to someone/melanoma failed" in result.output
    assert "Traceback" not in result.output and (tmp_path / "r" / "model.onnx").is_file()


def test_model_card_names_every_training_source():
    from melanoma.config import ModelConfig
    from melanoma.export import model_card

    cfg = ModelConfig(arch="tf_efficientnet_lite0", training={
        "data": "kaggle", "n_train": 12000, "n_val": 1188,
        "extra_train": {"../shared/data/isic2017": {"n_used": 1950, "n_left_out_copies_of_val_or_test": 50}}})
    card = model_card(cfg)
    assert "10050 training and 1188 validation images of `kaggle`" in card  # 12000 minus the 1950 below
    assert "1950 images of the train split of `../shared/data/isic2017`" in card
    assert "its 50 near-copies of Kaggle validation or test images" in card
    assert "isic2017" not in model_card(ModelConfig(arch="tf_efficientnet_lite0", training={"data": "kaggle"}))
    noted = model_card(cfg, limitations=["Melanoma sensitivity 0.70 on ISIC 2017 validation."])
    assert "## Limitations\n\n- Melanoma sensitivity 0.70 on ISIC 2017 validation.\n" in noted
    # a given bullet that opens like a default one replaces it: each limitation once
    mine = "Skin tone was not recorded: measured on 12 images of dark skin, sensitivity 0.5."
    card = model_card(cfg, limitations=[mine])
    assert card.count("Skin tone was not recorded") == 1 and f"- {mine}\n" in card
    assert card.count("Not for non-dermoscopic") == 1


def test_results_table_shows_a_dash_for_metrics_a_one_class_row_lacks():
    from melanoma.export import results_table

    benign_only = {"n": 120, "n_benign": 120, "n_malignant": 0, "accuracy": 0.75, "accuracy_ci": [0.67, 0.82],
                   "roc_auc": None, "roc_auc_ci": [None, None], "recall": None, "specificity": 0.75,
                   "specificity_ci": [0.67, 0.82], "ece": None}
    row = results_table({"external benign": benign_only})[2]
    assert row == "| external benign | 120 (120 / 0) | 0.750 (0.670-0.820) | - | - | 0.750 (0.670-0.820) | - |"


def test_static_same_padding_keeps_the_outputs_at_the_image_size():
    import timm
    import torch

    from melanoma.export import static_same_padding

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
