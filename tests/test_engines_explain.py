"""Grad-CAM on both engines: pytorch-grad-cam (PyTorch) and the ONNX graph's ``cam`` output."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from melanoma.engines import explainer_for, load_predictor
from melanoma.engines.base import heatmap_from_cam
from melanoma.imaging import open_rgb
from melanoma.inputs import expand_paths
from melanoma.nn.torch_engine import TorchExplainer, TorchPredictor

from conftest import SAMPLES


def test_gradcam_heat_follows_the_evidence(tiny_model_dir: Path):
    """A model whose score is the brightness of the image's left half puts its heat on the left."""
    import torch

    predictor = TorchPredictor(tiny_model_dir)
    net = predictor.model
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                for c in range(min(m.in_channels, m.out_channels)):
                    m.weight[c, c, 1, 1] = 1.0
        lin = net.head[-1]
        lin.weight.zero_()
        lin.weight[0, 0] = 1.0
        lin.bias.zero_()
    img = np.full((48, 48, 3), 40, np.uint8)
    img[:, :24] = 220
    cam = TorchExplainer(predictor).heatmap(Image.fromarray(img))
    assert cam.shape == (48, 48)
    assert cam[:, :24].mean() > cam[:, 24:].mean()


def test_heatmap_from_cam_is_relu_then_min_max():
    cam = np.array([[-3.0, 1.0], [2.0, 5.0]], np.float32)
    heat = heatmap_from_cam(cam, 4)
    assert heat.shape == (4, 4) and heat.min() == 0 and abs(heat.max() - 1) < 1e-6
    assert heat[3, 3] > heat[0, 3] > heat[0, 0]  # brightest where the map is highest
    assert np.all(heatmap_from_cam(-np.ones((2, 2), np.float32), 4) == 0)  # no evidence, no heat


def test_onnx_heatmaps_equal_pytorch_grad_cam_on_real_images():
    """The graph's class activation map is Grad-CAM for this head: same heatmaps as pytorch-grad-cam."""
    onnx = explainer_for(load_predictor(None, "onnx"))
    torch_cam = TorchExplainer(TorchPredictor())
    assert type(onnx).__name__ == "OnnxExplainer"
    peaks = []
    for path in expand_paths([SAMPLES])[::2]:
        img = open_rgb(path, draft_size=224)
        (r_onnx, h_onnx), (r_torch, h_torch) = onnx.explain(img), torch_cam.explain(img)
        assert np.abs(np.asarray(r_onnx["logit"]) - np.asarray(r_torch["logit"])).max() < 1e-3
        assert h_onnx.shape == h_torch.shape == (224, 224)
        assert np.abs(h_onnx - h_torch).max() < 0.03, path.name
        peaks.append(h_onnx.max())
    assert sum(p > 0.9 for p in peaks) >= 4  # not a comparison of empty maps


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_explainer_assess_agrees_with_predict(tmp_path: Path, engine: str):
    """The app's single-pass path (one forward pass for the row and the heatmap) gives predict's rows."""
    Image.new("RGB", (120, 120), (90, 90, 200)).save(tmp_path / "blank.png")
    paths = expand_paths([SAMPLES])[::4] + [tmp_path / "blank.png"]
    predictor = load_predictor(None, engine)
    expected = predictor.predict_paths(paths)
    explainer = explainer_for(predictor)
    for p, want in zip(paths, expected):
        row, overlay = explainer.assess(open_rgb(p, draft_size=predictor.cfg.img_size), p)
        assert row["status"] == want["status"] and row["label"] == want["label"]
        if want["status"] == "ok":
            assert abs(row["p_malignant"] - want["p_malignant"]) < 1e-4 and overlay.size == (224, 224)
        else:
            assert overlay is None


def test_an_onnx_export_without_cam_falls_back_to_pytorch(tmp_path: Path, tiny_model_dir: Path):
    from melanoma.nn.export import export_onnx

    export_onnx(tiny_model_dir, tiny_model_dir / "model.onnx")  # small_cnn: logit only
    explainer = explainer_for(load_predictor(tiny_model_dir, "onnx"))
    assert isinstance(explainer, TorchExplainer)
    assert explainer.heatmap(Image.new("RGB", (60, 60), (200, 120, 100))).shape == (48, 48)


def test_explain_runs_without_torch(tmp_path: Path):
    img = SAMPLES / "malignant" / "test_malignant_6091.jpg"
    code = (
        "import sys\n"
        "from melanoma.cli import app\n"
        f"app(['explain', {str(img)!r}, '--out', {str(tmp_path)!r}], standalone_mode=False)\n"
        "print('HEAVY', [m for m in ('torch', 'torchvision', 'lightning', 'timm', 'cv2') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    written = Image.open(tmp_path / "test_malignant_6091_gradcam.png")
    assert written.size == (740, 360) and np.asarray(written).std() > 10  # the image and its overlay, side by side
