"""Make a trained model folder the package's bundled model (src/melanoma/weights/default).

    python tools/bundle_model.py RUN/model --table docs/results/NAME.json [--limitation TEXT ...]

Copies the weights, config, gate, training log and recipe; exports model.onnx; writes the model card
(README.md) with the evaluations of ``benchmarks/sources_table.py`` (per source, Kaggle test, external);
writes SHA256SUMS last, so the folder verifies at load. The table must have been measured on RUN/model
(checked against the weights' checksum).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from melanoma.card import model_card
from melanoma.config import DEFAULT_MODEL_DIR, ModelConfig, atomic_write_text, sha256_file, write_checksums
from melanoma.export import export_onnx

FILES = ("model.safetensors", "config.json", "ood.safetensors", "training_log.csv", "recipe.yaml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--table", type=Path, required=True, help="benchmarks/sources_table.py's JSON for this model")
    ap.add_argument("--dest", type=Path, default=DEFAULT_MODEL_DIR)
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
    export_onnx(tmp, tmp / "model.onnx")
    cfg = ModelConfig.load(tmp / "config.json")
    atomic_write_text(tmp / "README.md", model_card(cfg, table["sets"], args.limitation))
    write_checksums(tmp)
    old = args.dest.with_name(args.dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if args.dest.exists():
        args.dest.rename(old)
    tmp.rename(args.dest)  # the swap is two renames: never a half-written bundled model
    shutil.rmtree(old, ignore_errors=True)
    total = sum(p.stat().st_size for p in args.dest.iterdir())
    names = ", ".join(sorted(p.name for p in args.dest.iterdir()))
    print(f"bundled into {args.dest}: {names}; {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
