"""The lesion segmenter behind lesion-centred framing (:mod:`melanoma.lesion_crop`): trained on HAM10000's lesion
masks, exported as ``segmenter.onnx`` into a model folder.

The network: a backbone's stride-8 and stride-16 stages (timm's ``forward_intermediates``, the rest pruned) and a
small head: a coarse (S/8, S/8) lesion map is all a crop box needs. Training sees each picture as other clinics
take it (:mod:`melanoma.views`): zoomed out inside skin (the mask follows the picture), with a grid, a film look,
blur, hair, glare or a round field (the mask unchanged), flipped and turned. Rulers and bubbles stay out, as they
stay out of the classifier's training: the stress suite measures them held out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import ModelConfig, ModelError, atomic_write_bytes, atomic_write_text, load_config, write_checksums
from ..datasets import discover
from ..imaging import load_any
from ..lesion_crop import SEGMENTER_FILE, segmenter_input, segmenter_spec
from ..views import view, zoom_out_placed
from .models import create_model

STAGES = (2, 3)  # feature_info indices: stride 8 and stride 16
STRIDE = 8  # the map's cells per input side: S / STRIDE
VIEWS = ("grid", "film", "blur", "hair", "glare", "field")  # views that move no lesion pixel


@dataclass
class SegmentConfig:
    arch: str = "tf_efficientnet_lite0"
    size: int = 160  # px, the segmenter's square input
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    zoom_out: float = 0.5  # share of training pictures zoomed out
    views: float = 0.3  # share seen through one of VIEWS
    val_fraction: float = 0.1  # lesions (all their images) held out to measure the masks
    seed: int = 42
    num_workers: int = 2


class SegmenterNet(nn.Module):
    """(N, 3, S, S) -> (N, 1, S/8, S/8) lesion logits."""

    def __init__(self, arch: str = "tf_efficientnet_lite0", pretrained: str = "imagenet"):
        super().__init__()
        self.encoder = create_model(arch, pretrained, num_classes=1000)
        channels = sum(self.encoder.feature_info[i]["num_chs"] for i in STAGES)
        self.encoder.prune_intermediate_layers(indices=list(STAGES), prune_head=True)
        self.head = nn.Sequential(nn.Conv2d(channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.Conv2d(64, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine, coarse = self.encoder.forward_intermediates(x, indices=list(STAGES), intermediates_only=True,
                                                          stop_early=True)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([fine, coarse], 1))


def mask_path(image: Path) -> Path:
    """HAM10000's mask of an image: ``masks/<id>_segmentation.png`` beside ``images/``."""
    return image.parent.parent / "masks" / f"{image.stem}_segmentation.png"


def augment(img: Image.Image, mask: Image.Image, rng: np.random.Generator, cfg: SegmentConfig):
    """A training picture and its mask, seen as another clinic might take it."""
    if rng.random() < cfg.zoom_out:
        img, (x, y, w, h) = zoom_out_placed(img, rng, max_side=2 * cfg.size)
        canvas = Image.new("L", img.size)
        canvas.paste(mask.resize((w, h), Image.BILINEAR), (x, y))
        mask = canvas
    if rng.random() < cfg.views:
        img = view(img, VIEWS[int(rng.integers(len(VIEWS)))], rng)
    k, flip = int(rng.integers(4)), rng.random() < 0.5
    turn = [None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270][k]
    for op in ([turn] if turn else []) + ([Image.Transpose.FLIP_LEFT_RIGHT] if flip else []):
        img, mask = img.transpose(op), mask.transpose(op)
    return img, mask


def target(mask: Image.Image, size: int) -> np.ndarray:
    """(1, S/8, S/8) lesion share of each map cell (the mask resized to S, then averaged over 8x8 blocks)."""
    m = np.asarray(mask.convert("L").resize((size, size), Image.BILINEAR), np.float32) / 255
    cells = size // STRIDE
    return m.reshape(cells, STRIDE, cells, STRIDE).mean((1, 3))[None]


class MaskDataset(Dataset):
    """(image, target) pairs; with ``train`` the augmentation is fixed by (seed, epoch, index)."""

    def __init__(self, samples: list, cfg: SegmentConfig, train: bool):
        self.samples, self.cfg, self.train, self.epoch = samples, cfg, train, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        img, mask = load_any(self.samples[i]), Image.open(mask_path(self.samples[i].path)).convert("L")
        if self.train:
            rng = np.random.default_rng([self.cfg.seed, self.epoch, i])
            img, mask = augment(img, mask, rng, self.cfg)
        return torch.from_numpy(segmenter_input(img, self.cfg.size)), torch.from_numpy(target(mask, self.cfg.size))


def soft_iou(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * y).sum((1, 2, 3))
    return (inter + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) - inter + 1)


class SegmenterModule(L.LightningModule):
    def __init__(self, cfg: SegmentConfig, steps: int):
        super().__init__()
        self.cfg, self.steps = cfg, steps
        self.net = SegmenterNet(cfg.arch).to(memory_format=torch.channels_last)

    def training_step(self, batch, _):
        x, y = batch
        logits = self.net(x.contiguous(memory_format=torch.channels_last))
        # cross-entropy on each cell's lesion share, plus 1 - soft IoU so a small lesion weighs as much as a large
        loss = F.binary_cross_entropy_with_logits(logits, y) + (1 - soft_iou(logits, y)).mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        found = self.net(x.contiguous(memory_format=torch.channels_last)) >= 0  # p >= 0.5
        truth = y >= 0.5
        iou = (found & truth).sum((1, 2, 3)) / (found | truth).sum((1, 2, 3)).clamp(min=1)
        self.log("val_iou", iou.mean(), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=1e-4)
        return [opt], [{"scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, self.cfg.lr, total_steps=self.steps,
                                                                         pct_start=0.1), "interval": "step"}]


class _Epochs(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        trainer.train_dataloader.dataset.epoch = trainer.current_epoch


def split_masks(ham_root: str | Path, cfg: SegmentConfig) -> tuple[list, list]:
    """HAM10000's images that have a mask, split by lesion: (train, val)."""
    from sklearn.model_selection import GroupShuffleSplit

    samples = [s for s in discover(ham_root, other_dx="benign")["all"] if mask_path(s.path).is_file()]
    if not samples:
        raise ModelError(f"{ham_root}: no images with a mask in masks/<id>_segmentation.png")
    groups = [s.group or str(s.path) for s in samples]
    tr, va = next(GroupShuffleSplit(1, test_size=cfg.val_fraction, random_state=cfg.seed).split(samples,
                                                                                                 groups=groups))
    return [samples[i] for i in tr], [samples[i] for i in va]


def train_segmenter(ham_root: str | Path, out_dir: str | Path, cfg: SegmentConfig | None = None) -> Path:
    """Train on HAM10000's masks; writes ``out_dir/segmenter.onnx`` and ``out_dir/segmenter.json`` (the settings,
    the split's sizes, the validation IoU by epoch)."""
    cfg = cfg or SegmentConfig()
    L.seed_everything(cfg.seed, workers=True)
    train, val = split_masks(ham_root, cfg)
    loader = DataLoader(MaskDataset(train, cfg, True), cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                        drop_last=len(train) > cfg.batch_size, persistent_workers=False)
    val_loader = DataLoader(MaskDataset(val, cfg, False), cfg.batch_size, num_workers=cfg.num_workers)
    module = SegmenterModule(cfg, steps=cfg.epochs * len(loader))
    out_dir = Path(out_dir)
    ious: list[float] = []
    by_epoch = L.pytorch.callbacks.LambdaCallback(
        on_validation_epoch_end=lambda t, m: ious.append(round(float(t.callback_metrics["val_iou"]), 4)))
    trainer = L.Trainer(max_epochs=cfg.epochs, accelerator="cpu", default_root_dir=out_dir, logger=False,
                        enable_checkpointing=False, callbacks=[_Epochs(), by_epoch], enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, loader, val_loader)
    export_segmenter(module.net.eval(), cfg.size, out_dir / SEGMENTER_FILE)
    record = {"settings": asdict(cfg), "data": str(ham_root), "n_train": len(train), "n_val": len(val),
              "val_iou_by_epoch": ious}
    atomic_write_text(out_dir / "segmenter.json", json.dumps(record, indent=2) + "\n")
    return out_dir / SEGMENTER_FILE


def export_segmenter(net: nn.Module, size: int, out: Path) -> Path:
    import io

    buf = io.BytesIO()
    # The TorchScript exporter, as export.py uses (the torch.export one needs onnxscript).
    torch.onnx.export(net.float().to(memory_format=torch.contiguous_format), (torch.zeros(1, 3, size, size),), buf,
                      input_names=["image"], output_names=["lesion_logits"], opset_version=17,
                      dynamic_axes={"image": {0: "batch"}, "lesion_logits": {0: "batch"}}, dynamo=False)
    atomic_write_bytes(Path(out), buf.getvalue())
    return Path(out)


def add_lesion_crop(model_dir: str | Path, segmenter: str | Path, margin: float) -> ModelConfig:
    """Give a model folder lesion-centred framing: copy ``segmenter`` (an ONNX file written by
    :func:`train_segmenter`) in as ``segmenter.onnx`` and record the crop in its config; checksums rewritten."""
    model_dir = Path(model_dir)
    cfg = load_config(model_dir, "config.json")
    spec = segmenter_spec(segmenter, margin)
    record = json.loads(Path(segmenter).with_name("segmenter.json").read_text())
    atomic_write_bytes(model_dir / SEGMENTER_FILE, Path(segmenter).read_bytes())
    cfg.lesion_crop = asdict(spec)
    cfg.training["lesion_crop"] = {"segmenter": record, "margin": margin}
    cfg.save(model_dir / "config.json")
    write_checksums(model_dir)
    return cfg
