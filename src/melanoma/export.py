"""Export: ONNX, and a Hugging Face model repository folder (timm / huggingface_hub conventions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .config import ModelConfig, atomic_write_bytes, atomic_write_text
from .models import DEFAULT_MODEL_DIR, load_model_folder


def export_onnx(model_dir: str | Path | None, out: str | Path, opset: int = 17) -> Path:
    """ONNX graph of the network: input ``image`` (N, 3, S, S) normalised, output ``logit`` (N, 1)."""
    import io

    model, cfg = load_model_folder(model_dir)
    x = torch.zeros(1, 3, cfg.img_size, cfg.img_size)
    buf = io.BytesIO()
    # The TorchScript exporter: the torch.export-based one needs onnxscript, which is not a dependency.
    torch.onnx.export(model, (x,), buf, input_names=["image"], output_names=["logit"], opset_version=opset,
                      dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}}, dynamo=False)
    atomic_write_bytes(Path(out), buf.getvalue())
    return Path(out)


def model_card(cfg: ModelConfig, metrics: dict | None = None) -> str:
    """README.md for the model repository, with the Hugging Face metadata header."""
    t = cfg.training
    best, cal = t.get("best_val", {}), t.get("calibration", {})
    recipe = t.get("recipe", {})
    lines = [
        "---", "license: apache-2.0", "library_name: timm", "pipeline_tag: image-classification",
        "tags: [dermatology, dermoscopy, melanoma, medical-imaging, image-classification]", "---", "",
        "# melanoma-classifier", "",
        "Benign-vs-malignant classifier for **dermoscopic** skin-lesion images (one output logit; "
        "`p_malignant = sigmoid(logit / temperature)`, malignant when `p_malignant >= threshold`).", "",
        "> **Not a diagnosis.** A research tool, not validated clinically. Anyone worried about a skin lesion "
        "should see a dermatologist.", "",
        "## Intended use", "",
        "Research on dermoscopic images (a dermatoscope's close-up of one lesion). Not for phone photos of skin, "
        "other body images, or any clinical decision. Inputs that do not look like dermoscopic lesions are "
        "answered with \"cannot assess\" by the package's gate (`ood.safetensors`).", "",
        "## Model", "",
        f"- Architecture: timm `{cfg.arch}`, input {cfg.img_size} x {cfg.img_size} RGB, normalised with "
        f"mean {list(cfg.mean)}, std {list(cfg.std)}; initial weights: {cfg.pretrained}",
        f"- Decision threshold {cfg.threshold:.4f} and temperature {cfg.temperature:.4f}, both fitted on the "
        "validation split" + (f" (rule: {cal['threshold_rule']})" if cal else ""),
        f"- Trained on {t.get('n_train', '?')} images of `{t.get('data', '?')}`; validation {t.get('n_val', '?')} "
        f"images; recipe: {json.dumps({k: v for k, v in recipe.items() if k != 'aug'})}", "",
        "Trained with:", "", "```bash",
        f"melanoma train {t.get('data', 'DATA')} --out runs/NAME --arch {cfg.arch} --img-size {cfg.img_size} "
        f"--epochs {recipe.get('epochs', '?')} --batch-size {recipe.get('batch_size', '?')} --lr {recipe.get('lr', '?')} "
        f"--seed {recipe.get('seed', '?')}", "```", "",
        "## Results", "",
    ]
    if best:
        lines.append(f"- Validation (n = {t.get('n_val')}): ROC-AUC {best.get('val_auc', float('nan')):.3f}, "
                     f"accuracy at 0.5 {best.get('val_acc', float('nan')):.3f}")
    if cal:
        lines.append(f"- Validation at the threshold: sensitivity {cal['val_sensitivity']:.3f}, specificity "
                     f"{cal['val_specificity']:.3f}")
    if metrics:
        for name, m in (("full", metrics), ("clean", metrics.get("clean"))):
            if m:
                lines.append(
                    f"- {metrics['split']} split, {name} (n = {m['n']}: {m['n_benign']} benign, {m['n_malignant']} "
                    f"malignant): accuracy {m['accuracy']:.3f} ({m['accuracy_ci'][0]:.3f}-{m['accuracy_ci'][1]:.3f}), "
                    f"ROC-AUC {m['roc_auc']:.3f} ({m['roc_auc_ci'][0]:.3f}-{m['roc_auc_ci'][1]:.3f}), sensitivity "
                    f"{m['recall']:.3f}, specificity {m['specificity']:.3f} (95% bootstrap CIs)")
    lines += ["", "## Limitations", "",
              "- Trained on one public dataset (Kaggle \"Melanoma Cancer Dataset\", from the ISIC archive) whose "
              "malignant images often come from other sources than its benign ones (dermatoscope vignettes, "
              "rulers): the model may partly rely on such artefacts.",
              "- The skin tones of the training images were not measured; the ISIC archive is mostly light skin, so "
              "performance on darker skin is unknown.",
              "- Not for non-dermoscopic photos.", "",
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
    return out


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Upload the folder to ``repo_id`` on the Hugging Face Hub (needs network and a token)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id))
