"""Several training sources: one duplicate graph, a validation split per source, nothing held out trained on."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from melanoma.datasets import DatasetError
from melanoma.sources import only_sources, split_sources

from conftest import textured_lesion, write_ham_like


def write_kaggle_like(root: Path, rng, n_train: int = 10, n_test: int = 3) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in ("Benign", "Malignant"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                textured_lesion(rng).save(root / split / cls / f"{i}.png")
    return root


def test_every_source_gets_a_validation_split_and_no_held_out_image_is_trained_on_through_a_copy(tmp_path: Path):
    rng = np.random.default_rng(0)
    kaggle = write_kaggle_like(tmp_path / "kaggle", rng)
    ham = write_ham_like(tmp_path / "ham", rng, [("nv", 2)] * 12 + [("mel", 1)] * 8 + [("bcc", 1)] * 2)
    ids = {r["image_id"]: r for r in csv.DictReader((ham / "HAM10000_metadata.csv").open())}
    # Two HAM images become copies of Kaggle images: one of a training image, one of a test image.
    shutil.copy(kaggle / "train/Malignant/0.png", ham / "images" / "ISIC_0000024.png")
    (ham / "images" / "ISIC_0000024.jpg").unlink()
    shutil.copy(kaggle / "test/Benign/1.png", ham / "images" / "ISIC_0000000.png")
    (ham / "images" / "ISIC_0000000.jpg").unlink()

    split = split_sources([kaggle, ham], val_fraction=0.25, seed=0)
    by = split.val_by_source()
    assert set(by) == {"kaggle", "ham"} and all({s.label for s in v} == {0, 1} for v in by.values())
    assert not {s.path for s in split.train} & {s.path for s in split.val}
    train_names = {(s.source, s.path.name) for s in split.train}
    val_names = {(s.source, s.path.name) for s in split.val}
    # bcc is left out by default; the HAM copy of a Kaggle test image is never trained on
    assert not any(ids[s.path.stem]["dx"] == "bcc" for s in split.train + split.val if s.source == "ham")
    assert ("ham", "ISIC_0000000.png") not in train_names
    # a lesion's images sit on one side
    sides = {}
    for side, items in (("train", split.train), ("val", split.val)):
        for s in items:
            if s.source == "ham":
                sides.setdefault(s.group, set()).add(side)
    assert sides and all(len(v) == 1 for v in sides.values())
    # a copy and its original never straddle train and validation
    copy = ("ham", "ISIC_0000024.png")
    kaggle_original = kaggle / "train/Malignant/0.png"
    original_side = "train" if any(s.path == kaggle_original for s in split.train) else \
        "val" if any(s.path == kaggle_original for s in split.val) else None
    copy_side = "train" if copy in train_names else "val" if copy in val_names else None
    assert {original_side, copy_side} != {"train", "val"}
    assert "train" not in {original_side, copy_side} or original_side == copy_side
    assert split.summary["ham"]["n_test"] == 0 and split.summary["kaggle"]["n_test"] == 6
    assert split.summary["ham"]["n_train"] + split.summary["ham"]["n_val"] + \
        split.summary["ham"]["n_left_out_copies_of_held_out"] == 32


def test_a_source_with_its_own_validation_split_keeps_it(tmp_path: Path):
    rng = np.random.default_rng(1)
    kaggle = write_kaggle_like(tmp_path / "kaggle", rng)
    isic = tmp_path / "isic"
    isic.mkdir()
    for name, n in (("Training", 6), ("Validation", 4)):
        with (isic / f"ISIC-2017_{name}_Part3_GroundTruth.csv").open("w") as f:
            f.write("image_id,melanoma,seborrheic_keratosis\n")
            for i in range(n):
                textured_lesion(rng).save(isic / f"{name}_{i}.jpg")
                f.write(f"{name}_{i},{float(i % 2)},0.0\n")
    split = split_sources([kaggle, isic], val_fraction=0.25, seed=0)
    assert sorted(s.path.stem for s in split.val_by_source()["isic"]) == [f"Validation_{i}" for i in range(4)]
    assert split.summary["isic"]["val_split"] == "own" and split.summary["isic"]["n_train"] == 6


def test_training_on_some_sources_keeps_the_split_and_every_validation_image(tmp_path: Path):
    rng = np.random.default_rng(2)
    kaggle = write_kaggle_like(tmp_path / "kaggle", rng)
    ham = write_ham_like(tmp_path / "ham", rng, [("nv", 1)] * 8 + [("mel", 1)] * 8)
    full = split_sources([kaggle, ham], val_fraction=0.25, seed=0)
    part = only_sources(full, ["ham"])
    assert {s.source for s in part.train} == {"ham"}
    assert [s.path for s in part.train] == [s.path for s in full.train if s.source == "ham"]
    assert part.val == full.val  # the first stage's validation images, every source
    assert part.summary["kaggle"]["n_train"] == 0 and not part.summary["kaggle"]["trained_on"]
    assert part.summary["ham"] == {**full.summary["ham"], "trained_on": True}
    with pytest.raises(DatasetError, match="no source 'isic'"):
        only_sources(full, ["isic"])


def test_source_class_weights_draw_each_sources_classes_equally_and_keep_its_share():
    from melanoma.imaging import Sample
    from melanoma.sources import source_class_weights

    samples = ([Sample(Path(f"h{i}"), int(i < 5), "ham") for i in range(100)]  # 5% melanoma
               + [Sample(Path(f"k{i}"), int(i < 25), "kaggle") for i in range(50)]  # 50%
               + [Sample(Path(f"o{i}"), 0, "benign_only") for i in range(10)])
    w = source_class_weights(samples)
    mass = {}
    for s, x in zip(samples, w):
        mass[(s.source, s.label)] = mass.get((s.source, s.label), 0) + x
    assert mass[("ham", 0)] == pytest.approx(50) and mass[("ham", 1)] == pytest.approx(50)
    assert mass[("kaggle", 0)] == pytest.approx(25) and mass[("kaggle", 1)] == pytest.approx(25)
    assert mass[("benign_only", 0)] == pytest.approx(10)  # one class: nothing to balance


def test_source_log_odds_is_each_sources_melanoma_log_odds_and_finite_for_one_class():
    import math

    from melanoma.imaging import Sample
    from melanoma.sources import source_log_odds

    samples = ([Sample(Path(f"h{i}"), int(i < 9), "ham") for i in range(99)]  # 9 melanomas, 90 benign
               + [Sample(Path(f"k{i}"), int(i < 25), "kaggle") for i in range(50)]
               + [Sample(Path(f"o{i}"), 0, "benign_only") for i in range(9)])
    odds = source_log_odds(samples)
    assert odds["ham"] == pytest.approx(math.log(10 / 91))
    assert odds["kaggle"] == pytest.approx(0.0)
    assert odds["benign_only"] == pytest.approx(math.log(1 / 10))  # no melanoma: low, not -inf


def test_a_weighted_epoch_follows_the_weights_and_is_fixed_by_seed_and_epoch():
    from melanoma.nn.data import EpochShuffle

    weights = [9.0] + [1.0] * 9  # the first index carries half the mass
    s = EpochShuffle(range(10), num_replicas=1, rank=0, seed=3, weights=weights)
    s.set_epoch(4)
    first = [i for i, _ in s]
    assert first == [i for i, _ in s] and len(first) == 10
    s.set_epoch(5)
    assert [i for i, _ in s] != first
    draws = []
    for epoch in range(200):
        s.set_epoch(epoch)
        draws += [i for i, _ in s]
    assert 0.45 < draws.count(0) / len(draws) < 0.55
    two = [EpochShuffle(range(10), num_replicas=2, rank=r, seed=3, weights=weights) for r in (0, 1)]
    for t in two:
        t.set_epoch(4)
    assert sorted([i for t in two for i, _ in t]) == sorted(first)  # DDP ranks split the same draws
