"""Adapting to a new site from its unlabelled images: batch-norm statistics re-estimated on them (AdaBN, Li et al.
2016), measured on the external ISIC 2018 Task 3 test set.

    python benchmarks/site_adaptation.py MODEL_DIR [--out docs/results/NAME.json]

The external images are split in two random halves. The statistics are re-estimated on one half's images (their
labels unused) and the model scored on the *other* half, then the other way round; the unadapted model is scored on
the same halves. ROC-AUC, and sensitivity / specificity at the model's own threshold (temperature unchanged), with
95% bootstrap intervals. Only if adaptation helps would it become an option of `melanoma predict`.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from melanoma.data import build_transform
from melanoma.datasets import discover, load_image
from melanoma.evaluate import metrics_with_ci
from melanoma.models import load_model_folder

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "data" / "isic2018_test"


@torch.no_grad()
def logits(net, xs: torch.Tensor, batch: int = 64) -> np.ndarray:
    net.eval()
    return torch.cat([net(xs[i:i + batch].contiguous(memory_format=torch.channels_last)).squeeze(1)
                      for i in range(0, len(xs), batch)]).numpy()


@torch.no_grad()
def adapt_bn(net, xs: torch.Tensor, batch: int = 64):
    """A copy of ``net`` whose batch-norm running statistics are the plain average over ``xs``."""
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    net.train()
    for i in range(0, len(xs), batch):
        net(xs[i:i + batch].contiguous(memory_format=torch.channels_last))
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "site_adaptation.json")
    args = ap.parse_args()

    net, cfg = load_model_folder(args.model)
    net = net.to(memory_format=torch.channels_last)
    tf = build_transform(cfg.img_size, cfg.mean, cfg.std, color_constancy=cfg.color_constancy)
    samples = discover(EXTERNAL)["test"]
    xs = torch.stack([tf(load_image(s.path)) for s in samples])
    y = np.array([s.label for s in samples])
    halves = np.array_split(np.random.default_rng(0).permutation(len(samples)), 2)

    def score(z: np.ndarray, idx: np.ndarray) -> dict:
        p = 1 / (1 + np.exp(-z / cfg.temperature))
        m = metrics_with_ci(y[idx].tolist(), p.tolist(), cfg.threshold)
        return {k: m[k] for k in ("n", "n_malignant", "roc_auc", "roc_auc_ci", "recall", "recall_ci", "specificity",
                                  "specificity_ci")}

    result = {"model": str(args.model), "threshold": cfg.threshold, "halves": []}
    for k, (fit, test) in enumerate(((halves[0], halves[1]), (halves[1], halves[0]))):
        base = score(logits(net, xs[test]), test)
        adapted = score(logits(adapt_bn(net, xs[fit]), xs[test]), test)
        result["halves"].append({"adapted_on_n": len(fit), "unadapted": base, "adapted": adapted})
        for name, m in (("unadapted", base), ("AdaBN", adapted)):
            print(f"| half {k + 1} (n = {m['n']}) | {name} | {m['roc_auc']:.3f} ({m['roc_auc_ci'][0]:.3f}-"
                  f"{m['roc_auc_ci'][1]:.3f}) | {m['recall']:.3f} | {m['specificity']:.3f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
