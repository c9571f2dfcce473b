"""Inference speed on this machine's CPU: PyTorch eager vs ONNX Runtime, measured side by side.

    python benchmarks/inference_speed.py [--model DIR] [--data ../shared/data/melanoma_cancer_dataset/test] \
        [--out runs/speed]

1. The network alone (logit + gate features) on a fixed normalised batch, batch 1 and batch 32:
   median of repeated runs after warm-up; images/s and ms per call. ONNX Runtime twice: the shipped
   graph, and the same model exported with timm's run-time padding (as before static padding).
2. End to end: every image of --data through ``predict_paths`` (decoding, resizing, colour constancy,
   network, gate), one engine after the other.
3. Cold start: ``melanoma predict ONE.jpg`` as a fresh process, wall time, median of 5 (after one
   run that warms the file cache), for each engine.
Writes OUT/speed.json and prints a markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from melanoma.bench import data_root

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def dynamic_padding_copy(model_dir: Path | None, tmp: Path) -> Path:
    """The model folder with model.onnx exported as before static padding (timm's run-time "same" pads)."""
    from melanoma.config import DEFAULT_MODEL_DIR, write_checksums
    from melanoma.nn.export import export_onnx

    src = Path(model_dir or DEFAULT_MODEL_DIR)
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    export_onnx(src, tmp / "model.onnx", static_padding=False)
    write_checksums(tmp)
    return tmp


def network_speed(model_dir: Path | None, before_dir: Path, quick: bool = False) -> list[dict]:
    import torch

    from melanoma.engines.onnx_engine import OnnxPredictor
    from melanoma.nn.torch_engine import TorchPredictor

    torch_p, onnx_p, before_p = TorchPredictor(model_dir), OnnxPredictor(model_dir), OnnxPredictor(before_dir)
    size = torch_p.cfg.img_size
    rows = []
    for batch, repeats in ((1, 2), (32, 1)) if quick else ((1, 50), (32, 8)):
        x = np.random.default_rng(0).normal(0, 0.5, (batch, 3, size, size)).astype(np.float32)
        xt = torch.from_numpy(x)
        for engine, fn in (("pytorch eager", lambda: torch_p.forward(xt)),  # noqa: B023 - timed at once, in the loop
                           ("onnx runtime", lambda: onnx_p.forward(x)),  # noqa: B023
                           ("onnx runtime, run-time padding (export before static padding)",
                            lambda: before_p.forward(x))):  # noqa: B023
            s = timed(fn, repeats, warmup=1 if quick else 3)
            rows.append({"engine": engine, "batch": batch, "ms_per_call": round(1000 * s, 2),
                         "images_per_s": round(batch / s, 1)})
    return rows


def end_to_end(model_dir: Path | None, before_dir: Path, data: Path) -> list[dict]:
    from melanoma.engines import load_predictor
    from melanoma.inputs import expand_paths

    paths = expand_paths([data])
    rows = []
    for name, engine, folder in (("onnx", "onnx", model_dir), ("torch", "torch", model_dir),
                                 ("onnx, run-time padding", "onnx", before_dir)):
        predictor = load_predictor(folder, engine, num_workers=2)
        t = time.perf_counter()
        out = predictor.predict_paths(paths)
        wall = time.perf_counter() - t
        rows.append({"engine": name, "n_images": len(paths), "wall_s": round(wall, 2),
                     "images_per_s": round(len(paths) / wall, 1),
                     "n_ok": sum(r["status"] == "ok" for r in out)})
    return rows


def cold_start(model_dir: Path | None, image: Path, runs: int = 6) -> list[dict]:
    exe = str(Path(sys.executable).with_name("melanoma"))
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}  # as a user's shell has it
    rows = []
    for engine in ("onnx", "torch"):
        cmd = [exe, "predict", str(image), "--engine", engine] + (["--model", str(model_dir)] if model_dir else [])
        walls = []
        for i in range(runs):
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            if i:  # the first run only warms the file cache
                walls.append(time.perf_counter() - t)
        rows.append({"engine": engine, "median_wall_s": round(statistics.median(walls), 2),
                     "max_wall_s": round(max(walls), 2), "runs": len(walls)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=data_root() / "melanoma_cancer_dataset" / "test")
    ap.add_argument("--out", type=Path, default=REPO / "runs/speed")
    ap.add_argument("--quick", action="store_true", help="one or two repeats of each: that it runs, not a measurement")
    args = ap.parse_args()
    image = next(iter(sorted((REPO / "samples").rglob("*.jpg"))))
    before = dynamic_padding_copy(args.model, Path(tempfile.mkdtemp()))
    result = {"cpu_count": os.cpu_count(), "quick": args.quick,
              "network": network_speed(args.model, before, args.quick),
              "cold_start": cold_start(args.model, image, 2 if args.quick else 6)}
    if args.data.is_dir():
        result["end_to_end"] = end_to_end(args.model, before, args.data)
    shutil.rmtree(before)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| engine | batch | ms per call | images/s |  (network alone, {os.cpu_count()} CPU cores)")
    print("|---|---|---|---|")
    for r in result["network"]:
        print(f"| {r['engine']} | {r['batch']} | {r['ms_per_call']} | {r['images_per_s']} |")
    for r in result.get("end_to_end", []):
        print(f"end to end, {r['engine']}: {r['n_images']} images in {r['wall_s']} s ({r['images_per_s']}/s)")
    for r in result["cold_start"]:
        print(f"cold start `melanoma predict one.jpg --engine {r['engine']}`: median {r['median_wall_s']} s, "
              f"max {r['max_wall_s']} s over {r['runs']} runs")


if __name__ == "__main__":
    main()
