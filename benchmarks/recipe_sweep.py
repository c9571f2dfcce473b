"""Compare candidate training recipes on one fixed train/val split, by validation ROC-AUC only.

Each candidate gets the epochs that fit the same CPU budget (its CPU images/s, measured by
``benchmarks/train_speed.py``, times ~52 minutes), so the sweep answers "what is the best use of an
hour on 2 cores". It runs anywhere; on a GPU it takes minutes. Test data is never read.

    python benchmarks/recipe_sweep.py SPLIT_CSV OUT_JSON [NAME ...]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace

import lightning as L
import torch

from melanoma.backbones import mean_std as default_mean_std
from melanoma.datasets import read_split
from melanoma.nn.data import LesionDataModule
from melanoma.nn.module import LesionClassifier
from melanoma.recipe import AugConfig, TrainConfig

CANDIDATES = {
    "full_e7": dict(epochs=7),
    "freeze2_e9": dict(freeze_blocks=2, epochs=9),
    "freeze3_e11": dict(freeze_blocks=3, epochs=11),
    "freeze2_e9_sog": dict(freeze_blocks=2, epochs=9, color_constancy="shades_of_grey"),
    "freeze2_e9_vignette": dict(freeze_blocks=2, epochs=9, aug=AugConfig(vignette=0.3)),
    "freeze2_e9_lr1e-3": dict(freeze_blocks=2, epochs=9, lr=1e-3),
}


class EpochLog(L.Callback):
    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, module):  # runs after that epoch's validation
        m = trainer.callback_metrics
        self.rows.append({k: round(float(m[k]), 5) for k in ("val_auc", "val_acc", "val_loss") if k in m})


def run(name: str, cfg: TrainConfig, splits, workers: int) -> dict:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    mean, std = default_mean_std(cfg.arch)
    dm = LesionDataModule(splits["train"], splits["val"], cfg.img_size, mean, std, cfg.aug, cfg.batch_size,
                          workers, cfg.color_constancy)
    module = LesionClassifier(cfg.arch, cfg.pretrained, cfg.lr, cfg.weight_decay, cfg.optimizer,
                              cfg.warmup_epochs, cfg.freeze_blocks)
    log = EpochLog()
    trainer = L.Trainer(max_epochs=cfg.epochs, precision="bf16-mixed" if torch.cuda.is_available() else "32-true",
                        callbacks=[log], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    t = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    wall = time.perf_counter() - t
    return {"name": name, "recipe": asdict(cfg), "epochs": log.rows, "wall_s": round(wall, 1),
            "final_val_auc": log.rows[-1]["val_auc"], "best_val_auc": max(r["val_auc"] for r in log.rows),
            "n_train": len(splits["train"]), "n_val": len(splits["val"])}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("split_csv", help="a run's split.csv: its train and val rows")
    ap.add_argument("out_json")
    ap.add_argument("names", nargs="*", choices=[[], *CANDIDATES], metavar="NAME",
                    help=f"candidates to run (default: all of {', '.join(CANDIDATES)})")
    ap.add_argument("--epochs", type=int, help="every candidate trains this many epochs (a check of the sweep itself)")
    args = ap.parse_args()
    split_csv, out_json, names = args.split_csv, args.out_json, args.names
    splits = read_split(split_csv)
    workers = min(12, max(1, (torch.multiprocessing.cpu_count() or 2) - 2))
    results = []
    for name in names or CANDIDATES:
        cfg = replace(TrainConfig(), **{**CANDIDATES[name], **({"epochs": args.epochs} if args.epochs else {})})
        results.append(run(name, cfg, splits, workers))
        print(json.dumps({k: results[-1][k] for k in ("name", "final_val_auc", "best_val_auc", "wall_s")}), flush=True)
        with open(out_json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
