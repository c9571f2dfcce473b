"""Make a trained model folder the package's bundled model (src/melanoma/weights/default).

    python tools/bundle_model.py RUN/model --table docs/results/NAME.json --recipe RECIPE [--limitation TEXT ...]

Copies the weights, config, gate, training log and lesion segmenter (a cropping model's); writes the recipe the run
trained with (RECIPE, the file given to ``melanoma train --recipe``, with the recorded command-line options applied)
into the folder, whole, checked to load as the recorded recipe; points recipes/flagship.yaml at RECIPE (bundling
into the package needs RECIPE to reproduce the run by itself: options given on the command line belong in the file);
exports model.onnx; writes the model card (README.md) with the evaluations of ``benchmarks/sources_table.py`` (per
source, Kaggle test, external) or, for a seven-class model, of ``benchmarks/diagnoses.py`` (by diagnosis); writes
SHA256SUMS last, so the folder verifies at load. The table must have been measured on RUN/model (checked against the
weights' checksum).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from melanoma.card import diagnosis_evaluations, model_card
from melanoma.config import DEFAULT_MODEL_DIR, ModelConfig, atomic_write_text, sha256_file, write_checksums
from melanoma.nn.export import export_onnx
from melanoma.recipe import AugConfig, TrainConfig, as_named, load_recipe, resolved_recipe_text

FILES = ("model.safetensors", "config.json", "ood.safetensors", "training_log.csv", "segmenter.onnx")  # where present
FLAGSHIP = Path(__file__).resolve().parents[1] / "recipes" / "flagship.yaml"


def recorded_recipe(cfg: ModelConfig) -> TrainConfig:
    recorded = dict(cfg.training["recipe"])
    return TrainConfig(**{**recorded, "aug": AugConfig(**recorded["aug"])})


def same_run(a: TrainConfig, b: TrainConfig) -> bool:
    """The same recipe, paths compared as a recipe names them (melanoma.recipe.as_named)."""
    return as_named(a) == as_named(b)


def model_recipe_text(recipe: Path, cfg: ModelConfig) -> str:
    """The model folder's recipe.yaml: what the run recorded, whole, with how to run it."""
    trained, as_file = recorded_recipe(cfg), load_recipe(recipe)
    if as_named(trained).gate_negative_pictures == as_named(as_file).gate_negative_pictures:
        trained = replace(trained, gate_negative_pictures=as_file.gate_negative_pictures)  # beside the data, not here
    body = resolved_recipe_text(recipe, trained).split("\n", 1)[1]  # its own first line names the file
    return ("# The bundled model's recipe, whole: `melanoma train --recipe recipes/flagship.yaml "
            "../shared/data/melanoma_cancer_dataset --out runs/flagship`\n"
            f"# = {recipe.as_posix()} with its bases merged in.\n" + body)


def flagship_text(recipe: Path) -> str:
    """recipes/flagship.yaml: a pointer to the recipe of the experiment that shipped."""
    return ("# The bundled model's recipe: `melanoma train --recipe recipes/flagship.yaml ../shared/data/"
            "melanoma_cancer_dataset\n# --out runs/flagship` trains it again (seed and every field in the file it "
            "names). It names the experiment that\n# shipped; a new experiment starts from that experiment's recipe "
            "(`base: ../NNN-name/recipe.yaml`), never from this\n# pointer, so its meaning stays when the bundled "
            "model changes.\n"
            f"base: {Path(os.path.relpath(recipe.resolve(), FLAGSHIP.parent)).as_posix()}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--table", type=Path, required=True,
                    help="benchmarks/sources_table.py's (one logit) or diagnoses.py's (seven classes) JSON")
    ap.add_argument("--recipe", type=Path, required=True, help="the recipe file the run was trained from")
    ap.add_argument("--dest", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--stress", type=Path, help="benchmarks/stress.py's JSON for this model: the card's stress table")
    ap.add_argument("--limitation", action="append", default=[],
                    help="A bullet for the card's Limitations section (repeatable): what the evaluations found.")
    args = ap.parse_args()

    table = json.loads(args.table.read_text())
    weights_hash = sha256_file(args.model / "model.safetensors")
    if table.get("model_sha256") != weights_hash:
        raise SystemExit(f"{args.table} was not computed on {args.model}/model.safetensors")

    tmp = args.dest.with_name(args.dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        if (args.model / name).is_file():
            shutil.copyfile(args.model / name, tmp / name)
    assert sha256_file(tmp / "model.safetensors") == weights_hash
    cfg = ModelConfig.load(tmp / "config.json")
    atomic_write_text(tmp / "recipe.yaml", model_recipe_text(args.recipe, cfg))
    if not same_run(load_recipe(tmp / "recipe.yaml"), recorded_recipe(cfg)):
        raise SystemExit(f"{args.recipe} with the recorded options is not the recipe {args.model} recorded")
    if args.dest == DEFAULT_MODEL_DIR and not same_run(load_recipe(args.recipe), recorded_recipe(cfg)):
        raise SystemExit(f"{args.model} was trained with command-line options {args.recipe} does not hold: write them "
                         "into the recipe, so that recipes/flagship.yaml reproduces the bundled model")
    export_onnx(tmp, tmp / "model.onnx")
    stress = json.loads(args.stress.read_text()) if args.stress else None
    if "sets" in table:  # benchmarks/sources_table.py's, for a one-logit model
        card = model_card(cfg, table["sets"], args.limitation, stress=stress)
    else:  # benchmarks/diagnoses.py's
        card = model_card(cfg, diagnosis_evaluations(table), args.limitation, stress=stress,
                          by_diagnosis={"ISIC 2018 test (external, other clinics)": table["external"]})
    atomic_write_text(tmp / "README.md", card)
    write_checksums(tmp)
    old = args.dest.with_name(args.dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if args.dest.exists():
        args.dest.rename(old)
    tmp.rename(args.dest)  # the swap is two renames: never a half-written bundled model
    shutil.rmtree(old, ignore_errors=True)
    if args.dest == DEFAULT_MODEL_DIR:
        atomic_write_text(FLAGSHIP, flagship_text(args.recipe))
    total = sum(p.stat().st_size for p in args.dest.iterdir())
    names = ", ".join(sorted(p.name for p in args.dest.iterdir()))
    print(f"bundled into {args.dest}: {names}; {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
