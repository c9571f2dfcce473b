"""Export: ONNX, and a Hugging Face model repository folder (timm / huggingface_hub conventions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .config import ModelConfig, atomic_write_bytes, atomic_write_text, write_checksums
from .models import DEFAULT_MODEL_DIR, load_model_folder
from .ood import GATE_BLOCKS


class WithGateFeatures(torch.nn.Module):
    """An EfficientNet that also returns the "cannot assess" gate's features (the spatial means of the
    GATE_BLOCKS, concatenated, as :class:`melanoma.predict.Predictor` hooks them) and the class
    activation map ``cam`` = sum_c w_c A_c of the last conv stage A (N, C, h, w) and the classifier's
    weights w: with a global-average-pool + linear head this is Grad-CAM before its ReLU (see explain.py),
    so ONNX Runtime draws heatmaps without gradients. Its spatial mean plus the bias is the logit."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        net, stages = self.net, []
        x = net.bn1(net.conv_stem(x))
        for i, block in enumerate(net.blocks):
            x = block(x)
            if i in GATE_BLOCKS:
                stages.append(x.mean(dim=(2, 3)))
        maps = net.bn2(net.conv_head(x))
        cam = torch.einsum("nchw,c->nhw", maps, net.get_classifier().weight[0])
        return net.forward_head(maps).squeeze(1), torch.cat(stages, 1), cam


class LogitOnly(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


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
    """ONNX graph of the network: input ``image`` (N, 3, S, S) normalised; outputs ``logit`` (N,) and,
    for EfficientNets, ``gate_features`` (N, D) and ``cam`` (N, S/32, S/32). Read by
    :class:`melanoma.inference.OnnxPredictor`. ``static_padding=False`` keeps timm's run-time padding
    (slower; kept for benchmarks/inference_speed.py's side-by-side comparison)."""
    import io

    model, cfg = load_model_folder(model_dir)
    if static_padding:
        model = static_same_padding(model.eval(), cfg.img_size)
    gated = len(getattr(model, "blocks", [])) > max(GATE_BLOCKS)
    wrapper = (WithGateFeatures if gated else LogitOnly)(model).eval()
    names = ["logit", "gate_features", "cam"] if gated else ["logit"]
    x = torch.zeros(1, 3, cfg.img_size, cfg.img_size)
    buf = io.BytesIO()
    # The TorchScript exporter: the torch.export-based one needs onnxscript, which is not a dependency.
    torch.onnx.export(wrapper, (x,), buf, input_names=["image"], output_names=names, opset_version=opset,
                      dynamic_axes={n: {0: "batch"} for n in ["image", *names]}, dynamo=False)
    atomic_write_bytes(Path(out), buf.getvalue())
    if Path(out).parent == Path(model_dir or DEFAULT_MODEL_DIR):
        write_checksums(Path(out).parent)
    return Path(out)


def _ci(m: dict, key: str) -> str:
    if m.get(key) is None:  # e.g. ROC-AUC or sensitivity of a one-class row
        return "-"
    lo, hi = m.get(f"{key}_ci") or (None, None)
    return f"{m[key]:.3f} ({lo:.3f}-{hi:.3f})" if lo is not None else f"{m[key]:.3f}"


def results_table(evaluations: dict[str, dict]) -> list[str]:
    """Markdown rows for {title: metrics (evaluate's metrics.json or its ``clean`` part)}."""
    rows = ["| data (split) | n (benign / malignant) | accuracy | ROC-AUC | sensitivity | specificity | ECE |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for title, m in evaluations.items():
        rows.append(f"| {title} | {m['n']} ({m['n_benign']} / {m['n_malignant']}) | {_ci(m, 'accuracy')} | "
                    f"{_ci(m, 'roc_auc')} | {_ci(m, 'recall')} | {_ci(m, 'specificity')} | {_ci(m, 'ece')} |")
    return rows + ["", "95% percentile-bootstrap intervals (1,000 resamples of images). Sensitivity and "
                   "specificity at the model's threshold, chosen on validation data."]


def model_card(cfg: ModelConfig, metrics: dict | None = None, evaluations: dict[str, dict] | None = None,
               limitations: list[str] | None = None) -> str:
    """README.md for a model folder or repository, with the Hugging Face metadata header.

    ``metrics``: one evaluation's metrics.json (its ``clean`` part becomes a second row);
    ``evaluations``: more rows, {title: metrics}, e.g. an external dataset; ``limitations``: more
    bullets for the Limitations section, first (what this model's own evaluations found).
    """
    t = cfg.training
    best, cal, recipe = t.get("best_val", {}), t.get("calibration", {}), t.get("recipe", {})
    rows = dict(evaluations or {})
    if metrics:
        rows = {f"{metrics['data']} ({metrics['split']})": metrics,
                **({f"{metrics['data']} ({metrics['split']}), clean: no near-duplicate in train":
                    metrics["clean"]} if metrics.get("clean") else {}), **rows}
    command = t.get("command") or (f"melanoma train {t.get('data', 'DATA')} --arch {cfg.arch} --img-size "
                                   f"{cfg.img_size} --epochs {recipe.get('epochs', '?')} --lr {recipe.get('lr', '?')} "
                                   f"--seed {recipe.get('seed', '?')}")
    timings = t.get("timings_s", {})
    extra = t.get("extra_train", {})
    n_primary = t["n_train"] - sum(v["n_used"] for v in extra.values()) if "n_train" in t else "?"
    lines = [
        "---", "license: apache-2.0", "library_name: timm", "pipeline_tag: image-classification",
        "tags: [dermatology, dermoscopy, melanoma, medical-imaging, image-classification]", "---", "",
        "# melanoma-classifier", "",
        "Benign-vs-malignant classifier for **dermoscopic** skin-lesion images (one output logit; "
        "`p_malignant = sigmoid(logit / temperature)`, malignant when `p_malignant >= threshold`).", "",
        "> **Not a diagnosis.** A research tool, not validated clinically. It must not be used to decide about "
        "anyone's care. Anyone worried about a skin lesion should see a dermatologist.", "",
        "## Intended use", "",
        "Research on dermoscopic images (a dermatoscope's close-up of one lesion): benchmarking, teaching, "
        "second-reader experiments. Not for phone photos of skin, other body images, or any clinical decision. "
        "Inputs that do not look like dermoscopic lesions are answered with \"cannot assess\" by the "
        "package's gate (`ood.safetensors`).", "",
        "## Model", "",
        f"- Architecture: timm `{cfg.arch}`, input {cfg.img_size} x {cfg.img_size} RGB (whole image resized, "
        f"bilinear), colour constancy: {cfg.color_constancy or 'none'}, normalised with mean {list(cfg.mean)}, "
        f"std {list(cfg.std)}; initial weights: {cfg.pretrained}",
        f"- Decision threshold {cfg.threshold:.4f} and temperature {cfg.temperature:.4f}, both fitted on the "
        "validation split" + (f" (rule: {cal['threshold_rule']})" if cal else ""),
        "- Files: `model.safetensors` (PyTorch/timm), `model.onnx` (ONNX Runtime; outputs `logit`, the "
        "gate's `gate_features` and the Grad-CAM map `cam`), `config.json`, `ood.safetensors`, "
        "`SHA256SUMS` (checked at load)", "",
        "## Training data", "",
        f"{n_primary} training and {t.get('n_val', '?')} validation images of `{t.get('data', '?')}` "
        "(Kaggle \"Melanoma Cancer Dataset\", 224 x 224 JPEGs drawn from the ISIC archive). The validation "
        "split keeps each near-duplicate cluster on one side (`melanoma audit`), so validation numbers are not "
        "inflated by copies. The test split was used for nothing but the numbers below.", "",
        *[f"Also trained on {v['n_used']} images of the train split of `{path}`, leaving out its "
          f"{v['n_left_out_copies_of_val_or_test']} near-copies of Kaggle validation or test images (so that "
          "each class comes from more than one source; validation stays the Kaggle split).\n"
          for path, v in extra.items()],
        "Trained with:", "", "```bash", command, "```", "",
    ]
    if timings:
        lines += [f"Wall time on {t.get('machine', 'the training machine')}: {timings['total'] / 60:.1f} min "
                  f"(fitting {timings['fit'] / 60:.1f} min at {timings.get('train_images_per_s_incl_validation')} "
                  "training images/s, validation included).", ""]
    lines += ["## Results", ""]
    if best:
        lines.append(f"- Validation (n = {t.get('n_val')}): ROC-AUC {best.get('val_auc', float('nan')):.3f}"
                     + (f"; at the threshold sensitivity {cal['val_sensitivity']:.3f}, specificity "
                        f"{cal['val_specificity']:.3f}" if cal else ""))
        lines.append("")
    if rows:
        lines += results_table(rows)
    defaults = [
        f"Trained {'mostly ' if t.get('extra_train') else ''}on one public dataset whose malignant images often come "
        "from other sources than its benign ones (dermatoscope vignettes, black frames, rulers): the model may partly "
        "rely on such artefacts. Vignette augmentation and colour constancy reduce, but do not remove, that risk.",
        "651 of the 1,000 malignant test images have a near-copy in the training split, so the full-test "
        "numbers are optimistic; the clean rows leave those out. Nearly all ISIC 2017 melanomas are also in "
        "the Kaggle set, so ISIC 2017 is no independent check of melanoma sensitivity.",
        "Skin tone was not recorded: the ISIC archive is mostly light skin, and performance on darker skin is unknown.",
        "Not for non-dermoscopic (clinical or phone) photos; the gate rejects many but not all of them.",
        f"{cfg.img_size} px input: fine structure of larger dermoscopic images is lost in the resize."]
    given = list(limitations or [])
    # a given bullet that opens like a default one is the caller's version of it, and replaces it
    bullets = given + [d for d in defaults if not any(g[:24] == d[:24] for g in given)]
    lines += ["", "## Limitations", "", *[f"- {note}" for note in bullets], "",
              "## Use", "", "```bash", "pip install melanoma-classifier",
              "melanoma predict lesion.jpg --model path/to/this/folder", "```", ""]
    return "\n".join(lines)


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
    config = {**cfg.to_dict(), "architecture": cfg.arch, "num_classes": 1, "label_names": list(cfg.class_names),
              "pretrained_cfg": {"input_size": [3, cfg.img_size, cfg.img_size], "interpolation": "bilinear",
                                 "mean": list(cfg.mean), "std": list(cfg.std), "crop_pct": 1.0,
                                 "num_classes": 1}}
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    metrics = json.loads(Path(metrics_file).read_text()) if metrics_file else None
    atomic_write_text(out / "README.md", model_card(cfg, metrics))
    write_checksums(out)
    return out


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Upload the folder to ``repo_id`` on the Hugging Face Hub (needs network and a token)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id))
