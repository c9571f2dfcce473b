"""``train()`` in three stages: :func:`prepare` (the data plan: sources, split, weights, priors), :func:`fit`
(Lightning) and :func:`finish` (threshold, temperature, gate, ONNX, on any model folder), ending in a model folder.
The recipe is :mod:`melanoma.recipe`; the training step is :mod:`melanoma.nn.module`."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from ..backbones import mean_std as default_mean_std
from ..calibrate import pooled_sources
from ..config import ModelConfig, atomic_write_text, sha256_file, write_checksums
from ..datasets import discover, make_train_val, write_split
from ..diagnoses import DIAGNOSES, IS_CANCER, allowed_matrix, class_counts, source_log_priors
from ..engines import ONNX_FILE
from ..engines.onnx_engine import LesionCropper
from ..lesion_crop import segmenter_spec
from ..negatives import picture_sources
from ..recipe import TrainConfig, beside, validate
from ..sources import balanced_by_source, source_class_weights, source_log_odds
from .data import LesionDataModule, make_loader
from .export import export_onnx
from .fit import GATE_FIT_IMAGES, calibrate_model_folder, fit_ood_for_model, record_gate
from .models import save_model_folder
from .module import LesionClassifier, fit_linear_probe
from .segment import add_lesion_crop


def _versions() -> dict[str, str]:
    import timm

    from .._version import __version__
    return {"melanoma": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "lightning": L.__version__}


def _progress_bar() -> L.Callback:
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    # A live rich bar in a log file becomes megabytes of redraws; a sparse tqdm bar stays readable.
    return RichProgressBar() if sys.stderr.isatty() else TQDMProgressBar(refresh_rate=50)


def collect_training_log(run_dir: Path) -> str:
    """Per-epoch rows (epoch, train_loss, val_loss, val_auc, val_acc) of every part of a run, as CSV."""
    import csv

    epochs: dict[int, dict] = {}
    for log in sorted([*run_dir.glob("logs/metrics.csv"), *run_dir.glob("logs/version_*/metrics.csv")]):
        for row in csv.DictReader(log.open()):
            if row.get("epoch"):
                e = epochs.setdefault(int(row["epoch"]), {})
                for key, name in (("train_loss_epoch", "train_loss"), ("val_loss", "val_loss"),
                                  ("val_auc", "val_auc"), ("val_acc", "val_acc")):
                    if row.get(key):
                        e[name] = float(row[key])
    lines = ["epoch,train_loss,val_loss,val_auc,val_acc"]
    keys = ("train_loss", "val_loss", "val_auc", "val_acc")
    lines += [",".join([str(e)] + [f"{v[k]:.6f}" if k in v else "" for k in keys])
              for e, v in sorted(epochs.items())]
    return "\n".join(lines) + "\n"


PROBE_IMAGES = 4096  # training images the linear probe (LP-FT stage 1) is fitted on
MIN_FREE_BYTES = 200 * 2**20  # two checkpoints and a model folder of lite0-sized models, with margin


def check_writable(out: Path) -> None:
    """Fail before training, not after an hour of it, when ``out`` cannot hold the run's files."""
    import shutil
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write to {out}: {e.strerror or e}") from None
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise OSError(f"only {free / 2**20:.0f} MB free under {out}; a run needs at least "
                      f"{MIN_FREE_BYTES / 2**20:.0f} MB for its checkpoints and model folder")


def provenance(pretrained: str) -> str:
    """What a model folder records as its initial weights: "imagenet" or "none" as given; a parent model folder
    by its own provenance and its weights' checksum, not by a path that exists only on the training machine."""
    if not Path(pretrained).is_dir():
        return pretrained
    parent = ModelConfig.load(Path(pretrained) / "config.json")
    digest = sha256_file(Path(pretrained) / "model.safetensors")
    return f"{parent.pretrained}, then a trained model (model.safetensors sha256 {digest[:16]})"


def _machine() -> str:
    import os

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{os.cpu_count()} CPU cores" + (f", {len(gpus)} x {gpus[0]}" if gpus else "")


@dataclass
class DataPlan:
    """What a run trains and validates on, decided before any training: a value to inspect (its file is
    ``split.csv``). Everything per training image is in the order of ``train``."""

    train: list
    val: list
    gate_pool: list  # what the gate is fitted on: every source's training images, whatever is trained on
    split_sha256: str
    sources: dict | None = None  # per source: trained on, validated on, left out (several sources)
    n_dropped_test_duplicates: int = 0
    weights: list[float] | None = None  # sampling weights (recipe balance)
    offsets: list | None = None  # logit adjustment: per image, its source's log-odds (or diagnosis log-priors)
    priors: dict | None = None  # those per source, as config.json records them
    allowed: np.ndarray | None = None  # seven classes: (n, 7) the diagnoses each image's labels allow
    diagnoses: dict | None = None  # what the diagnoses (or the auxiliary head) learn from, as the card reports it
    negative_pictures: Path | None = None  # the gate's folder of non-lesion pictures (recipe, resolved beside data)
    segmenter: Path | None = None  # lesion-centred framing: the segmenter.onnx (recipe, resolved beside data)
    crop: LesionCropper | None = None  # its cropper, applied to every training picture after its site view


def prepare(data: str | Path, cfg: TrainConfig, out: Path) -> DataPlan:
    """Stage 1: the data plan. Sources, the split (by duplicate component; test images never), ``split.csv``,
    sampling weights, priors and allowed diagnoses."""
    dropped: list = []
    sources = None
    if cfg.extra_train:  # several sources: one duplicate graph over all, one validation split per source
        from ..sources import only_sources, split_sources

        split = split_sources([data, *(beside(data, p) for p in cfg.extra_train)], cfg.val_fraction, cfg.seed,
                              cfg.other_dx)
        gate_pool = split.train
        if cfg.train_sources:
            split = only_sources(split, cfg.train_sources)
        train_s, val_s, sources = split.train, split.val, split.summary
    else:
        splits = discover(data, other_dx=cfg.other_dx)
        audit = None
        if cfg.group_duplicates or cfg.drop_test_duplicates:
            from ..audit import cached_audit

            audit = cached_audit(data)
        if cfg.drop_test_duplicates and "test" in splits:
            test_clusters = {c for (s, split), c in zip(audit.samples, audit.cluster_ids) if split == "test"}
            groups = audit.groups()
            dropped = [s for s in splits.get("train", []) if groups.get(str(s.path)) in test_clusters]
            splits["train"] = [s for s in splits.get("train", []) if groups.get(str(s.path)) not in test_clusters]
        train_s, val_s = make_train_val(splits, cfg.val_fraction, cfg.seed,
                                        audit.groups() if cfg.group_duplicates and audit else None)
        gate_pool = train_s
    pooled_sources([s.source for s in val_s], cfg.threshold_groups)  # a misspelt source fails now, not after the fit
    plan = DataPlan(train_s, val_s, gate_pool, write_split(out / "split.csv", {"train": train_s, "val": val_s}),
                    sources, len(dropped), source_class_weights(train_s) if cfg.balance == "source_class" else None)
    if cfg.gate_negative_pictures:
        plan.negative_pictures = beside(data, cfg.gate_negative_pictures)
        picture_sources(plan.negative_pictures)  # a missing or empty folder fails now, not after the fit
    if cfg.lesion_crop_segmenter:  # a missing segmenter fails now, not after the fit
        plan.segmenter = beside(data, cfg.lesion_crop_segmenter)
        plan.crop = LesionCropper(plan.segmenter, segmenter_spec(plan.segmenter, cfg.lesion_crop_margin))
    if cfg.task == "diagnosis":
        plan.allowed = allowed_matrix(train_s, cfg.malignant_means)
        plan.diagnoses = class_counts(train_s, plan.allowed)
        if cfg.source_logit_adjustment:  # each source's diagnosis priors: the imbalance and the archive shortcut
            plan.priors = source_log_priors(train_s, plan.allowed)
    elif cfg.source_logit_adjustment:
        plan.priors = source_log_odds(train_s)
    if cfg.diagnosis_loss:
        plan.diagnoses = {d: sum(s.dx == d for s in train_s) for d in DIAGNOSES}
    if plan.priors is not None:
        plan.offsets = [plan.priors[s.source] for s in train_s]
    return plan


def build_module(cfg: TrainConfig, plan: DataPlan) -> LesionClassifier:
    """The LightningModule for a recipe, with what the plan gives each training image (offsets, allowed diagnoses,
    the auxiliary head's diagnosis)."""
    seven = cfg.task == "diagnosis"
    module = LesionClassifier(cfg.arch, cfg.pretrained, cfg.lr, cfg.weight_decay, cfg.optimizer,
                              cfg.warmup_epochs, cfg.freeze_blocks, cfg.diagnosis_loss, len(DIAGNOSES),
                              num_classes=len(DIAGNOSES) if seven else 1)
    if plan.offsets is not None:  # logit adjustment: the source's prior enters the loss, not the net
        module.train_offsets = torch.tensor(plan.offsets, dtype=torch.float32)
    if seven:
        module.train_allowed, module.is_cancer = torch.as_tensor(plan.allowed), torch.as_tensor(IS_CANCER)
    if cfg.diagnosis_loss:
        module.train_dx = torch.tensor([DIAGNOSES.index(s.dx) if s.dx in DIAGNOSES else -1 for s in plan.train])
    return module


def fit(cfg: TrainConfig, plan: DataPlan, out: Path, resume: bool, clock: dict) -> tuple[LesionClassifier, dict]:
    """Stage 2: Lightning. Returns the module holding its best weights, and what the run records of the fit."""
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        EMAWeightAveraging,
        LambdaCallback,
        LearningRateMonitor,
        ModelCheckpoint,
    )
    from lightning.pytorch.loggers import CSVLogger

    mean, std = default_mean_std(cfg.arch)
    dm = LesionDataModule(plan.train, plan.val, cfg.img_size, mean, std, cfg.aug, cfg.batch_size, cfg.num_workers,
                          cfg.color_constancy, seed=cfg.seed, weights=plan.weights, downscale_to=cfg.downscale_to,
                          crop=plan.crop)
    module = build_module(cfg, plan)
    clock["probe"] = time.perf_counter()
    probe = None
    if cfg.linear_probe and not resume:  # a resumed run's head comes from its checkpoint
        # 4,096 images pin down a 1,280-weight logistic regression (its time: training.timings_s.linear_probe).
        sub = random.Random(cfg.seed).sample(plan.train, min(PROBE_IMAGES, len(plan.train)))
        probe = fit_linear_probe(module.net, make_loader(sub, dm.train_tf, cfg.batch_size,
                                                         num_workers=cfg.num_workers))

    last_ckpt = out / "checkpoints" / "last.ckpt"
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_auc", mode="max",
                           enable_version_counter=False)
    # Lightning saves `last` only in epochs that improve `best`; a second, unmonitored callback
    # writes it after every epoch, so a crash costs at most one epoch.
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", enable_version_counter=False)
    # Lightning's EMA swaps the averaged weights in for validation and stores them as the checkpoint's
    # state_dict (the raw weights ride along for --resume), so best.ckpt, and the shipped model, are the average.
    ema = [EMAWeightAveraging(decay=cfg.ema_decay)] if cfg.ema_decay else []
    precision = cfg.precision or ("bf16-mixed" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "32-true")
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=precision,
        callbacks=[ckpt, last, EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience),
                   LearningRateMonitor("epoch"), _progress_bar(), *ema,
                   LambdaCallback(on_train_start=lambda tr, _: clock.__setitem__("first_epoch", tr.current_epoch))],
        # a new logs/version_N per (re)start keeps the curves of every part of a resumed run
        logger=CSVLogger(out, name="logs"), default_root_dir=out, deterministic=False,
        fast_dev_run=cfg.fast_dev_run, enable_model_summary=False, log_every_n_steps=10)
    clock["fit"] = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last_ckpt) if resume else None)
    clock["fit_end"] = time.perf_counter()

    if ckpt.best_model_path:  # empty under fast_dev_run, which saves no checkpoint
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    best_val = {k: round(float(v), 6) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    if ckpt.best_model_score is not None:
        best_val["val_auc"] = round(float(ckpt.best_model_score), 6)
    record = {"epochs_run": trainer.current_epoch, "linear_probe": probe, "best_val": best_val,
              "is_global_zero": trainer.is_global_zero,
              "images_trained": len(plan.train) * (trainer.current_epoch - clock.get("first_epoch", 0))}
    return module, record


def finish(model_dir: Path, cfg: TrainConfig, plan: DataPlan, clock: dict | None = None) -> None:
    """Stage 3, on a model folder holding the trained weights and config: threshold and temperature on the plan's
    validation images, the "cannot assess" gate, the training log, the ONNX graph."""
    clock = clock if clock is not None else {}
    atomic_write_text(model_dir / "training_log.csv", collect_training_log(model_dir.parent))
    calibrate_model_folder(model_dir, plan.val, cfg.target_sensitivity, cfg.batch_size, cfg.threshold_groups)
    clock["calibrate_end"] = time.perf_counter()
    if cfg.arch != "small_cnn":  # the "cannot assess" gate needs a timm model's pooled features
        fit_samples = balanced_by_source(plan.gate_pool, GATE_FIT_IMAGES, cfg.seed)
        gate = fit_ood_for_model(model_dir, fit_samples, plan.val, batch_size=cfg.batch_size, blocks=cfg.gate_blocks,
                                  views=tuple(cfg.gate_views), negatives=cfg.gate_negatives,
                                  pictures=plan.negative_pictures, head_c=cfg.gate_head_c)
        record_gate(model_dir, gate, plan.gate_pool)  # what the card says the gate reads and was fitted on
    clock["gate_end"] = time.perf_counter()
    # model.onnx makes predict, evaluate and the app take the fast torch-free path on this folder too.
    export_onnx(model_dir, model_dir / ONNX_FILE)
    clock["export_end"] = time.perf_counter()


def train(data: str | Path, out: str | Path, cfg: TrainConfig, resume: bool = False,
          command: str | None = None) -> Path:
    """Train on the dataset at ``data``; returns the model folder ``out/model``: :func:`prepare` (the data plan),
    :func:`fit` (Lightning), the weights and config saved, then :func:`finish` (calibration, gate, ONNX).

    ``out`` also receives ``split.csv`` (the exact train/val lists), ``checkpoints/{best,last}.ckpt``
    and ``logs/`` (per-epoch metrics as CSV). With ``resume`` the run continues from ``last.ckpt``.
    """
    validate(cfg)
    out = Path(out)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    if resume and not last_ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last_ckpt}")
    if not resume and last_ckpt.is_file():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    check_writable(out)
    clock = {"start": time.perf_counter()}
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    plan = prepare(data, cfg, out)
    module, record = fit(cfg, plan, out, resume, clock)
    if not record.pop("is_global_zero"):
        return out / "model"
    mean, std = default_mean_std(cfg.arch)
    model_cfg = ModelConfig(
        arch=cfg.arch, img_size=cfg.img_size, mean=mean, std=std, pretrained=provenance(cfg.pretrained),
        color_constancy=cfg.color_constancy, downscale_to=cfg.downscale_to,
        diagnoses=DIAGNOSES if cfg.task == "diagnosis" else None,
        training={"recipe": {**asdict(cfg)}, "data": str(data), "n_train": len(plan.train),
                  "n_val": len(plan.val), "n_dropped_test_duplicates": plan.n_dropped_test_duplicates,
                  "sources": plan.sources, "source_log_odds": plan.priors, "train_diagnoses": plan.diagnoses,
                  "split_sha256": plan.split_sha256, "epochs_run": record["epochs_run"],
                  "linear_probe": record["linear_probe"], "command": command, "machine": _machine(),
                  "best_val": record["best_val"], "versions": _versions()})
    save_model_folder(module.net, model_cfg, out / "model")
    if plan.segmenter is not None:  # before finish: calibration and the gate see pictures as predictions will
        add_lesion_crop(out / "model", plan.segmenter, cfg.lesion_crop_margin)
    finish(out / "model", cfg, plan, clock)
    _record_timings(out / "model", clock, record["images_trained"])
    return out / "model"


def _record_timings(model_dir: Path, clock: dict[str, float], images_trained: int) -> None:
    """Wall seconds of each stage of this (part of the) run, into config.json's ``training``."""
    cfg = ModelConfig.load(model_dir / "config.json")
    fit_s = clock["fit_end"] - clock["fit"]
    cfg.training["timings_s"] = {
        "data_and_audit": round(clock["probe"] - clock["start"], 1),
        "linear_probe": round(clock["fit"] - clock["probe"], 1), "fit": round(fit_s, 1),
        "calibrate": round(clock["calibrate_end"] - clock["fit_end"], 1),
        "gate": round(clock["gate_end"] - clock["calibrate_end"], 1),
        "onnx_export": round(clock["export_end"] - clock["gate_end"], 1),
        "total": round(clock["export_end"] - clock["start"], 1),
        "train_images_per_s_incl_validation": round(images_trained / fit_s, 2) if fit_s > 0 else None}
    cfg.save(model_dir / "config.json")
    write_checksums(model_dir)
