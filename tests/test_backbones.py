"""The backbone registry (melanoma.backbones): a second, non-EfficientNet timm family builds, trains a step, exports
and predicts with the gate and Grad-CAM on both engines; what the registry says of each family."""

from pathlib import Path

import numpy as np
import pytest

from melanoma.backbones import EFFICIENTNET, GATE_STAGES, SMALL_CNN, TIMM, backbone, mean_std
from melanoma.config import ModelError


def test_each_architecture_is_served_by_the_first_family_that_covers_it():
    assert backbone("tf_efficientnet_lite0") is EFFICIENTNET and backbone("efficientnet_b0") is EFFICIENTNET
    assert backbone("small_cnn") is SMALL_CNN and backbone("test_resnet") is TIMM and backbone("convnext_tiny") is TIMM
    assert EFFICIENTNET.hub_base("tf_efficientnet_lite0") == "timm/tf_efficientnet_lite0.in1k"
    assert TIMM.hub_base("test_resnet") is None and TIMM.imagenet is None and TIMM.frozen is None
    assert mean_std("tf_efficientnet_lite2") == ((0.5,) * 3, (0.5,) * 3)
    assert mean_std("resnet18") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # timm's pretrained_cfg


def test_the_gate_reads_four_stages_of_any_timm_cnn():
    import timm
    import torch

    for arch in ("tf_efficientnet_lite0", "test_resnet", "test_convnext"):
        net = timm.create_model(arch, pretrained=False, num_classes=1)
        modules = backbone(arch).gate_modules(net)
        assert len(modules) == GATE_STAGES
        outs = []
        hooks = [m.register_forward_hook(lambda _m, _i, out, outs=outs: outs.append(out)) for m in modules]
        net(torch.zeros(1, 3, 64, 64))
        assert [o.ndim for o in outs] == [4] * GATE_STAGES  # (N, C, h, w): maps the gate pools
        for h in hooks:
            h.remove()
    with pytest.raises(ModelError, match="feature_info"):
        TIMM.gate_modules(torch.nn.Linear(2, 2))


@pytest.mark.train
def test_a_non_efficientnet_family_trains_exports_and_predicts_with_its_gate(kaggle_like: Path, tmp_path: Path):
    from melanoma.engines import load_predictor
    from melanoma.imaging import Sample
    from melanoma.nn.train import train
    from melanoma.recipe import TrainConfig

    cfg = TrainConfig(arch="test_resnet", pretrained="none", img_size=64, epochs=1, batch_size=8, num_workers=0,
                      val_fraction=0.25, accelerator="cpu", devices=1, fast_dev_run=True)
    model_dir = train(kaggle_like, tmp_path / "run", cfg)
    assert {"model.onnx", "ood.safetensors"} <= {p.name for p in model_dir.iterdir()}  # the gate went with it
    images = [Sample(p, 0) for p in sorted(kaggle_like.rglob("*.jpg"))[:5]]
    onnx, torch_ = load_predictor(model_dir, "onnx"), load_predictor(model_dir, "torch")
    a, b = onnx.run(images), torch_.run(images)
    assert all(r["ood_score"] is not None for r in a + b)
    np.testing.assert_allclose([r["features"] for r in a], [r["features"] for r in b], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose([r["logit"] for r in a], [r["logit"] for r in b], atol=1e-4)
    from PIL import Image

    from melanoma.engines import explainer_for
    from melanoma.engines.onnx_engine import OnnxExplainer

    picture = Image.open(images[0].path).convert("RGB")
    assert onnx.has_cam and isinstance(explainer_for(onnx), OnnxExplainer)  # the graph carries the CAM
    for predictor in (onnx, torch_):  # the ONNX graph's cam, and pytorch-grad-cam on the backbone's cam layer
        _, heat = explainer_for(predictor).explain(picture)
        assert heat.ndim == 2 and np.isfinite(heat).all() and heat.max() > heat.min()


def test_freezing_is_a_familys_choice(tmp_path: Path):
    from melanoma.nn.module import LesionClassifier

    frozen = LesionClassifier("tf_efficientnet_lite0", "none", 1e-3, 0.0, "adamw", 0.0, freeze_blocks=2).frozen
    assert len(frozen) == 4  # the stem's conv and BN, and two blocks
    with pytest.raises(ValueError, match="freeze_blocks is not defined for test_resnet"):
        LesionClassifier("test_resnet", "none", 1e-3, 0.0, "adamw", 0.0, freeze_blocks=2)
