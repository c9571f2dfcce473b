"""Export: ONNX, and a Hugging Face model repository folder (timm / huggingface_hub conventions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..backbones import GATE_STAGES, backbone
from ..card import HUB_GITATTRIBUTES, model_card, public_name
from ..config import DEFAULT_MODEL_DIR, ModelError, atomic_write_bytes, atomic_write_text, write_checksums
from ..datasets import source_name
from ..engines.base import cam_weights
from .models import load_model_folder


class WithGateFeatures(torch.nn.Module):
    """A timm network that also returns the "cannot assess" gate's features (the spatial means of its backbone's
    gate modules' outputs, concatenated, as :class:`melanoma.nn.torch_engine.TorchPredictor` hooks them) and
    the class activation map ``cam`` = sum_c w_c A_c of the last conv maps A (N, C, h, w: ``forward_features``) and
    the classifier's weights w (:func:`cam_weights`: a seven-class model's cancer-against-benign direction): with a
    global-average-pool + linear head this is Grad-CAM before its ReLU, so ONNX Runtime draws heatmaps without
    gradients. A network whose backbone gives no gate stages, or whose features are not maps, is an error."""

    def __init__(self, net: torch.nn.Module, arch: str):
        super().__init__()
        self.net = net
        weight = net.get_classifier().weight.detach()
        self.register_buffer("cam_weight", torch.as_tensor(cam_weights(weight.numpy()), dtype=weight.dtype))
        self._stages: dict[int, torch.Tensor] = {}
        modules = backbone(arch).gate_modules(net)
        if len(modules) != GATE_STAGES:
            raise ModelError(f"{arch}: the ONNX graph needs {GATE_STAGES} gate stages, the backbone gives "
                             f"{len(modules)}")
        for i, module in enumerate(modules):  # hooks: the traced graph reads the stages off the one forward pass
            module.register_forward_hook(lambda _m, _i, out, i=i: self._stages.__setitem__(i, out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._stages.clear()
        maps = self.net.forward_features(x)
        if maps.ndim != 4:
            raise ModelError(f"{type(self.net).__name__}'s features are not (N, C, h, w) maps: no CAM in the graph")
        stages = torch.cat([self._stages[i].mean(dim=(2, 3)) for i in range(GATE_STAGES)], 1)
        cam = torch.einsum("nchw,c->nhw", maps, self.cam_weight)
        return self.net.forward_head(maps).squeeze(1), stages, cam


class LogitOnly(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class WithProbabilities(torch.nn.Module):
    """A seven-class graph's outputs with the calibrated probabilities inserted second:
    ``diagnosis_probabilities = softmax(diagnosis_logits / temperature + class_bias)``, so a user of the bare ONNX
    file gets what the package reports (the package itself recomputes them from the logits and config.json, where
    ``--prevalence`` can move them; ``melanoma calibrate`` re-exports the graph after a refit)."""

    def __init__(self, inner: torch.nn.Module, temperature: float, bias):
        super().__init__()
        self.inner = inner
        self.temperature = float(temperature)
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor):
        out = self.inner(x)
        logits, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        return (logits, (logits / self.temperature + self.bias).softmax(-1), *rest)


def static_same_padding(model: torch.nn.Module, img_size: int) -> torch.nn.Module:
    """Replace the model's ``Conv2dSame`` layers (the stride-2 convs of tf_ EfficientNets) by the same
    zero padding with constant sizes for ``img_size`` input; same outputs at that size.

    Why: traced as is, each computes its padding from the input's shape at run time, a Pad that ONNX
    Runtime cannot fold into the conv that follows; every such Pad makes it convert the activations out
    of and back into its blocked (NCHWc) layout. Measured on 2 cores at batch 32: the 5 Pads and the
    conversions around them took 31% of the time. (The exported graph takes ``img_size`` input only, as
    it did before: the predictors always resize to it.)
    """
    from timm.layers import Conv2dSame
    from timm.layers.padding import pad_same_arg

    sizes: dict[str, list[int]] = {}

    def record(name: str):
        def hook(module, args) -> None:
            sizes[name] = list(args[0].shape[-2:])
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules()
             if isinstance(m, Conv2dSame)]
    with torch.no_grad():
        model(torch.zeros(1, 3, img_size, img_size))
    for h in hooks:
        h.remove()
    for name, size in sizes.items():
        parent_name, _, child = name.rpartition(".")
        conv = model.get_submodule(name)
        pad = pad_same_arg(size, conv.weight.shape[-2:], conv.stride, conv.dilation)
        plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                                conv.dilation, conv.groups, conv.bias is not None)
        plain.load_state_dict(conv.state_dict())
        padded = torch.nn.Sequential(torch.nn.ZeroPad2d(pad), plain)
        setattr(model.get_submodule(parent_name), child, padded)
    return model


def export_onnx(model_dir: str | Path | None, out: str | Path, opset: int = 17,
                static_padding: bool = True) -> Path:
    """ONNX graph of the network: input ``image`` (N, 3, S, S) normalised; outputs ``logit`` (N,) (a seven-class
    model: ``diagnosis_logits`` (N, 7) and the calibrated ``diagnosis_probabilities`` (N, 7)) and,
    for every timm network, ``gate_features`` (N, D) and ``cam`` (N, S/32, S/32). Read by
    :class:`melanoma.engines.onnx_engine.OnnxPredictor`. ``static_padding=False`` keeps timm's run-time padding
    (slower; kept for benchmarks/inference_speed.py's side-by-side comparison)."""
    import io

    model, cfg = load_model_folder(model_dir)
    if static_padding:
        model = static_same_padding(model.eval(), cfg.img_size)
    gated = hasattr(model, "forward_head")  # a timm model carries the gate and the CAM; small_cnn has neither
    wrapper = (WithGateFeatures(model, cfg.arch) if gated else LogitOnly(model)).eval()
    names = ["logit"]
    if cfg.diagnoses:
        wrapper = WithProbabilities(wrapper, cfg.temperature, cfg.class_bias or (0.0,) * cfg.num_outputs).eval()
        names = ["diagnosis_logits", "diagnosis_probabilities"]
    names += ["gate_features", "cam"] if gated else []
    x = torch.zeros(1, 3, cfg.img_size, cfg.img_size)
    buf = io.BytesIO()
    # The TorchScript exporter: the torch.export-based one needs onnxscript, which is not a dependency.
    torch.onnx.export(wrapper, (x,), buf, input_names=["image"], output_names=names, opset_version=opset,
                      dynamic_axes={n: {0: "batch"} for n in ["image", *names]}, dynamo=False)
    atomic_write_bytes(Path(out), buf.getvalue())
    if Path(out).parent == Path(model_dir or DEFAULT_MODEL_DIR):
        write_checksums(Path(out).parent)
    return Path(out)


def export_hub(model_dir: str | Path | None, out_dir: str | Path, metrics_file: str | Path | None = None) -> Path:
    """A model repository folder: config.json, model.safetensors, model.onnx, README.md (+ the gate and
    training log). ``config.json`` keeps this package's keys and adds timm's (``architecture``,
    ``num_classes``, ``pretrained_cfg``), so both can read it."""
    src = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, cfg = load_model_folder(src)  # validates the folder before anything is written
    for name in ("model.safetensors", "ood.safetensors", "training_log.csv"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    export_onnx(src, out / "model.onnx")
    cfg.save(out / "config.json")  # this package's keys and timm's (ModelConfig.to_dict)
    evaluations = {}
    if metrics_file:
        m = json.loads(Path(metrics_file).read_text())
        name = f"{public_name(source_name(m['data']))} ({m['split']})"
        evaluations = {name: m, **({f"{name}, clean: no near-copy in training": m["clean"]} if m.get("clean") else {}),
                       **{f"{public_name(s)} ({m['split']})": v for s, v in (m.get("per_source") or {}).items()}}
    card = (src / "README.md").read_text() if (src / "README.md").is_file() and not evaluations else \
        model_card(cfg, evaluations)
    atomic_write_text(out / "README.md", card)
    atomic_write_text(out / ".gitattributes", HUB_GITATTRIBUTES)
    write_checksums(out)
    return out


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Upload the folder to ``repo_id`` on the Hugging Face Hub (needs network and a token)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id))
