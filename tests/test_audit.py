import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from melanoma.audit import audit, cached_audit, write_audit
from melanoma.datasets import discover, make_train_val

from conftest import textured_lesion


def copies(img: Image.Image) -> dict[str, Image.Image]:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=75)
    w, h = img.size
    c = round(0.05 * w)
    return {"jpeg": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
            "resize": img.resize((w * 2, h * 2), Image.Resampling.BICUBIC),
            "crop": img.crop((c, c, w - c, h - c)),
            "hflip": ImageOps.mirror(img), "rot90": img.rotate(90),
            "brighter": ImageEnhance.Brightness(img).enhance(1.15)}


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """train: 20 distinct images per class; test: 6 copies of train images (one per kind of edit),
    plus 6 new distinct images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "d"
    originals = []
    for split, cls in [("train", "benign"), ("train", "malignant"), ("test", "benign"), ("test", "malignant")]:
        (root / split / cls).mkdir(parents=True)
    for i in range(40):
        img = textured_lesion(rng)
        cls = "malignant" if i % 2 else "benign"
        img.save(root / "train" / cls / f"t{i}.png")
        originals.append((img, cls, i))
    for k, kind in enumerate(copies(originals[0][0])):
        src_img, cls, i = originals[k]
        copies(src_img)[kind].save(root / "test" / cls / f"copy_{kind}_of_t{i}.jpg")
    for j in range(6):
        textured_lesion(rng).save(root / "test" / ("malignant" if j % 2 else "benign") / f"new{j}.png")
    return root


def test_planted_copies_are_found_and_distinct_images_are_not(planted: Path, tmp_path: Path):
    result = audit(planted)
    clean = {Path(p).name for p in result.clean_test_paths()}
    assert clean == {f"new{j}.png" for j in range(6)}  # every edited copy was caught, no new image was
    s = result.summary
    assert s["test_with_copy_in_train"] == {"benign": 3, "malignant": 3, "total": 6}
    assert s["near_duplicate_clusters"] == 6 and s["images_in_near_duplicate_clusters"] == 12
    assert s["clusters_with_disagreeing_labels"] == 0
    write_audit(result, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "audit.json").read_text()) == s
    rows = (tmp_path / "out" / "clusters.csv").read_text().splitlines()
    assert rows[0] == "path,split,label,cluster_id,cluster_size" and len(rows) == 53


def test_exact_copy_with_another_label_is_flagged(tmp_path: Path):
    rng = np.random.default_rng(1)
    for cls in ("benign", "malignant"):
        (tmp_path / cls).mkdir()
    img = textured_lesion(rng)
    img.save(tmp_path / "benign" / "a.png")
    img.save(tmp_path / "malignant" / "a_again.png")
    textured_lesion(rng).save(tmp_path / "malignant" / "b.png")
    s = audit(tmp_path).summary
    assert s["exact_duplicate_groups"] == 1 and s["clusters_with_disagreeing_labels"] == 1


def test_cross_dataset_overlap(planted: Path, tmp_path: Path):
    other = tmp_path / "other" / "malignant"
    other.mkdir(parents=True)
    Image.open(planted / "train" / "malignant" / "t1.png").resize((200, 200)).save(other / "x.jpg")
    textured_lesion(np.random.default_rng(9)).save(other / "y.png")
    s = audit(planted, against=tmp_path / "other").summary
    assert s["against"]["n_images"] == 2 and s["against"]["n_with_copy_in_data"] == 1
    assert s["against"]["per_class"] == {"benign": 0, "malignant": 1}


def test_grouped_validation_keeps_clusters_together(planted: Path):
    import shutil
    # give every train image a near-copy inside train, so grouping matters
    for p in list((planted / "train").rglob("*.png")):
        Image.open(p).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(p.with_name(p.stem + "_flip.png"))
    shutil.rmtree(planted / "test")
    groups = cached_audit(planted).groups()
    train, val = make_train_val(discover(planted), val_fraction=0.25, seed=0, groups=groups)
    assert {groups[str(s.path)] for s in train}.isdisjoint({groups[str(s.path)] for s in val})
    assert len(val) == 20 and sum(s.label for s in val) == 10
    assert cached_audit(planted).summary == cached_audit(planted).summary  # served from the cache


@pytest.mark.train
def test_training_can_drop_train_images_that_have_a_copy_in_test(planted: Path, tmp_path: Path):
    import csv as csv_module

    from melanoma.nn.models import load_model_folder
    from melanoma.nn.train import train
    from melanoma.recipe import TrainConfig

    cfg = TrainConfig(arch="small_cnn", pretrained="none", img_size=32, epochs=1, batch_size=8, num_workers=0,
                      val_fraction=0.25, accelerator="cpu", devices=1, fast_dev_run=True, drop_test_duplicates=True)
    model_dir = train(planted, tmp_path / "run", cfg)
    _, model_cfg = load_model_folder(model_dir)
    assert model_cfg.training["n_dropped_test_duplicates"] == 6
    used = {Path(r["path"]).name for r in csv_module.DictReader(open(tmp_path / "run" / "split.csv"))}
    assert len(used) == 34 and not {f"t{i}.png" for i in range(6)} & used


def test_hash_cache_serves_unchanged_files_rehashes_changed_ones_and_forgets_deleted_ones(tmp_path: Path):
    import sqlite3

    from melanoma.audit import THUMB, cache_dir, hash_files

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(paths[-1])
    first = hash_files(paths, workers=1)
    served = []
    second = hash_files(paths, on_progress=served.append, workers=1)
    assert served == [3]  # all three from the cache, none recomputed
    for p in paths:
        assert second[str(p)].exact == first[str(p)].exact
        np.testing.assert_array_equal(second[str(p)].thumbs, first[str(p)].thumbs)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(paths[0])  # changed in place
    paths[2].unlink()
    served.clear()
    third = hash_files(paths[:2], on_progress=served.append, workers=1)
    assert served == [1, 1] and third[str(paths[0])].exact != first[str(paths[0])].exact
    rows = sqlite3.connect(cache_dir() / f"thumbs{THUMB}.sqlite").execute("SELECT path FROM hashes").fetchall()
    assert sorted(r[0] for r in rows) == sorted(str(p.resolve()) for p in paths[:2])  # one row per live file


def test_audit_cache_keeps_only_the_most_recently_used_results(tmp_path: Path, monkeypatch):
    import melanoma.audit as audit_module

    from conftest import write_class_folders

    monkeypatch.setenv("MELANOMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(audit_module, "AUDIT_CACHE_ENTRIES", 2)
    sets = [write_class_folders(tmp_path / f"d{i}", 4) for i in range(3)]
    cached_audit(sets[0])
    cached_audit(sets[1])
    cached_audit(sets[0])  # a hit: d0 becomes the most recently used
    cached_audit(sets[2])  # a third entry pushes out the least recently used, d1's
    entries = list((tmp_path / "cache").glob("audit-*.json"))
    kept = {json.loads(p.read_text())["samples"][0][0].split("/")[-3] for p in entries}
    assert len(entries) == 2 and kept == {"d0", "d2"}


def test_hashing_many_files_after_evaluate_ran_in_the_same_process_finishes(tmp_path: Path):
    # evaluate then audit in one process: forked hashing workers inherited a lock held by one of evaluate's
    # threads and hung for good.
    import subprocess
    import sys

    from conftest import SAMPLES

    rng = np.random.default_rng(0)
    for i in range(80):  # more than one chunk, so a pool of workers is used
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    code = ("from pathlib import Path\nfrom melanoma.cli import app\n"
            f"app(['evaluate', {str(SAMPLES)!r}, '--out', {str(tmp_path / 'eval')!r}], standalone_mode=False)\n"
            "from melanoma.audit import hash_files\n"
            f"print('HASHED', len(hash_files(sorted(Path({str(tmp_path)!r}).glob('*.png')), workers=2)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "HASHED 80" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
