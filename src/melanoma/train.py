"""Training: a LightningModule with one logit and BCE, and ``train()`` that ends in a model folder."""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from .config import ModelConfig, atomic_write_text, sha256_file, write_checksums
from .data import AugConfig, LesionDataModule, make_loader
from .datasets import discover, make_train_val, write_split
from .engines import ONNX_FILE
from .export import export_onnx
from .fit import GATE_FIT_IMAGES, calibrate_model_folder, fit_ood_for_model
from .models import create_model, default_mean_std, save_model_folder
from .sources import balanced_by_source, source_class_weights, source_log_odds


@dataclass
class TrainConfig:
    """A training recipe. ``lr`` is the peak learning rate of a cosine schedule with warm-up."""

    arch: str = "tf_efficientnet_lite0"
    pretrained: str = "imagenet"
    img_size: int = 224
    color_constancy: str | None = None  # "shades_of_grey", applied in training and at inference
    freeze_blocks: int = 0  # EfficientNet: keep the stem and this many first blocks at ImageNet weights
    linear_probe: bool = False  # stage 1: fit the classifier on frozen pretrained features (LP-FT)
    ema_decay: float | None = None  # e.g. 0.995: validate, checkpoint and ship an exponential moving average
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # "adam" or "adamw"
    warmup_epochs: float = 0.3
    patience: int = 3  # epochs without a better validation ROC-AUC before stopping
    val_fraction: float = 0.1
    seed: int = 42
    target_sensitivity: float | None = 0.95  # threshold rule on validation data; None = Youden's J
    # Further sources trained on with ``data``: one duplicate graph over all of them, a validation split per
    # source, and no copy of any source's validation or test image trained on (melanoma.sources).
    extra_train: list[str] = field(default_factory=list)
    # Train only on these sources' training images (names as in split.csv); validation keeps every source and the
    # split is the one all sources give, so a second stage (``pretrained``: the first stage's model folder, same
    # sources and seed) never trains on the first stage's validation images.
    train_sources: list[str] = field(default_factory=list)
    other_dx: str = "exclude"  # HAM10000's bcc/akiec: "exclude", "benign" or "malignant" (datasets.dx_label)
    balance: str = "none"  # "source_class": draw each source's classes equally often (sources.source_class_weights)
    # Logit adjustment by source (Menon et al. 2021, "Long-tail learning via logit adjustment"): the loss sees
    # logit + the image's source's melanoma log-odds (sources.source_log_odds), so the network need not learn
    # each archive's prevalence from how its images look; the bare logit, used at inference, then reads every
    # source on one scale, even odds, which is what lets one threshold serve them all.
    source_logit_adjustment: bool = False
    group_duplicates: bool = True  # one source: keep each near-duplicate cluster on one side of train/val
    drop_test_duplicates: bool = False  # one source: leave out training images that have a copy in test
    num_workers: int = 2
    aug: AugConfig = field(default_factory=AugConfig)
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp; one process per device, launched by Lightning, torchrun or SLURM
    precision: str | None = None  # None: bf16-mixed on CUDA, 32 elsewhere
    fast_dev_run: bool = False


# (field, test, what it must be): every recipe, command line and Python call is checked against these before
# anything runs, so a typo'd value fails in a second with its name, not after an hour of training.
_RULES = [
    ("img_size", lambda v: v >= 32, "at least 32"), ("epochs", lambda v: v >= 1, "at least 1"),
    ("batch_size", lambda v: v >= 2, "at least 2"), ("lr", lambda v: 0 < v < 1, "in (0, 1)"),
    ("weight_decay", lambda v: v >= 0, ">= 0"), ("warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("patience", lambda v: v >= 0, ">= 0"), ("val_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("freeze_blocks", lambda v: v >= 0, ">= 0"), ("num_workers", lambda v: v >= 0, ">= 0"),
    ("optimizer", lambda v: v in ("adam", "adamw"), "adam or adamw"),
    ("other_dx", lambda v: v in ("exclude", "benign", "malignant"), "exclude, benign or malignant"),
    ("balance", lambda v: v in ("none", "source_class"), "none or source_class"),
    ("ema_decay", lambda v: v is None or 0 < v < 1, "strictly between 0 and 1"),
    ("target_sensitivity", lambda v: v is None or 0 < v <= 1, "in (0, 1], or null for Youden's J"),
    ("color_constancy", lambda v: v in (None, "shades_of_grey"), "shades_of_grey or null"),
    ("pretrained", lambda v: v in ("imagenet", "none") or Path(v).is_dir(), "imagenet, none or a model folder"),
]
_AUG_RULES = [
    ("rotation", lambda v: 0 <= v <= 180, "in [0, 180] degrees"), ("zoom", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("shear", lambda v: 0 <= v <= 45, "in [0, 45] degrees"),
    ("fill_mode", lambda v: v in ("constant", "reflect", "nearest"), "constant, reflect or nearest"),
    *[(k, lambda v: 0 <= v <= 1, "in [0, 1]") for k in ("brightness", "contrast", "saturation", "vignette",
                                                          "vignette_min_darkness", "jpeg")],
    ("hue", lambda v: 0 <= v <= 0.5, "in [0, 0.5]"), ("jpeg_quality_min", lambda v: 1 <= v <= 95, "in [1, 95]"),
]


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ValueError naming the first field whose value is out of range; returns ``cfg``."""
    for obj, rules, prefix in ((cfg, _RULES, ""), (cfg.aug, _AUG_RULES, "aug.")):
        for name, ok, must in rules:
            value = getattr(obj, name)
            try:
                good = ok(value)
            except TypeError:
                good = False
            if not good:
                raise ValueError(f"{prefix}{name} must be {must} (got {value!r})")
    if cfg.train_sources and not cfg.extra_train:
        raise ValueError("train_sources needs several sources (extra_train)")
    if cfg.source_logit_adjustment and not cfg.extra_train:
        raise ValueError("source_logit_adjustment needs several sources (extra_train)")
    return cfg


# Command-line options that set more than the TrainConfig field of their name.
SHORTHANDS = {"flips": ("aug.hflip", "aug.vflip"), "color": ("aug.brightness", "aug.contrast", "aug.saturation"),
              **{k: (f"aug.{k}",) for k in ("rotation", "zoom", "shear", "fill_mode", "vignette")}}


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """``cfg`` with ``overrides`` ({field or shorthand: value}; ``aug.x`` for augmentation) applied, validated.
    Unknown names are errors that name themselves."""
    from dataclasses import replace

    top, aug = {}, {}
    for name, value in overrides.items():
        for target in SHORTHANDS.get(name, (name,)):
            (aug if target.startswith("aug.") else top)[target.removeprefix("aug.")] = value
        if name == "color":
            aug["hue"] = value / 5
    known, aug_known = {f.name for f in fields(TrainConfig)} - {"aug"}, {f.name for f in fields(AugConfig)}
    if bad := sorted(set(top) - known) + sorted(f"aug.{k}" for k in set(aug) - aug_known):
        raise ValueError(f"unknown training option {bad[0]!r}")
    return validate(replace(cfg, **top, aug=replace(cfg.aug, **aug)))


def _read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    import yaml

    path = path.resolve()
    if path in seen:
        raise ValueError(f"recipe {path.name}: its base chain loops back to itself")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {path.name}: a recipe is a mapping of TrainConfig fields")
    raw.pop("notes", None)  # free text for the reader
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_recipe(path.parent / base, (*seen, path))
    aug = {**(merged.pop("aug", None) or {}), **(raw.pop("aug", None) or {})}
    return {**merged, **raw, "aug": aug}


def load_recipe(path: str | Path) -> TrainConfig:
    """A YAML file of TrainConfig fields (``aug:`` as a mapping) -> TrainConfig; unknown keys are errors.

    ``base: OTHER.yaml`` (relative to the file) starts from that recipe: the file then lists only what changed,
    as an experiment should; ``aug`` entries override one by one."""
    raw = _read_recipe(Path(path))
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"recipe {Path(path).name}: unknown key {unknown[0]!r} (TrainConfig fields: "
                         f"{', '.join(sorted(known))})")
    aug_raw = raw.pop("aug", None) or {}
    aug_known = {f.name for f in fields(AugConfig)}
    if bad := sorted(set(aug_raw) - aug_known):
        raise ValueError(f"recipe {Path(path).name}: unknown aug key {bad[0]!r} "
                         f"(known: {', '.join(sorted(aug_known))})")
    return validate(TrainConfig(**raw, aug=AugConfig(**aug_raw)))


def resolved_recipe_text(path: str | Path) -> str:
    """The recipe at ``path`` with its ``base`` chain merged in: what travels with the model it made, whole."""
    import yaml

    path = Path(path)
    notes = (yaml.safe_load(path.read_text()) or {}).get("notes")
    head = f"# {path.name}, its base recipes merged in (melanoma.train.resolved_recipe_text)\n"
    return head + yaml.safe_dump({**({"notes": notes} if notes else {}), **_read_recipe(path)}, sort_keys=False,
                                 width=110)


class LesionClassifier(L.LightningModule):
    """Wraps a network with one output logit. ``forward``: (N, 3, H, W) -> logits (N,)."""

    def __init__(self, arch: str, pretrained: str, lr: float, weight_decay: float, optimizer: str,
                 warmup_epochs: float, freeze_blocks: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(arch, pretrained=pretrained).to(memory_format=torch.channels_last)
        self.val_auc, self.val_acc = BinaryAUROC(), BinaryAccuracy()
        # The high-resolution early layers cost most of the backward pass and learn generic edges;
        # freezing them trains ~1.3x (2 blocks) to ~1.6x (3 blocks) faster on CPU at 224 px.
        self.frozen = self._frozen_modules(freeze_blocks)  # a plain list: not registered twice
        for m in self.frozen:
            m.requires_grad_(False)
        self.train_offsets: torch.Tensor | None = None  # per training image, added to its logit in the loss

    def _frozen_modules(self, n: int) -> list[torch.nn.Module]:
        if n <= 0:
            return []
        if not hasattr(self.net, "blocks"):
            raise ValueError(f"freeze_blocks needs an EfficientNet-style model (got {self.hparams.arch})")
        return [self.net.conv_stem, self.net.bn1, *self.net.blocks[:n]]

    def on_train_epoch_start(self):
        for m in self.frozen:
            m.eval()  # frozen layers keep their ImageNet batch-norm statistics too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last)).squeeze(1)

    def training_step(self, batch, batch_idx):
        if batch is None:  # every image of the batch was unreadable
            return None
        x, y, idx = batch
        logits = self(x)
        if self.train_offsets is not None:  # logit adjustment: the source's prior enters the loss, not the net
            logits = logits + self.train_offsets.to(logits.device)[idx.to(logits.device)]
        loss = F.binary_cross_entropy_with_logits(logits, y)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        if batch is None:
            return
        x, y, _ = batch
        logits = self(x)
        # torchmetrics gathers predictions from every rank before computing ROC-AUC.
        self.val_auc.update(logits.sigmoid(), y.int())
        self.val_acc.update(logits.sigmoid(), y.int())
        self.log("val_loss", F.binary_cross_entropy_with_logits(logits, y), prog_bar=True,
                 on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self):
        self.log("val_auc", self.val_auc.compute(), prog_bar=True)
        self.log("val_acc", self.val_acc.compute(), prog_bar=True)
        self.val_auc.reset()
        self.val_acc.reset()

    def configure_optimizers(self):
        hp = self.hparams
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[hp.optimizer]
        opt = opt_cls([p for p in self.parameters() if p.requires_grad], lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(hp.warmup_epochs * total / max(1, self.trainer.max_epochs)))

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def fit_linear_probe(net: torch.nn.Module, loader, Cs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)) -> dict:
    """Stage 1 of LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features and
    underperform out-of-distribution"): fit the classifier by logistic regression on the pretrained
    network's pooled features, before any fine-tuning. A randomly initialised head sends large,
    arbitrary gradients into the pretrained layers during the first steps and distorts the features
    that carry over to other clinics' images; a head that already fits gives small, meaningful ones.

    The probe must fit what fine-tuning will feed it, or it starts worse than a random head (measured on
    256 held-out Kaggle images: a probe under ImageNet's batch-norm statistics on un-augmented images
    met training losses of 1-6). So batch norm first takes these images' statistics (fine-tuning
    normalises by batch statistics), ``loader`` should yield *augmented* training images (images
    (N, 3, H, W), labels (N,), index), and the regularisation ``C`` is chosen by 5-fold cross-validated
    log loss on them. ``net``: a timm model with one output; its ``get_classifier()`` (a Linear D -> 1)
    and batch-norm statistics are overwritten in place. Returns n, the chosen C and the training ROC-AUC.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    from torch.optim.swa_utils import update_bn

    head = net.get_classifier() if hasattr(net, "forward_head") else None
    if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
        raise ValueError("linear_probe needs a timm model with a single-logit linear classifier")
    was_training = net.training
    update_bn((b[0].contiguous(memory_format=torch.channels_last) for b in loader if b is not None), net)
    net.eval()
    feats, labels = [], []
    for batch in loader:
        if batch is None:
            continue
        x, y, _ = batch
        feats.append(net.forward_head(net.forward_features(x.contiguous(memory_format=torch.channels_last)),
                                      pre_logits=True).float())
        labels.append(y)
    net.train(was_training)
    f, y = torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(int)
    scaler = StandardScaler().fit(f)  # for the solver's conditioning; folded back into the weights below
    lr = LogisticRegressionCV(Cs=list(Cs), cv=5, scoring="neg_log_loss", max_iter=2000).fit(scaler.transform(f), y)
    w = lr.coef_[0] / scaler.scale_
    b = lr.intercept_[0] - float(w @ scaler.mean_)
    head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype)[None])
    head.bias.copy_(torch.as_tensor([b], dtype=head.bias.dtype))
    return {"n": len(y), "C": float(lr.C_[0]), "train_auc": round(float(roc_auc_score(y, f @ w + b)), 6)}


def _versions() -> dict[str, str]:
    import timm

    from ._version import __version__
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


def train(data: str | Path, out: str | Path, cfg: TrainConfig, resume: bool = False,
          command: str | None = None) -> Path:
    """Train on the dataset at ``data``; returns the model folder ``out/model``.

    ``out`` also receives ``split.csv`` (the exact train/val lists), ``checkpoints/{best,last}.ckpt``
    and ``logs/`` (per-epoch metrics as CSV). With ``resume`` the run continues from ``last.ckpt``.
    """
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        EMAWeightAveraging,
        LambdaCallback,
        LearningRateMonitor,
        ModelCheckpoint,
    )
    from lightning.pytorch.loggers import CSVLogger

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
    dropped: list = []
    sources = None
    if cfg.extra_train:  # several sources: one duplicate graph over all, one validation split per source
        from .sources import only_sources, split_sources

        split = split_sources([data, *cfg.extra_train], cfg.val_fraction, cfg.seed, cfg.other_dx)
        gate_pool = split.train  # the gate is fitted on every source's images, whatever is trained on
        if cfg.train_sources:
            split = only_sources(split, cfg.train_sources)
        train_s, val_s, sources = split.train, split.val, split.summary
    else:
        splits = discover(data, other_dx=cfg.other_dx)
        audit = None
        if cfg.group_duplicates or cfg.drop_test_duplicates:
            from .audit import cached_audit

            audit = cached_audit(data)
        if cfg.drop_test_duplicates and "test" in splits:
            test_clusters = {c for (s, split), c in zip(audit.samples, audit.cluster_ids) if split == "test"}
            groups = audit.groups()
            dropped = [s for s in splits.get("train", []) if groups.get(str(s.path)) in test_clusters]
            splits["train"] = [s for s in splits.get("train", []) if groups.get(str(s.path)) not in test_clusters]
        train_s, val_s = make_train_val(splits, cfg.val_fraction, cfg.seed,
                                        audit.groups() if cfg.group_duplicates and audit else None)
        gate_pool = train_s
    split_hash = write_split(out / "split.csv", {"train": train_s, "val": val_s})
    mean, std = default_mean_std(cfg.arch)
    weights = source_class_weights(train_s) if cfg.balance == "source_class" else None
    dm = LesionDataModule(train_s, val_s, cfg.img_size, mean, std, cfg.aug, cfg.batch_size, cfg.num_workers,
                          cfg.color_constancy, seed=cfg.seed, weights=weights)
    module = LesionClassifier(cfg.arch, cfg.pretrained, cfg.lr, cfg.weight_decay, cfg.optimizer,
                              cfg.warmup_epochs, cfg.freeze_blocks)
    log_odds = None
    if cfg.source_logit_adjustment:
        log_odds = source_log_odds(train_s)
        module.train_offsets = torch.tensor([log_odds[s.source] for s in train_s])

    clock["probe"] = time.perf_counter()
    probe = None
    if cfg.linear_probe and not resume:  # a resumed run's head comes from its checkpoint
        # 4,096 images pin down a 1,280-weight logistic regression (its time: training.timings_s.linear_probe).
        sub = random.Random(cfg.seed).sample(train_s, min(PROBE_IMAGES, len(train_s)))
        probe = fit_linear_probe(module.net, make_loader(sub, dm.train_tf, cfg.batch_size,
                                                         num_workers=cfg.num_workers))

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
    val_metrics = {k: round(float(v), 6) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    if ckpt.best_model_score is not None:
        val_metrics["val_auc"] = round(float(ckpt.best_model_score), 6)
    model_cfg = ModelConfig(
        arch=cfg.arch, img_size=cfg.img_size, mean=mean, std=std, pretrained=provenance(cfg.pretrained),
        color_constancy=cfg.color_constancy,
        training={"recipe": {**asdict(cfg)}, "data": str(data), "n_train": len(train_s),
                  "n_val": len(val_s), "n_dropped_test_duplicates": len(dropped),
                  "sources": sources, "source_log_odds": log_odds,
                  "split_sha256": split_hash, "epochs_run": trainer.current_epoch, "linear_probe": probe,
                  "command": command, "machine": _machine(),
                  "best_val": val_metrics, "versions": _versions()})
    if trainer.is_global_zero:
        save_model_folder(module.net, model_cfg, out / "model")
        atomic_write_text(out / "model" / "training_log.csv", collect_training_log(out))
        calibrate_model_folder(out / "model", val_s, cfg.target_sensitivity, cfg.batch_size)
        clock["calibrate_end"] = time.perf_counter()
        if hasattr(module.net, "forward_head"):  # the "cannot assess" gate needs pooled features
            fit = balanced_by_source(gate_pool, GATE_FIT_IMAGES, cfg.seed)
            fit_ood_for_model(out / "model", fit, val_s, batch_size=cfg.batch_size)
        clock["gate_end"] = time.perf_counter()
        # model.onnx makes predict, evaluate and the app take the fast torch-free path on this folder too.
        export_onnx(out / "model", out / "model" / ONNX_FILE)
        clock["export_end"] = time.perf_counter()
        _record_timings(out / "model", clock, len(train_s) * (trainer.current_epoch - clock.get("first_epoch", 0)))
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
