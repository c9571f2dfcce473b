"""Adapting a model folder to a new site from its unlabelled images: the network's batch-norm statistics
re-estimated on them (AdaBN, Li et al. 2016). No labels are used, so a clinic can run it on a folder of its
own dermoscopy before it trusts any number.

What it changes and what it does not (benchmarks/site_adaptation.py measures both on the external set):
the ranking of a new site's images usually improves, and their scores move, so the sensitivity and
specificity at the unchanged threshold move too; the threshold, temperature and gate stay those fitted on
the training sources' validation images. Written by hand: a few lines over torch's own batch-norm modules,
which no library wraps for a saved model folder.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import atomic_write_text, resolve_model_dir, sha256_file, write_checksums
from ..datasets import load_image
from ..imaging import ImageError
from .data import build_transform
from .models import load_model_folder, save_model_folder

MIN_IMAGES = 100  # fewer images estimate the statistics of a few lesions, not of the site
COPIED = ("ood.safetensors", "recipe.yaml", "training_log.csv")


@torch.no_grad()
def adapt_batchnorm(net: torch.nn.Module, batches) -> torch.nn.Module:
    """A copy of ``net`` whose batch-norm running statistics are the plain average over ``batches``
    (normalised image tensors); every weight stays as it was."""
    net = copy.deepcopy(net)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the network has no batch-norm layers: there is nothing to adapt")
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches, not an exponential one
    net.train()
    for x in batches:
        net(x.contiguous(memory_format=torch.channels_last))
    return net.eval()


def adapt_model_folder(model_dir: str | Path | None, images: list[Path], out_dir: str | Path,
                       batch_size: int = 32, min_images: int = MIN_IMAGES,
                       on_batch: Callable[[int], None] | None = None) -> tuple[Path, list[tuple[Path, str]]]:
    """Write a copy of the model folder at ``model_dir``, adapted to the site of ``images``, to ``out_dir``
    (weights, config with a ``site_adaptation`` record, gate, ``model.onnx``, checksums). Returns the folder
    and the (path, reason) of images that could not be read, which are left out."""
    from .export import export_onnx

    origin = resolve_model_dir(model_dir)
    net, cfg = load_model_folder(origin)
    tf = build_transform(cfg.img_size, cfg.mean, cfg.std, color_constancy=cfg.color_constancy,
                         downscale_to=cfg.downscale_to)
    tensors, skipped = [], []
    for path in images:
        try:
            tensors.append(tf(load_image(path, 2 * cfg.img_size)))
        except (ImageError, OSError) as e:
            skipped.append((Path(path), str(e)))
    if len(tensors) < min_images:
        raise ValueError(f"adapting to a site needs at least {min_images} readable images of it "
                         f"(got {len(tensors)}): fewer would describe a few lesions, not the site")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: choose a new folder for the adapted model")

    def batches():
        for i in range(0, len(tensors), batch_size):
            yield torch.stack(tensors[i:i + batch_size])
            if on_batch:
                on_batch(min(batch_size, len(tensors) - i))

    adapted = adapt_batchnorm(net.to(memory_format=torch.channels_last), batches())
    cfg.training = {**cfg.training, "site_adaptation": {
        "method": "AdaBN: batch-norm running statistics re-estimated on the site's unlabelled images",
        "n_images": len(tensors), "n_unreadable": len(skipped),
        "from_model_sha256": sha256_file(origin / "model.safetensors"),
        "unchanged": "threshold, temperature and gate: fitted on the training sources' validation images"}}
    tmp = out_dir.with_name(out_dir.name + ".partial")  # assembled beside, renamed whole: never half a folder
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model_folder(adapted, cfg, tmp)
    for name in COPIED:
        if (origin / name).is_file():
            shutil.copyfile(origin / name, tmp / name)
    export_onnx(tmp, tmp / "model.onnx")
    atomic_write_text(tmp / "README.md", f"# Adapted model\n\n{cfg.arch} from a model folder (weights sha256 "
                      f"{cfg.training['site_adaptation']['from_model_sha256'][:12]}…) with its batch-norm statistics "
                      f"re-estimated on {len(tensors)} unlabelled images of one site (AdaBN). Threshold, temperature "
                      "and gate are the original's. Check it on labelled images of the site before relying on it.\n")
    write_checksums(tmp)
    if out_dir.exists():
        out_dir.rmdir()
    tmp.rename(out_dir)
    return out_dir, skipped
