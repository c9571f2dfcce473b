"""The model card (README.md of a model folder or Hub repository), torch-free.

Its YAML header is huggingface_hub's ``ModelCardData`` (``model-index`` results for every evaluated set,
``base_model``, ``datasets``), so the Hub shows the numbers; its text names datasets by their public names,
never by where they lay on the training machine.
"""

from __future__ import annotations

import re

from .backbones import backbone
from .config import ModelConfig

# Public names (and Hub dataset ids where one exists) of the sources this project knows by folder name.
PUBLIC_NAMES = {"melanoma_cancer_dataset": "Kaggle Melanoma Cancer Dataset", "isic2017": "ISIC 2017",
                "ham10000": "HAM10000", "isic2018_test": "ISIC 2018 Task 3 test"}
HUB_DATASETS = {"ham10000": "marmal88/skin_cancer"}  # the Hub's copy of HAM10000, for the card's metadata


# The Hub refuses a plain git push of a file over 10 MB: weights and ONNX graphs go through Git LFS. (huggingface_hub's
# upload does this by itself; a `git push` of the folder needs these lines, as the Hub's own template has them.)
HUB_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
                            for pattern in ("*.onnx", "*.safetensors", "*.bin", "*.pt", "*.ckpt"))


def crop_note(cfg: ModelConfig) -> str:
    if not cfg.lesion_crop:
        return ""
    side = 1 + 2 * cfg.lesion_crop["margin"]
    return (f"; first cropped around the lesion that `segmenter.onnx` finds, a square of {side:g} times the lesion's "
            "longer side (`melanoma.lesion_crop`)")


def downscale_note(cfg: ModelConfig) -> str:
    if cfg.downscale_to is None:
        return ""
    after = " (set after training)" if "downscale_set_after" in cfg.training else ""
    return f"; first shrunk until the shorter side is at most {cfg.downscale_to} px{after}"


def timm_caveat(cfg: ModelConfig) -> str:
    """What timm's own preprocessing (resize, normalise) leaves out of this model's."""
    missing = [*(["shades-of-grey colour constancy (`melanoma.imaging.shades_of_grey`)"]
                 if cfg.color_constancy else []),
               *([f"the shrink to {cfg.downscale_to} px first"] if cfg.downscale_to else []),
               *(["crop to the lesion (`segmenter.onnx`)"] if cfg.lesion_crop else [])]
    if not missing:
        return "timm's preprocessing (resize, normalise) is all this model needs."
    return (f"timm's preprocessing resizes and normalises but does not apply this model's {' or '.join(missing)}: "
            "apply it first, or use `melanoma predict` / `Classifier`, which do, to get the probabilities above.")


def gate_note(cfg: ModelConfig) -> str:
    """What the gate was fitted on and reads, from config.json's ``training.gate`` (empty for an older folder)."""
    gate = cfg.training.get("gate") or {}
    if "blocks" not in gate:
        return ""
    sources = ", ".join(public_name(s) for s in gate.get("sources", []))
    folders = sorted((gate.get("negatives") or {}).get("picture_files") or {})
    head = (f", with a lesion / non-lesion head fitted on {gate['n_negatives']:,} non-lesion pictures "
            "(`melanoma.negatives`" + (f"; a quarter cut from {', '.join(folders)}" if folders else "") + ")"
            if gate.get("n_negatives") else "")
    return (f": a distance in the pooled features of EfficientNet stage(s) {', '.join(map(str, gate['blocks']))}"
            + (f", fitted on {sources}" if sources else "") + head)


def public_name(source: str) -> str:
    return PUBLIC_NAMES.get(source, source)


def public_command(command: str | None) -> str | None:
    """A training command with the machine's data folders replaced by ``DATA/<name>`` and a parent model folder
    (a second stage's ``--pretrained``) by ``PARENT_MODEL``."""
    if not command:
        return command
    command = re.sub(r"\S*/(melanoma_cancer_dataset|isic2017|ham10000|isic2018_test)\b", r"DATA/\1", command)
    return re.sub(r"--pretrained (?!imagenet\b|none\b)\S+", "--pretrained PARENT_MODEL", command)


def _ci(m: dict, key: str, digits: int = 3) -> str:
    v, ci = m.get(key), m.get(f"{key}_ci")
    if v is None:
        return "-"
    return f"{v:.{digits}f}" + (f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else "")


def results_table(evaluations: dict[str, dict]) -> list[str]:
    """Markdown rows: per evaluated set, n, ROC-AUC, sensitivity and specificity at the threshold, refusals."""
    rows = ["| data (split) | n (positives) | ROC-AUC | sensitivity | specificity | refused by the gate |",
            "| --- | --- | --- | --- | --- | --- |"]
    for title, m in evaluations.items():
        refused = f"{100 * m['refused']:.1f}%" if m.get("refused") is not None else "-"
        rows.append(f"| {title} | {m['n']} ({m['n_malignant']}) | {_ci(m, 'roc_auc')} | {_ci(m, 'recall')} | "
                    f"{_ci(m, 'specificity')} | {refused} |")
    return rows + ["", "95% percentile-bootstrap intervals (1,000 resamples of images). Sensitivity and specificity "
                   "at the model's threshold, chosen on validation data; no test or external image chose anything."]


def diagnosis_evaluations(table: dict) -> dict[str, dict]:
    """``benchmarks/diagnoses.py``'s output as the card's evaluations (:func:`results_table` rows): the external set
    as skin cancer against benign lesions (the verdict) and as melanoma against the rest (p(melanoma)), the Kaggle
    clean test as melanoma against benign, and each source's validation images."""
    from .diagnoses import CANCERS

    def by_dx(d: dict, title: str) -> dict[str, dict]:
        cancers = sum(n for dx, n in d["n_per_diagnosis"].items() if dx in CANCERS)
        out = {f"{title}: skin cancer vs benign lesions": {
            "n": d["n"], "n_malignant": cancers, "refused": d.get("refused"),
            **{new: d[old] for old, new in (("cancer_vs_benign_roc_auc", "roc_auc"), ("cancer_sensitivity", "recall"),
                                            ("benign_specificity", "specificity")) if old in d},
            **{f"{new}_ci": d[f"{old}_ci"] for old, new in (
                ("cancer_vs_benign_roc_auc", "roc_auc"), ("cancer_sensitivity", "recall"),
                ("benign_specificity", "specificity")) if f"{old}_ci" in d}}}
        if d["n_per_diagnosis"].get("mel"):
            out[f"{title}: melanoma vs rest, p(melanoma); melanomas flagged"] = {
                "n": d["n"], "n_malignant": d["n_per_diagnosis"]["mel"], "roc_auc": d["melanoma_vs_rest_roc_auc"],
                "roc_auc_ci": d.get("melanoma_vs_rest_roc_auc_ci"), "recall": d.get("flagged_mel"),
                "recall_ci": d.get("flagged_mel_ci")}
        return out

    def melanoma(d: dict) -> dict:
        return {"n": d["n"], "n_malignant": d["n_melanoma"], "roc_auc": d["melanoma_roc_auc"],
                "roc_auc_ci": d["melanoma_roc_auc_ci"], "refused": d["refused"],
                **{k: d[k] for k in ("recall", "recall_ci", "specificity", "specificity_ci")}}

    out = by_dx(table["external"], "ISIC 2018 test (external)")
    out["Kaggle clean test: melanoma vs benign"] = melanoma(table["kaggle_clean"])
    for source, d in (table.get("validation") or {}).items():
        title = f"{public_name(source)} (held-out validation)"
        out |= by_dx(d, title) if "n_per_diagnosis" in d else {f"{title}: melanoma vs benign": melanoma(d)}
    return out


def diagnosis_table(d: dict) -> list[str]:
    """Markdown rows per diagnosis of one set (:func:`melanoma.evaluate.diagnosis_metrics`): n, the share the verdict
    sends to a dermatologist, the recall of the most probable diagnosis and its one-vs-rest ROC-AUC."""
    from .diagnoses import NAMES

    rows = ["| diagnosis | n | sent to a dermatologist | top diagnosis right (recall) | ROC-AUC, one vs rest |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {NAMES[dx]} | {n} | {_ci(d, f'flagged_{dx}', 2)} | {_ci(d, f'recall_{dx}', 2)} | "
             f"{_ci(d, f'roc_auc_{dx}')} |" for dx, n in d["n_per_diagnosis"].items()]
    if "balanced_accuracy" in d:
        rows += ["", f"Balanced multi-class accuracy (the mean of the seven recalls; the ISIC 2018 ranking metric): "
                 f"{_ci(d, 'balanced_accuracy')}" + (f"; of the top diagnosis at equal priors (before the "
                 f"calibration's bias): {_ci(d, 'balanced_accuracy_equal_priors')}"
                 if "balanced_accuracy_equal_priors" in d else "") + "."]
    return rows


STRESS_NAMES = {"zoom_out": "zoomed out (lesion 15-35% of the frame)", "grid": "printed grid beside it",
                "ruler": "ruler along an edge", "film": "film-scan look", "glare": "glare", "bubbles": "bubbles",
                "hair": "hair", "field": "round dermatoscope field", "rotation": "rotated",
                "jpeg": "JPEG quality 25-50", "blur": "out of focus", "large": "3,200 px photo"}


def stress_table(stress: dict) -> list[str]:
    """The site-shift stress suite (``benchmarks/stress.py``'s JSON) as the card's section."""
    u = stress["untransformed"]
    rows = ["## Pictures taken another way (stress suite)", "",
            f"The external ISIC 2018 test ({stress['n']} images) seen as other clinics' pictures look "
            f"(`melanoma.views`), each paired with the untransformed images (refused {100 * u['refused']:.1f}%, "
            f"melanoma-vs-rest ROC-AUC {u['melanoma_roc_auc']:.3f}). The ranking and the specificity count every "
            "picture, refused or not: what the network says without its gate.", "",
            "| pictures | refused as \"cannot assess\" | melanoma vs rest ROC-AUC (change, 95% CI) | benign "
            "specificity |", "| --- | --- | --- | --- |"]
    for family, r in stress["families"].items():
        m = r["melanoma_roc_auc"]
        rows.append(f"| {STRESS_NAMES.get(family, family)} | {100 * r['refused']:.1f}% | {m['b']:.3f} "
                    f"({m['difference']:+.3f}, {m['difference_ci'][0]:+.3f} to {m['difference_ci'][1]:+.3f}) | "
                    f"{r['specificity']['b']:.3f} |")
    return rows


def _card_data(cfg: ModelConfig, evaluations: dict[str, dict]):
    from huggingface_hub import EvalResult, ModelCardData

    sources = list((cfg.training.get("sources") or {}).keys())
    results = [EvalResult(task_type="image-classification", dataset_type=title.split(" (")[0].lower().replace(" ", "_"),
                          dataset_name=title, metric_type=metric, metric_value=round(float(m[key]), 4))
               for title, m in evaluations.items()
               for metric, key in (("roc_auc", "roc_auc"), ("recall", "recall"), ("specificity", "specificity"))
               if m.get(key) is not None]
    return ModelCardData(
        # the weights learnt from CC BY-NC 4.0 images (HAM10000, ISIC): the code's Apache-2.0 does not cover them
        license="cc-by-nc-4.0", library_name="timm", pipeline_tag="image-classification",
        tags=["dermatology", "dermoscopy", "melanoma", "medical-imaging", "image-classification", "onnx"],
        base_model=backbone(cfg.arch).hub_base(cfg.arch),
        datasets=[HUB_DATASETS[s] for s in sources if s in HUB_DATASETS] or None,
        model_name="melanoma-classifier", eval_results=results or None)


SEVEN_CLASS_INTRO = (
    "Differential diagnosis for **dermoscopic** skin-lesion images: seven diagnoses (melanoma, melanocytic nevus, "
    "basal cell carcinoma, actinic keratosis / intraepithelial carcinoma, benign keratosis, dermatofibroma, vascular "
    "lesion), one logit each; calibrated probabilities `softmax(logits / temperature + class_bias)`. The verdict, "
    "\"see a dermatologist\", is `p(skin cancer) = p(melanoma) + p(basal cell carcinoma) + p(actinic keratosis / "
    "intraepithelial carcinoma) >= threshold`: a benign look-alike of melanoma (a keratosis, a dermatofibroma) should "
    "not send a patient on, and a basal cell carcinoma should.")


def model_card(cfg: ModelConfig, evaluations: dict[str, dict] | None = None, limitations: list[str] | None = None,
               timm_snippet: bool = True, by_diagnosis: dict | None = None, stress: dict | None = None) -> str:
    """README.md for a model folder or repository. ``evaluations``: {set title: metrics (n, n_malignant, roc_auc,
    recall, specificity, each with ``_ci``; ``refused`` optional)}; ``limitations``: bullets found by those
    evaluations, first (a given bullet that opens like a default one replaces it); ``by_diagnosis``: {set title:
    :func:`melanoma.evaluate.diagnosis_metrics`}, a table per diagnosis each; ``stress``: ``benchmarks/stress.py``'s
    JSON, a section of its own."""
    t = cfg.training
    evaluations = dict(evaluations or {})
    best, cal, recipe = t.get("best_val", {}), t.get("calibration", {}), t.get("recipe", {})
    sources = t.get("sources") or {}
    command = public_command(t.get("command")) or (f"melanoma train DATA --set arch={cfg.arch} --set "
                                                   f"img_size={cfg.img_size} --set epochs={recipe.get('epochs', '?')}")
    lines = ["---", _card_data(cfg, evaluations).to_yaml(), "---", "",
             "# melanoma-classifier", "",
             (SEVEN_CLASS_INTRO if cfg.diagnoses else
              "Benign-vs-malignant classifier for **dermoscopic** skin-lesion images (one output logit; "
              "`p_malignant = sigmoid(logit / temperature)`, malignant when `p_malignant >= threshold`)."), "",
             "> **Not a diagnosis.** A research tool, not validated clinically. It must not be used to decide about "
             "anyone's care. Anyone worried about a skin lesion should see a dermatologist.", "",
             "## Intended use", "",
             "Research on dermoscopic images (a dermatoscope's close-up of one lesion): benchmarking, teaching, "
             "second-reader experiments. Not for phone photos of skin, other body images, or any clinical decision. "
             "Inputs that do not look like dermoscopic lesions are answered with \"cannot assess\" by the "
             "package's gate (`ood.safetensors`)" + gate_note(cfg) + ".", "",
             "## Model", "",
             f"- Architecture: timm `{cfg.arch}`, input {cfg.img_size} x {cfg.img_size} RGB (whole image resized, "
             f"bilinear{crop_note(cfg)}{downscale_note(cfg)}), colour constancy: {cfg.color_constancy or 'none'}, "
             f"normalised with mean {list(cfg.mean)}, "
             f"std {list(cfg.std)}; initial weights: {cfg.pretrained}",
             f"- Decision threshold {cfg.threshold:.4f}" + (" on p(skin cancer)" if cfg.diagnoses else "")
             + f" and temperature {cfg.temperature:.4f}" + (" with a bias per diagnosis" if cfg.diagnoses else "")
             + ", all fitted on the validation images" + (f" (rule: {cal['threshold_rule']})" if cal else ""),
             "- Files: `model.safetensors` (PyTorch/timm), `model.onnx` (ONNX Runtime; outputs "
             + ("`diagnosis_logits` and the calibrated `diagnosis_probabilities`" if cfg.diagnoses else "`logit`")
             + ", the "
             "gate's `gate_features` and the Grad-CAM map `cam`), `config.json`, `ood.safetensors`, "
             + ("`segmenter.onnx` (the lesion segmenter), " if cfg.lesion_crop else "")
             + "`SHA256SUMS` (checked at load)", ""]
    lines += ["## Training data", ""]
    if sources:
        lines += ["| source | trained on (melanomas) | validated on (melanomas) | left out: copies of held-out "
                  "images |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {public_name(s)} | {v['n_train']} ({v['n_train_malignant']}) | {v['n_val']} "
                  f"({v['n_val_malignant']}) | {v['n_left_out_copies_of_held_out']} |" for s, v in sources.items()]
        other = recipe.get("other_dx", "exclude")
        lines += ["", "One near-duplicate graph over every image of every source (thumbnail correlation, plus "
                  "HAM10000's lesion ids): no image with a copy among any source's validation or test images was "
                  "trained on. "
                  + ("Each image was trained on with the labels its data has (below). " if cfg.diagnoses else
                     "Melanoma is the positive class; HAM10000's nevi, benign keratoses, dermatofibromas "
                     "and vascular lesions are benign; its basal cell carcinomas and actinic keratoses were "
                     + ("left out. " if other == "exclude" else f"counted as {other}. "))
                  + "Validation: each source's "
                  "own split (ISIC 2017) or 10% of its images, drawn by whole duplicate groups.", ""]
    else:
        lines += [f"{t.get('n_train', '?')} training and {t.get('n_val', '?')} validation images.", ""]
    if cfg.diagnoses and t.get("train_diagnoses"):
        from .diagnoses import NAMES

        counts = t["train_diagnoses"]
        named = ", ".join(f"{counts[d]:,} {NAMES[d]}" for d in cfg.diagnoses if counts.get(d))
        kind = ("melanoma alone" if recipe.get("malignant_means") == "melanoma"
                else "one of melanoma, basal cell carcinoma, actinic keratosis / intraepithelial carcinoma")
        lines += [f"Diagnoses trained on: {named}; and {counts.get('partial', 0):,} images labelled only benign "
                  f"(one of the four benign diagnoses) or malignant ({kind}), trained on as the likelihood of that "
                  "set. Each source's diagnosis priors were added to the logits in the loss (logit adjustment), so "
                  "rare diagnoses and the archives' different mixes are learnt at equal priors; calibration restores "
                  "the validation images' mix.", ""]
    elif t.get("train_diagnoses"):
        named = ", ".join(f"{n} {d}" for d, n in t["train_diagnoses"].items() if n)
        lines += [f"A second head on the pooled features, used in training only (weight "
                  f"{recipe.get('diagnosis_loss')}), also learnt the diagnosis of the training images whose data "
                  f"names one ({named}); the model keeps the one melanoma logit.", ""]
    lines += ["Trained with:", "", "```bash", command, "```", ""]
    timings = t.get("timings_s", {})
    if timings:
        lines += [f"Wall time on {t.get('machine', 'the training machine')}: {timings['total'] / 60:.1f} min "
                  f"(fitting {timings['fit'] / 60:.1f} min at {timings.get('train_images_per_s_incl_validation')} "
                  "training images/s, validation included).", ""]
    lines += ["## Results", ""]
    if best:
        auc = best.get("val_auc", float("nan"))
        lines += [f"Validation (n = {t.get('n_val')}, all sources pooled): ROC-AUC {auc:.3f}"
                  + (f"; at the threshold sensitivity {cal['val_sensitivity']:.3f}, specificity "
                     f"{cal['val_specificity']:.3f}" if cal else "") + ".", ""]
    if evaluations:
        lines += results_table(evaluations)
    for title, d in (by_diagnosis or {}).items():
        lines += ["", f"By diagnosis, {title} (at the threshold; 95% intervals):", "", *diagnosis_table(d)]
    defaults = [
        "Trained on public archives (mostly fair skin; Europe, Australia, the USA). Expect lower sensitivity at "
        "clinics and on darker skin tones, which these archives rarely show; a new site should check the threshold on "
        "labelled images of its own.",
        "The Kaggle set's classes partly come from different sources (dermatoscope vignettes, black frames, "
        "rulers): a model can lean on such artefacts. HAM10000 (both classes from the same devices), vignette "
        "augmentation and colour constancy reduce, but do not remove, that risk.",
        *([] if cfg.diagnoses else
          ["Basal cell carcinoma and actinic keratosis were not trained on: the model says nothing reliable about "
           "them."]),
        "Not for non-dermoscopic (clinical or phone) photos; the gate rejects many but not all of them.",
        f"{cfg.img_size} px input: fine structure of larger dermoscopic images is lost in the resize."]
    given = list(limitations or [])
    bullets = given + [d for d in defaults if not any(g[:24] == d[:24] for g in given)]
    if stress:
        lines += ["", *stress_table(stress)]
    lines += ["", "## Limitations", "", *[f"- {note}" for note in bullets], "",
              "## Use", "", "```bash", "pip install melanoma-classifier",
              "melanoma predict lesion.jpg --model path/to/this/folder", "```", "",
              "```python", "from melanoma import Classifier", "",
              "clf = Classifier.from_pretrained(\"path/to/this/folder\")",
              "clf.assess([\"lesion.jpg\"])  # rows: status, verdict, p_malignant, p_melanoma, p_skin_cancer, "
              "diagnoses, label, error, ood_score", "clf.predict_proba([\"lesion.jpg\"])  # (n, len(clf.classes_))",
              "```", ""]
    if timm_snippet:
        lines += ["With timm alone (this folder's `config.json` carries timm's `architecture` and `pretrained_cfg`):",
                  "", "```python", "import timm, torch", "",
                  "net = timm.create_model(\"local-dir:path/to/this/folder\", pretrained=True).eval()",
                  "logit = net(x)  # x: (N, 3, S, S), normalised with the mean/std above", "```", "",
                  timm_caveat(cfg), ""]
    return "\n".join(lines)
