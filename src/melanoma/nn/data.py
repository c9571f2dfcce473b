"""The torch side of the data: training augmentation (its settings: :class:`melanoma.recipe.AugConfig`),
transforms, the Dataset, the shuffle and the DataModule.

Finding datasets and splitting them is torch-free and lives in :mod:`melanoma.datasets`.
"""

from __future__ import annotations

import warnings
from functools import partial

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate
from torchvision.transforms import v2

from ..imaging import COLOR_CONSTANCY, Sample, cap_shorter_side, load_any, shades_of_grey
from ..recipe import AugConfig
from ..views import FAMILIES, check_families, view


class RandomVignette(torch.nn.Module):
    """With probability ``p``, darken everything outside a random circle, as a dermatoscope's round
    field of view does. In the Kaggle data such frames mark 20% of malignant but 0.2% of benign
    images (``melanoma eda``); adding them to both classes keeps the frame from predicting the label.
    With ``min_darkness`` < 1 the rim is darkened by a random fraction in [min_darkness, 1] instead of
    blacked out, as the lens shading of many dermatoscopes does.
    Input and output: image tensor (C, H, W), any dtype."""

    # Hand-written: torchvision has no vignette/aperture transform.
    def __init__(self, p: float, min_darkness: float = 1.0):
        super().__init__()
        if not 0 <= min_darkness <= 1:
            raise ValueError(f"vignette_min_darkness must be in [0, 1] (got {min_darkness})")
        self.p, self.min_darkness = p, min_darkness

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return img
        h, w = img.shape[-2:]
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        cy, cx = ((torch.rand(2) - 0.5) * 0.2).tolist()  # centre moved up to 10% of the half-width
        radius = 0.85 + 0.5 * torch.rand(())  # half-widths: 0.85 crops the sides, 1.35 only the corners
        edge = 0.03 + 0.15 * torch.rand(())  # soft rim width
        mask = ((radius - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) / edge).clamp(0, 1)
        if self.min_darkness < 1:  # drawn only then, so recipes without it keep their random stream
            darkness = self.min_darkness + (1 - self.min_darkness) * torch.rand(())
            mask = 1 - darkness * (1 - mask)
        return (img.float() * mask).round().to(img.dtype) if not img.is_floating_point() else img * mask


class RandomSiteView(torch.nn.Module):
    """With probability ``p``, one of ``families`` (:mod:`melanoma.views`: zoom-out, a grid beside the lesion, a
    film scan, blur...) applied to the PIL image, as another clinic's pictures look; the label is kept. Drawn
    from torch's random stream, so :class:`LesionDataset`'s seeding fixes it as it fixes every other step.
    ``max_side``: the view is built at most this large (the model's input is smaller still)."""

    def __init__(self, p: float, families: list[str], max_side: int):
        super().__init__()
        check_families(families)
        if p > 0 and not families:
            raise ValueError("aug.site_views > 0 needs aug.site_families (some of " + ", ".join(FAMILIES) + ")")
        self.p, self.families, self.max_side = p, list(families), max_side

    def forward(self, img: Image.Image) -> Image.Image:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return img
        family = self.families[int(torch.randint(len(self.families), ()))]
        rng = np.random.default_rng(int(torch.randint(2**62, ())))
        return view(img, family, rng, self.max_side)


def color_constancy_step(method: str | None):
    """The PIL -> PIL colour-constancy step named in a model's config (``None``: no step)."""
    if method not in COLOR_CONSTANCY:
        raise ValueError(f"color_constancy must be one of {COLOR_CONSTANCY} (got {method!r})")
    return shades_of_grey if method == "shades_of_grey" else None


FILL_PADDING = {"reflect": "reflect", "nearest": "edge"}


def build_transform(img_size: int, mean, std, aug: AugConfig | None = None,
                    color_constancy: str | None = None, downscale_to: int | None = None,
                    crop=None) -> v2.Compose:
    """PIL RGB image of any size -> float tensor (3, img_size, img_size), normalised with mean/std.

    The whole image is resized to a square (no crop), so a lesion near the edge is never cut off.
    The resize runs in PIL (bilinear, antialiased) and colour constancy on its result, so the
    torch-free path (:func:`melanoma.engines.base.preprocess`) reproduces these pixels exactly. With ``aug`` the
    random training augmentation is applied after that (a site view, ``aug.site_views``, before the resize).
    ``downscale_to``: first shrink the image until its shorter side is at most that many pixels
    (:func:`melanoma.imaging.cap_shorter_side`). ``crop`` (training; an
    :class:`melanoma.engines.onnx_engine.LesionCropper`): the picture cropped around its lesion after its site view
    and before the cap, as a predictor frames a decoded picture before its pixels
    (:meth:`melanoma.engines.base.BasePredictor.frame`).
    """
    cap = [] if downscale_to is None else [v2.Lambda(partial(cap_shorter_side, px=downscale_to), Image.Image)]
    site = aug is not None and aug.site_views > 0
    # a site view works on the capped picture (cheaper), a crop on the picture's own pixels; either is capped after
    steps: list = [] if crop is not None else list(cap)
    if site:
        steps.append(RandomSiteView(aug.site_views, aug.site_families, max_side=2 * img_size))
    if crop is not None:
        steps.append(v2.Lambda(crop, Image.Image))
    if site or crop is not None:
        steps += cap
    steps += [v2.Resize((img_size, img_size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)]
    cc = color_constancy_step(color_constancy)
    if cc is not None:
        steps.append(v2.Lambda(cc, Image.Image))
    steps.append(v2.ToImage())
    if aug is not None:
        if aug.fill_mode not in ("constant", *FILL_PADDING):
            raise ValueError(f"fill_mode must be constant, reflect or nearest (got {aug.fill_mode!r})")
        if aug.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if aug.vflip:
            steps.append(v2.RandomVerticalFlip())
        affine = v2.RandomAffine(degrees=aug.rotation, scale=(1 - aug.zoom, 1 + aug.zoom),
                                 shear=aug.shear, interpolation=v2.InterpolationMode.BILINEAR)
        if aug.fill_mode == "constant":
            steps.append(affine)
        else:
            # torchvision's affine only fills with a constant; padding first with reflected/edge
            # pixels and cropping back afterwards gives Keras' reflect/nearest fill modes.
            pad = img_size // 4
            steps += [v2.Pad(pad, padding_mode=FILL_PADDING[aug.fill_mode]), affine,
                      v2.CenterCrop(img_size)]
        steps.append(v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue))
        if aug.vignette > 0:
            steps.append(RandomVignette(aug.vignette, aug.vignette_min_darkness))
        if aug.jpeg > 0:  # other clinics compress differently; a re-encode alone moves p (experiments/006-jpeg)
            if not 1 <= aug.jpeg_quality_min <= 95:
                raise ValueError(f"jpeg_quality_min must be in [1, 95] (got {aug.jpeg_quality_min})")
            steps.append(v2.RandomApply([v2.JPEG((aug.jpeg_quality_min, 95))], p=aug.jpeg))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class LesionDataset(Dataset):
    """Items are ``(image (3, H, W) float32, label float32 scalar, index)``; ``None`` for an
    unreadable file, which is named in one warning and dropped by :func:`collate_skip_none`.

    A key may be an index or ``(index, epoch)`` (from :class:`EpochShuffle`); with ``seed`` the random
    augmentation of that image in that epoch is then fixed by (seed, epoch, index) alone.
    """

    def __init__(self, samples: list[Sample], transform: v2.Compose, draft_size: int | None = None,
                 seed: int | None = None, frame=None):
        self.samples = samples
        self.transform = transform
        # a framing of a decoded picture, before transform: a LesionCropper (training: -> picture) or its frame
        # method (a predictor: -> picture and the segmenter's evidence, which the item then ends with)
        self.frame = frame
        self.draft_size = draft_size  # let big JPEGs decode at reduced size (inference only)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]):
        i, epoch = key if isinstance(key, tuple) else (key, None)
        s = self.samples[i]
        try:
            img = load_any(s, self.draft_size)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            warnings.warn(f"skipping unreadable image {s.path}: {e}", stacklevel=1)
            return None
        framed = img if self.frame is None else self.frame(img)
        img, evidence = framed if isinstance(framed, tuple) else (framed, None)
        if self.seed is None or epoch is None:
            x = self.transform(img)
        else:
            x = self._seeded_transform(img, epoch, i)
        return (x, torch.tensor(float(s.label)), i) + (() if evidence is None else (torch.from_numpy(evidence),))

    def _seeded_transform(self, img: Image.Image, epoch: int, i: int) -> torch.Tensor:
        # Worker processes' random streams restart with the process, so a resumed run would repeat the
        # augmentations of its first epochs; seeding each draw makes them a function of the epoch instead
        # (and independent of the number of workers). fork_rng leaves the caller's stream untouched, and costs
        # little beside decoding and augmenting the image (benchmarks/train_speed.py).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1, np.uint64)[0] >> 1))
            return self.transform(img)


class EpochShuffle(DistributedSampler):
    """A shuffle fixed by (seed, epoch) that yields ``(index, epoch)`` keys for :class:`LesionDataset`.

    A plain shuffle draws from the process's random stream, which restarts with the process: a run resumed
    after epoch 2 then replays epoch 0's order and augmentations (measured: identical batches), so the
    network sees the same images twice and memorises them. torch's DistributedSampler already permutes
    by seed + epoch and splits the data across DDP processes; Lightning calls ``set_epoch`` before each epoch
    and keeps a sampler of this type as it is. Single process: ``num_replicas=1, rank=0``.
    """

    def __init__(self, *args, weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def __iter__(self):
        if self.weights is None:
            return ((i, self.epoch) for i in super().__iter__())
        # weighted: draws with replacement, as many as the data has, fixed by (seed, epoch), split across ranks
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g).tolist()
        return ((i, self.epoch) for i in drawn[self.rank:self.total_size:self.num_replicas])


def collate_skip_none(batch):
    batch = [b for b in batch if b is not None]
    return default_collate(batch) if batch else None


def make_loader(samples: list[Sample], transform: v2.Compose, batch_size: int, shuffle: bool = False,
                num_workers: int = 0, drop_last: bool = False, draft_size: int | None = None,
                sampler: EpochShuffle | None = None, frame=None) -> DataLoader:
    """A loader over ``samples``; with ``sampler``, order and augmentation follow (sampler.seed, epoch)."""
    seed = sampler.seed if sampler is not None else None
    return DataLoader(LesionDataset(samples, transform, draft_size, seed, frame), batch_size=batch_size,
                      shuffle=shuffle if sampler is None else None, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_skip_none, drop_last=drop_last, persistent_workers=num_workers > 0)


class LesionDataModule(L.LightningDataModule):
    """Train and validation loaders for one run; augmentation on train only."""

    def __init__(self, train: list[Sample], val: list[Sample], img_size: int, mean, std,
                 aug: AugConfig | None, batch_size: int = 32, num_workers: int = 2,
                 color_constancy: str | None = None, seed: int = 0, weights: list[float] | None = None,
                 downscale_to: int | None = None, crop=None):
        super().__init__()
        self.seed, self.weights, self.crop = seed, weights, crop
        self.train_samples, self.val_samples = train, val
        self.train_tf = build_transform(img_size, mean, std, aug, color_constancy, downscale_to, crop)
        self.eval_tf = build_transform(img_size, mean, std, color_constancy=color_constancy, downscale_to=downscale_to)
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochShuffle(range(len(self.train_samples)), num_replicas=world, rank=rank, seed=self.seed,
                               weights=self.weights)
        # Lightning requests this loader, and starts loading, before it calls set_epoch on a resumed run.
        sampler.set_epoch(trainer.current_epoch if trainer else 0)
        return make_loader(self.train_samples, self.train_tf, self.batch_size, sampler=sampler,
                           num_workers=self.num_workers, drop_last=len(self.train_samples) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.val_samples, self.eval_tf, self.batch_size, num_workers=self.num_workers,
                           frame=self.crop)
