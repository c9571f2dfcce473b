"""The Gradio web app: one image (upload, drag and drop, paste, webcam) or a batch, with the decision,
a Grad-CAM overlay and a plain-language disclaimer. ``melanoma serve`` starts it on 127.0.0.1."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import tempfile
import threading
from pathlib import Path

DISCLAIMER = ("**This is a research tool, not a diagnosis.** It can be wrong, more often on images from clinics "
              "whose pictures it was not trained on. If you are worried about a mole or a skin lesion, see a "
              "dermatologist.")
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by the server with a message
SAMPLES = Path(__file__).resolve().parent / "samples"  # package data: a wheel has the examples too


def _model_card_numbers(cfg) -> str:
    from .card import public_name

    t = cfg.training
    best, cal = t.get("best_val", {}), t.get("calibration", {})
    sources = ", ".join(public_name(s) for s in (t.get("sources") or {}))
    count = lambda key: f"{t[key]:,}" if isinstance(t.get(key), int) else "?"  # noqa: E731
    lines = [f"- Architecture: `{cfg.arch}` at {cfg.img_size} px, trained on {count('n_train')} images"
             + (f" ({sources})" if sources else "")]
    if cfg.diagnoses:
        from .diagnoses import NAMES

        lines.append("- Answers with seven diagnoses: " + ", ".join(NAMES[d] for d in cfg.diagnoses))
    if best:
        lines.append(f"- Validation (n = {count('n_val')}): ROC-AUC {best.get('val_auc', float('nan')):.3f}")
    if cal:
        rule = cal.get("threshold_rule", "").replace(">=", " >= ")  # the rule it was chosen by, as recorded
        for source in t.get("sources") or {}:  # the record names sources by id (ham10000+isic2017 pooled)
            rule = rule.replace(source, public_name(source))
        rule = rule.replace("+", " + ")
        lines.append(f"- Decision threshold {cfg.threshold:.3f}"
                     + (" on p(skin cancer) = p(melanoma) + p(basal cell carcinoma) + p(actinic keratosis / "
                        "intraepithelial carcinoma)" if cfg.diagnoses else " on p(melanoma)")
                     + ", chosen on validation data"
                     + (f" by the rule: {rule}" if rule else "") + f". Validation sensitivity "
                     f"{cal['val_sensitivity']:.3f}, specificity {cal['val_specificity']:.3f}")
    return "\n".join(lines)


BATCH_HEADERS = ["file", "status", "verdict", "p_malignant", "p_melanoma", "likeliest diagnoses", "reason"]


def verdict_text(row: dict, threshold: float) -> str:
    """The answer to one assessed image, in the words a patient reads: what to do, then the numbers behind it."""
    seven = row["p_skin_cancer"] is not None
    head = ("## See a dermatologist: this could be " + ("skin cancer" if seven else "a melanoma")
            if row["label"] == "malignant"
            else "## Looks benign")
    if seven:
        return (f"{head}\n\np(skin cancer) = **{row['p_skin_cancer']:.3f}** (melanoma {row['p_melanoma']:.3f}); "
                f"at or above {threshold:.3f} the tool says see a dermatologist. Skin cancer here means melanoma, "
                "basal cell carcinoma or actinic keratosis / intraepithelial carcinoma.")
    return (f"{head}\n\np(melanoma) = **{row['p_malignant']:.3f}**; at or above {threshold:.3f} the tool says see a "
            "dermatologist. This model knows melanoma and benign lesions only.")


# What makes the gate refuse real lesions (benchmarks/stress.py): a lesion small in a wide frame, a ruler or grid in
# the picture, blur. The advice names them, since the gate cannot yet say which one it saw.
REFUSAL_ADVICE = ("If it is a dermoscopic picture of one lesion, try again with the lesion filling most of the "
                  "frame (zoom in or crop), without a ruler or measurement grid in the picture, and in focus.")


def refusal_text(row: dict) -> str:
    """Why an image was not assessed, and what to try: the engine's sentence (framing.REASONS) where it has one."""
    from .framing import DEFAULT

    reason = row["error"].removeprefix("cannot assess: ")
    said = reason[0].upper() + reason[1:]
    if "blank" in reason:
        return f"## Cannot assess\n{said}. Please upload a dermoscopic image of a single skin lesion."
    return f"## Cannot assess\n{said}." + (f" {REFUSAL_ADVICE}" if reason == DEFAULT else "")


def label_probabilities(row: dict) -> dict[str, float]:
    """What the probability bars show: the differential of a seven-class model, melanoma or not for a one-logit one
    (whose number is p(melanoma), not p(any skin cancer))."""
    if row["diagnoses"]:
        return {d["name"]: d["p"] for d in row["diagnoses"]}
    return {"melanoma": row["p_malignant"], "not melanoma": 1 - row["p_malignant"]}


def batch_row(r: dict) -> list[str]:
    from .diagnoses import short_differential

    return [Path(r["path"]).name, r["status"], r["verdict"] or "",
            "" if r["p_malignant"] is None else f"{r['p_malignant']:.3f}",
            "" if r["p_melanoma"] is None else f"{r['p_melanoma']:.3f}", short_differential(r["diagnoses"]),
            r["error"] or ""]


def build_app(model_dir: str | Path | None = None):
    """The Gradio Blocks app for a model folder (the bundled model by default); model loaded and warmed."""
    import gradio as gr
    from PIL import Image

    from .config import atomic_write_bytes
    from .engines import explainer_for, load_predictor
    from .engines.base import draft_size
    from .engines.onnx_engine import OnnxPredictor
    from .imaging import open_rgb

    # ONNX Runtime when the folder has model.onnx: no torch import (a fast start), faster on CPU
    # (benchmarks/inference_speed.py), Grad-CAM from the graph's own output, and a thread-safe session.
    predictor = load_predictor(model_dir)
    explainer = explainer_for(predictor)
    # One single-image request uses the model at a time. PyTorch needs that: its forward hooks (gate
    # features, Grad-CAM activations) hold per-call state. ONNX Runtime does not, but each call already
    # spreads over every core: under benchmarks/app_load.py on 2 cores, serialised requests had the lower
    # p95 latency (docs/results.md). Batches on ONNX Runtime skip the lock, so that a long
    # batch never holds up a single image.
    model_lock = threading.Lock()

    warm = Image.new("RGB", (predictor.cfg.img_size,) * 2, (200, 150, 130))
    explainer.overlay(warm)  # the first click is then as quick as the tenth

    heat_dir = Path(tempfile.mkdtemp(prefix="melanoma-heatmaps-"))

    def png_file(img: Image.Image) -> str:
        # A file, not a PIL image: gradio rewrites a returned PIL image into its cache in place, so two
        # clients sending the same image at once could download a half-written heatmap (seen under
        # benchmarks/app_load.py). Files it copies in atomically; ours are written atomically too.
        buf = io.BytesIO()
        img.save(buf, "PNG")
        path = heat_dir / f"{hashlib.sha256(buf.getvalue()).hexdigest()[:20]}.png"
        if not path.exists():
            atomic_write_bytes(path, buf.getvalue())
        return str(path)

    def assess(path: str | None):
        if not path:
            raise gr.Error("Please add an image first.")
        try:
            img = open_rgb(path, draft_size=draft_size(predictor.cfg))
        except ValueError as e:  # ImageError: the one-line reason
            raise gr.Error(f"Cannot read this file: {e}") from None
        with model_lock:
            row, heatmap = explainer.assess(img, Path(path))
        if row["status"] == "error":
            raise gr.Error(f"Cannot read this file: {row['error']}")
        if row["status"] == "out_of_distribution":
            return refusal_text(row), None, None
        return verdict_text(row, predictor.threshold), label_probabilities(row), png_file(heatmap)

    def assess_batch(files: list | None):
        if not files:
            raise gr.Error("Please add one or more images.")
        paths = [Path(getattr(f, "name", f)) for f in files]
        with contextlib.nullcontext() if isinstance(predictor, OnnxPredictor) else model_lock:
            rows = predictor.predict_paths(paths)
        table = [batch_row(r) for r in rows]
        out = Path(tempfile.mkdtemp()) / "predictions.csv"
        with out.open("w", newline="") as f:
            csv.writer(f).writerows([BATCH_HEADERS, *table])
        return table, str(out)

    examples = sorted(str(p) for p in SAMPLES.glob("*/*.jpg"))[::4] if SAMPLES.is_dir() else []
    with gr.Blocks(title="melanoma-classifier") as demo:
        gr.Markdown("# melanoma-classifier\nSkin cancer or a benign look-alike? A second opinion for dermoscopic "
                    "images.")
        gr.Markdown(DISCLAIMER)
        with gr.Tab("One image"):
            with gr.Row():
                image = gr.Image(type="filepath", sources=["upload", "clipboard", "webcam"], label="Dermoscopic image")
                with gr.Column():
                    verdict = gr.Markdown(elem_id="verdict")
                    probs = gr.Label(num_top_classes=4, label="Probabilities (calibrated)")
                    heat = gr.Image(label="Where the score comes from (Grad-CAM)", elem_id="heatmap")
            button = gr.Button("Assess", variant="primary")
            button.click(assess, inputs=image, outputs=[verdict, probs, heat], api_name="predict")
            if examples:
                gr.Examples(examples, inputs=image)
        with gr.Tab("Many images"):
            files = gr.File(file_count="multiple", label="Images")
            run = gr.Button("Assess all", variant="primary")
            table = gr.Dataframe(headers=BATCH_HEADERS, label="Results")
            download = gr.File(label="CSV")
            run.click(assess_batch, inputs=files, outputs=[table, download], api_name="predict_batch")
        with gr.Accordion("About the model", open=True):
            gr.Markdown(_model_card_numbers(predictor.cfg))
    return demo


def serve(model_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, share: bool = False):
    demo = build_app(model_dir)
    demo.queue(default_concurrency_limit=2).launch(server_name=host, server_port=port, share=share,
                                                   max_file_size=MAX_FILE_SIZE, show_error=True)
