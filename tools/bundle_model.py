"""Make a trained model folder the package's bundled model (src/melanoma/weights/default).

    python tools/bundle_model.py RUN/model --test-metrics runs/EVAL/metrics.json [--isic-metrics runs/ISIC/metrics.json] \
        [--limitation TEXT ...]

Copies the weights, config, gate, training log and recipe; exports model.onnx; writes the model card
(README.md) with the given evaluations; writes SHA256SUMS last, so the folder verifies at load.
The evaluations must have been run on RUN/model (checked against the weights' checksum).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from melanoma.config import DEFAULT_MODEL_DIR, ModelConfig, sha256_file, atomic_write_text, write_checksums
from melanoma.export import export_onnx, model_card

FILES = ("model.safetensors", "config.json", "ood.safetensors", "training_log.csv", "recipe.yaml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--test-metrics", type=Path, required=True)
    ap.add_argument("--isic-metrics", type=Path)
    ap.add_argument("--dest", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--limitation", action="append", default=[],
                    help="A bullet for the card's Limitations section (repeatable): what the evaluations found.")
    args = ap.parse_args()

    test = json.loads(args.test_metrics.read_text())
    evaluations = {}
    if args.isic_metrics:
        isic = json.loads(args.isic_metrics.read_text())
        name = f"ISIC 2017 {'+'.join(isic.get('splits', ['train', 'val']))}"
        evaluations = {f"{name}, all (its melanomas are nearly all copies of Kaggle ones)": isic["all"],
                       f"{name}, benign images with no copy in Kaggle (external)": isic["not_in_kaggle_benign"]}
    weights_hash = sha256_file(args.model / "model.safetensors")
    if test.get("model_sha256") != weights_hash:
        raise SystemExit(f"{args.test_metrics} was not computed on {args.model}/model.safetensors")

    tmp = args.dest.with_name(args.dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        if (args.model / name).is_file():
            shutil.copyfile(args.model / name, tmp / name)
    assert sha256_file(tmp / "model.safetensors") == weights_hash
    export_onnx(tmp, tmp / "model.onnx")
    cfg = ModelConfig.load(tmp / "config.json")
    atomic_write_text(tmp / "README.md", model_card(cfg, test, evaluations, args.limitation))
    write_checksums(tmp)
    old = args.dest.with_name(args.dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if args.dest.exists():
        args.dest.rename(old)
    tmp.rename(args.dest)  # the swap is two renames: never a half-written bundled model
    shutil.rmtree(old, ignore_errors=True)
    total = sum(p.stat().st_size for p in args.dest.iterdir())
    print(f"bundled into {args.dest}: {', '.join(sorted(p.name for p in args.dest.iterdir()))}; {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
