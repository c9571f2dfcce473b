"""Training throughput on this machine's CPU, per part of a training step, for the recipe's choices.

    python benchmarks/train_speed.py [--recipe recipes/flagship.yaml] [--data ../shared/data/melanoma_cancer_dataset]

* network: forward + backward + AdamW step on a fixed batch of 32 (images/s), for full fine-tuning and
  for 2 and 3 frozen blocks, at the recipe's input size and at 192 px: what `recipe_sweep.py` budgets with;
  and full fine-tuning of the larger EfficientNet-Lites at their own input sizes (lite1 240 px, lite2 260 px);
* data: decoding + augmentation of real training images in one process (images/s per core).
A real epoch runs both on the same 2 cores (the loader's workers and the training step share them).
Run it with GLIBC_TUNABLES set (the `melanoma` launcher and the Makefile do) on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from melanoma.backbones import mean_std as default_mean_std
from melanoma.bench import data_root
from melanoma.datasets import discover, load_image
from melanoma.nn.data import build_transform
from melanoma.nn.models import create_model
from melanoma.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
LARGER = (("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260))  # timm's default input sizes


def network_images_per_s(arch: str, size: int, freeze: int, batch: int = 32, steps: int = 6) -> float:
    torch.manual_seed(0)
    net = create_model(arch, pretrained="none").to(memory_format=torch.channels_last).train()
    frozen = [net.conv_stem, net.bn1, *net.blocks[:freeze]] if freeze else []
    for m in frozen:
        m.requires_grad_(False)
        m.eval()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,)).float()
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times[1:])


def data_images_per_s(data: Path, recipe, n: int = 200) -> float:
    samples = discover(data)["train"][:: max(1, 10_000 // n)][:n]
    mean, std = default_mean_std(recipe.arch)
    tf = build_transform(recipe.img_size, mean, std, recipe.aug, recipe.color_constancy)
    t = time.perf_counter()
    for s in samples:
        tf(load_image(s.path))
    return len(samples) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "flagship.yaml")
    ap.add_argument("--data", type=Path, default=data_root() / "melanoma_cancer_dataset")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "speed")
    ap.add_argument("--quick", action="store_true", help="the recipe's own setting only, batch 4, one step: that it "
                    "runs, not a measurement")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    batch, steps = (4, 1) if args.quick else (32, 6)
    settings = [(recipe.arch, recipe.img_size, 0)] if args.quick else [
        *((recipe.arch, size, freeze) for size in (recipe.img_size, 192) for freeze in (0, 2, 3)),
        *((arch, size, 0) for arch, size in LARGER)]
    rows = [{"part": "network", "arch": arch, "img_size": size, "freeze_blocks": freeze, "batch": batch,
             "images_per_s": round(network_images_per_s(arch, size, freeze, batch, steps), 1)}
            for arch, size, freeze in settings]
    if args.data.is_dir():
        rows.append({"part": "data (1 core)", "img_size": recipe.img_size,
                     "images_per_s": round(data_images_per_s(args.data, recipe, 8 if args.quick else 200), 1)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_speed.json").write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print("| part | arch | input px | frozen blocks | images/s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['part']} | {r.get('arch', '-')} | {r['img_size']} | {r.get('freeze_blocks', '-')} | "
              f"{r['images_per_s']} |")


if __name__ == "__main__":
    main()
