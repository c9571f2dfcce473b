"""Training on several sources at once: one duplicate graph over all of them, one validation split per source.

Public dermoscopy sets are not independent: HAM10000's and ISIC 2017's melanomas are near-copies of Kaggle
images, and some of those Kaggle copies are Kaggle *test* images. So every image of every source is put in one
graph whose edges are near-duplicates (:mod:`melanoma.audit`) and shared lesions (HAM10000's ``lesion_id``);
a connected component is one lesion photo, however many sources hold it. Then:

* held out: every test image, every source's own validation split (ISIC 2017 has one), and for a source
  without one a stratified ``val_fraction`` of its images drawn by whole components;
* trained on: every other image whose component holds no held-out image, so no validation or test image
  reaches training through a copy in another source.

Torch-free; :func:`melanoma.nn.train.train` calls :func:`split_sources` with the recipe's datasets.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import atomic_write_text
from .datasets import DatasetError, discover
from .imaging import Sample


@dataclass
class SourceSplit:
    train: list[Sample]
    val: list[Sample]  # every source's validation images, each tagged with its source
    summary: dict = field(default_factory=dict)  # per source: images trained on, validated on, left out

    def val_by_source(self) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for s in self.val:
            out.setdefault(s.source, []).append(s)
        return out


def _components(samples: list[Sample], pairs: list[tuple[int, int, float]]) -> np.ndarray:
    """Component id per sample: near-duplicate pairs plus images that share a (source, lesion) group."""
    from .audit import cluster

    edges = list(pairs)
    first: dict[tuple[str, str], int] = {}
    for i, s in enumerate(samples):
        if s.group:
            j = first.setdefault((s.source, s.group), i)
            if j != i:
                edges.append((j, i, 1.0))
    return cluster(len(samples), edges)


def duplicate_pairs(samples: list[Sample], on_progress: Callable[[int], None] | None = None
                    ) -> list[tuple[int, int, float]]:
    """Near-duplicate and exact pairs among ``samples`` (indices), cached by the file list, sizes and mtimes."""
    from .audit import CROP, NEAR_DUP_SIMILARITY, THUMB, cache_dir, hash_files, near_pairs

    listing = [f"{s.path.resolve()}|{s.path.stat().st_size}|{s.path.stat().st_mtime_ns}" for s in samples]
    key = hashlib.sha256("\n".join([*listing, str(NEAR_DUP_SIMILARITY), str(THUMB), str(CROP)]).encode())
    cache = cache_dir() / f"pairs-{key.hexdigest()[:20]}.json"
    if cache.is_file():
        try:
            return [tuple(p) for p in json.loads(cache.read_text())]
        except ValueError:
            pass  # an unreadable cache entry is recomputed
    hashes = hash_files([s.path for s in samples], on_progress)
    missing = [str(s.path) for s in samples if str(s.path) not in hashes]
    if missing:
        raise DatasetError(f"{len(missing)} training images cannot be read (first: {missing[0]})")
    thumbs = np.stack([hashes[str(s.path)].thumbs for s in samples])
    pairs = near_pairs(thumbs)
    by_exact: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_exact.setdefault(hashes[str(s.path)].exact, []).append(i)
    pairs += [(g[0], j, 1.0) for g in by_exact.values() for j in g[1:]]
    atomic_write_text(cache, json.dumps(pairs))
    return pairs


def split_sources(datasets: list[str | Path], val_fraction: float = 0.1, seed: int = 42,
                  other_dx: str = "exclude", on_progress: Callable[[int], None] | None = None) -> SourceSplit:
    """Train and validation images over ``datasets`` (each a folder or CSV :func:`discover` reads).

    Each source's validation split is its own ``val`` split when it has one, else a stratified, seeded
    ``val_fraction`` of its ``train`` (or ``all``) images drawn by whole components. Test images are never used.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not datasets:
        raise DatasetError("no datasets given")
    parts = []  # (sample, split) over all sources
    for d in datasets:
        splits = discover(d, other_dx=other_dx)
        if not (splits.get("train") or splits.get("all")):
            raise DatasetError(f"{d}: no training split; the dataset has: {', '.join(splits)}")
        parts += [(s, split) for split, items in splits.items() for s in items]
    names = [s.source for s, _ in parts]
    if len(set(names)) < len({(str(Path(d).resolve())) for d in datasets}):
        raise DatasetError(f"two datasets share a folder name ({', '.join(sorted(set(names)))}); "
                           "sources are told apart by it")
    samples = [s for s, _ in parts]
    comp = _components(samples, duplicate_pairs(samples, on_progress))

    held = {i for i, (_, split) in enumerate(parts) if split in ("test", "val")}
    for source in dict.fromkeys(names):
        idx = [i for i, (s, split) in enumerate(parts) if s.source == source]
        if any(parts[i][1] == "val" for i in idx):
            continue
        pool = [i for i in idx if parts[i][1] in ("train", "all")]
        labels = [samples[i].label for i in pool]
        if min(labels.count(0), labels.count(1)) < 2:
            raise DatasetError(f"{source}: needs at least 2 images of each class for its validation split")
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / val_fraction)), shuffle=True, random_state=seed)
        _, val_idx = next(folds.split(pool, labels, [comp[i] for i in pool]))
        held |= {pool[k] for k in val_idx}
    held_components = {comp[i] for i in held}
    val = [samples[i] for i in sorted(held) if parts[i][1] != "test"]
    train = [s for i, (s, split) in enumerate(parts)
             if split in ("train", "all") and i not in held and comp[i] not in held_components]

    summary = {}
    for source in dict.fromkeys(names):
        n_pool = sum(1 for s, split in parts if s.source == source and split in ("train", "all"))
        tr = Counter(s.label for s in train if s.source == source)
        va = Counter(s.label for s in val if s.source == source)
        n_val_own = sum(1 for s, split in parts if s.source == source and split == "val")
        summary[source] = {
            "n_train": tr[0] + tr[1], "n_train_malignant": tr[1],
            "n_val": va[0] + va[1], "n_val_malignant": va[1],
            "val_split": "own" if n_val_own else f"{val_fraction:g} of its images, by duplicate component",
            "n_left_out_copies_of_held_out": n_pool - (tr[0] + tr[1]) - (0 if n_val_own else va[0] + va[1]),
            "n_test": sum(1 for s, split in parts if s.source == source and split == "test"),
        }
    return SourceSplit(sorted(train, key=lambda s: str(s.path)), sorted(val, key=lambda s: str(s.path)), summary)


def balanced_by_source(samples: list, n: int, seed: int) -> list:
    """``n`` samples drawn at random, an equal share from each source (all of a source smaller than its share)."""
    by: dict[str, list] = {}
    for s in samples:
        by.setdefault(s.source, []).append(s)
    rng, out, left = random.Random(seed), [], n
    for k, (_, items) in enumerate(sorted(by.items(), key=lambda kv: len(kv[1]))):
        take = min(len(items), left // (len(by) - k))
        out += rng.sample(items, take)
        left -= take
    return out


def only_sources(split: SourceSplit, keep: list[str]) -> SourceSplit:
    """``split`` training on the sources in ``keep`` only; validation and the split itself unchanged, so a
    second training stage on a subset never sees the first stage's validation images. The summary records the
    sources left out of training (``n_train`` 0, ``trained_on`` false). An unknown name is an error naming it."""
    known = set(split.summary)
    unknown = [k for k in keep if k not in known]
    if unknown:
        raise DatasetError(f"train_sources: no source {unknown[0]!r} (sources: {', '.join(sorted(known))})")
    summary = {name: {**info, "trained_on": name in keep,
                      **({} if name in keep else {"n_train": 0, "n_train_malignant": 0})}
               for name, info in split.summary.items()}
    return SourceSplit([s for s in split.train if s.source in keep], split.val, summary)


def source_log_odds(samples: list) -> dict[str, float]:
    """Each source's melanoma log-odds among ``samples``, ``log((n_malignant + 1) / (n_benign + 1))`` (the + 1
    keeps a one-class source finite). Training adds it to each image's logit (``source_logit_adjustment``)."""
    counts = Counter((s.source, s.label) for s in samples)
    return {src: math.log((counts[(src, 1)] + 1) / (counts[(src, 0)] + 1))
            for src in dict.fromkeys(s.source for s in samples)}


def source_class_weights(samples: list) -> list[float]:
    """A sampling weight per sample such that every source keeps its share of the draws and, within it, benign
    and malignant images are drawn equally often: ``n_source / (2 * n_source_class)``. Without it a source's
    melanoma rate is a shortcut: HAM10000's training images are a few percent melanoma, the Kaggle set's almost
    half, so "looks like HAM10000" alone lowers p(malignant). A source with one class keeps weight 1."""
    counts = Counter((s.source, s.label) for s in samples)
    per_source = Counter(s.source for s in samples)
    return [per_source[s.source] / (2 * counts[(s.source, s.label)]) if counts[(s.source, 1 - s.label)] else 1.0
            for s in samples]
