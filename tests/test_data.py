from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from melanoma.datasets import DatasetError, discover, make_train_val, select_split, write_split
from melanoma.nn.data import LesionDataset, RandomSiteView, build_transform, collate_skip_none
from melanoma.recipe import AugConfig

from conftest import lesion_image, write_class_folders


def labels_by_name(samples):
    return {s.path.name: s.label for s in samples}


def test_discover_train_test_layout_any_letter_case(kaggle_like: Path):
    splits = discover(kaggle_like)
    assert set(splits) == {"train", "test"}
    assert len(splits["train"]) == 24 and len(splits["test"]) == 12
    for s in splits["train"] + splits["test"]:
        assert s.label == int(s.path.parent.name.lower() == "malignant")


def test_discover_class_folders_directly_is_one_split(tmp_path: Path):
    write_class_folders(tmp_path, 3, names=("BeNiGn", "MALIGNANT"))
    (tmp_path / "notes.txt").write_text("not an image")
    splits = discover(tmp_path)
    assert list(splits) == ["all"]
    assert sorted(s.label for s in splits["all"]) == [0, 0, 0, 1, 1, 1]
    # a single-split dataset serves any split name, e.g. --split test
    assert select_split(splits, "test") == splits["all"]


def test_discover_isic_csv_layout(tmp_path: Path):
    rng = np.random.default_rng(0)
    (tmp_path / "ISIC-2017_Training_Data").mkdir()
    (tmp_path / "ISIC-2017_Validation_Data").mkdir()
    rows = {"Training": [("ISIC_1", 1.0), ("ISIC_2", 0.0), ("ISIC_3", 0.0)], "Validation": [("ISIC_9", 1.0)]}
    for part, items in rows.items():
        for image_id, mel in items:
            lesion_image(int(mel), rng).save(tmp_path / f"ISIC-2017_{part}_Data" / f"{image_id}.jpg")
        lines = ["image_id,melanoma,seborrheic_keratosis"] + [f"{i},{m},0.0" for i, m in items]
        (tmp_path / f"ISIC-2017_{part}_Part3_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    splits = discover(tmp_path)
    assert set(splits) == {"train", "val"}
    assert labels_by_name(splits["train"]) == {"ISIC_1.jpg": 1, "ISIC_2.jpg": 0, "ISIC_3.jpg": 0}
    assert labels_by_name(splits["val"]) == {"ISIC_9.jpg": 1}
    # the CSV itself is also a dataset
    assert labels_by_name(discover(tmp_path / "ISIC-2017_Validation_Part3_GroundTruth.csv")["val"]) == {"ISIC_9.jpg": 1}


def test_every_sample_carries_the_diagnosis_its_data_names(tmp_path: Path):
    rng = np.random.default_rng(0)
    for image_id in ("m", "k", "n", "v", "b"):
        lesion_image(0, rng).save(tmp_path / f"{image_id}.jpg")
    isic17 = tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv"
    isic17.write_text("image_id,melanoma,seborrheic_keratosis\nm,1.0,0.0\nk,0.0,1.0\nn,0.0,0.0\n")
    assert {s.path.stem: (s.label, s.dx) for s in discover(isic17)["train"]} == {
        "m": (1, "mel"), "k": (0, "bkl"), "n": (0, "nv")}  # ISIC 2017's three classes
    melanoma_only = tmp_path / "sub" / "labels.csv"
    melanoma_only.parent.mkdir()
    melanoma_only.write_text("image_id,melanoma\nm,1\nn,0\n")
    for image_id in ("m", "n"):
        (tmp_path / f"{image_id}.jpg").rename(tmp_path / "sub" / f"{image_id}.jpg")
    assert {s.path.stem: s.dx for s in discover(melanoma_only)["all"]} == {"m": "mel", "n": ""}  # benign, unnamed
    ham = tmp_path / "HAM10000_metadata.csv"
    ham.write_text("lesion_id,image_id,dx\nL1,k,bkl\nL2,v,vasc\nL3,b,bcc\n")
    assert {s.path.stem: (s.label, s.dx) for s in discover(ham, other_dx="malignant")["all"]} == {
        "k": (0, "bkl"), "v": (0, "vasc"), "b": (1, "bcc")}


def test_discover_csv_with_missing_images_warns(tmp_path: Path):
    lesion_image(1, np.random.default_rng(0)).save(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text("image_id,melanoma\na,1\nb,0\n")
    with pytest.warns(UserWarning, match="1 listed images not found"):
        splits = discover(tmp_path)
    assert labels_by_name(splits["all"]) == {"a.jpg": 1}


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such file or folder"),
    (lambda p: (p / "cats").mkdir() or p, "no dataset found"),
    (lambda p: (p / "x.txt").write_text("x") and p / "x.txt", "a folder, a ground-truth CSV or a run's"),
])
def test_discover_rejects_wrong_folders_with_a_reason(tmp_path: Path, make, message):
    with pytest.raises(DatasetError, match=message):
        discover(make(tmp_path))


def test_validation_split_is_stratified_seeded_and_disjoint(tmp_path: Path):
    write_class_folders(tmp_path, 20)
    splits = discover(tmp_path)
    train, val = make_train_val(splits, val_fraction=0.2, seed=7)
    assert len(val) == 8 and sum(s.label for s in val) == 4  # stratified: half malignant
    assert not {s.path for s in train} & {s.path for s in val}
    assert len(train) + len(val) == 40
    assert make_train_val(splits, 0.2, seed=7) == (train, val)
    assert make_train_val(splits, 0.2, seed=8)[1] != val
    h1 = write_split(tmp_path / "a.csv", {"train": train, "val": val})
    h2 = write_split(tmp_path / "b.csv", {"train": train, "val": val})
    assert h1 == h2 and (tmp_path / "a.csv").read_text().count("\n") == 41
    assert discover(tmp_path / "a.csv") == {"train": train, "val": val}  # a run's split.csv is a dataset too


def test_existing_val_split_is_used_as_is(kaggle_like: Path):
    import shutil
    shutil.copytree(kaggle_like / "test", kaggle_like / "val")
    splits = discover(kaggle_like)
    train, val = make_train_val(splits)
    assert train == splits["train"] and val == splits["val"]


@pytest.mark.parametrize("size", [(300, 200), (40, 40), (1000, 750)])
def test_transforms_shape_dtype_and_range(size):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    for aug in (None, AugConfig()):
        x = build_transform(64, (0.5,) * 3, (0.5,) * 3, aug)(img)
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert x.min() >= -1.0 - 1e-5 and x.max() <= 1.0 + 1e-5


def test_fill_mode_controls_exposed_corners():
    torch.manual_seed(0)
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    aug = dict(rotation=45, zoom=0.0, shear=0.0, hflip=False, vflip=False, brightness=0, contrast=0,
               saturation=0, hue=0)
    dark_pixels = {}
    for mode in ("constant", "reflect", "nearest"):
        tf = build_transform(64, (0.0,) * 3, (1.0,) * 3, AugConfig(fill_mode=mode, **aug))
        dark_pixels[mode] = np.mean([(tf(white) < 0.5).float().mean().item() for _ in range(5)])
    assert dark_pixels["constant"] > 0.05  # black corners
    assert dark_pixels["reflect"] == 0 and dark_pixels["nearest"] == 0
    with pytest.raises(ValueError, match="fill_mode"):
        build_transform(64, (0.5,) * 3, (0.5,) * 3, AugConfig(fill_mode="wrap"))


def test_unreadable_image_is_named_in_a_warning_and_skipped(tmp_path: Path):
    write_class_folders(tmp_path, 2)
    bad = tmp_path / "malignant" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    samples = discover(tmp_path)["all"]
    ds = LesionDataset(samples, build_transform(32, (0.5,) * 3, (0.5,) * 3))
    with pytest.warns(UserWarning, match="broken.jpg"):
        items = [ds[i] for i in range(len(ds))]
    assert sum(item is None for item in items) == 1
    x, y, idx = collate_skip_none(items)
    assert x.shape == (4, 3, 32, 32) and len(y) == 4
    assert collate_skip_none([None, None]) is None


def test_shades_of_grey_removes_a_colour_cast_and_keeps_neutral_images():
    from melanoma.imaging import shades_of_grey

    rng = np.random.default_rng(0)
    grey = rng.integers(40, 200, (64, 64, 1)).repeat(3, axis=2).astype(np.uint8)
    tinted = np.clip(grey * np.array([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)  # a warm camera
    corrected = np.asarray(shades_of_grey(Image.fromarray(tinted)), np.float32)
    means = corrected.reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 0.03 * means.mean()  # the cast is gone
    assert np.abs(np.asarray(shades_of_grey(Image.fromarray(grey)), np.int16) - grey).max() <= 1


def test_vignette_darkens_the_rim_and_keeps_the_centre():
    from melanoma.nn.data import RandomVignette

    torch.manual_seed(0)
    img = torch.full((3, 64, 64), 200, dtype=torch.uint8)
    outs = torch.stack([RandomVignette(p=1.0)(img) for _ in range(10)])
    assert outs.dtype == torch.uint8 and (outs[:, :, 32, 32] == 200).all()  # the lesion stays
    corners = outs[:, :, [0, 0, -1, -1], [0, -1, 0, -1]].float()
    assert corners.mean() < 100  # the frame is dark
    assert torch.equal(RandomVignette(p=0.0)(img), img)


def test_a_partial_vignette_shades_the_rim_by_a_random_fraction():
    from melanoma.nn.data import RandomVignette

    img = torch.full((3, 64, 64), 200.0)
    fractions = []
    for seed in range(20):  # same seed: same circle, so the shading is a fraction of the black frame's
        torch.manual_seed(seed)
        black = RandomVignette(p=1.0)(img)
        torch.manual_seed(seed)
        shaded = RandomVignette(p=1.0, min_darkness=0.3)(img)
        rim = black < 100
        fractions.append(((200 - shaded[rim]) / (200 - black[rim])).mean().item())
    assert min(fractions) >= 0.3 - 1e-4 and max(fractions) <= 1 + 1e-4
    assert max(fractions) - min(fractions) > 0.3  # the darkness varies from image to image
    with pytest.raises(ValueError, match="vignette_min_darkness"):
        RandomVignette(p=1.0, min_darkness=1.5)


def test_jpeg_augmentation_recompresses_at_the_quality_asked():
    still = dict(rotation=0, zoom=0.0, shear=0.0, hflip=False, vflip=False, brightness=0, contrast=0,
                 saturation=0, hue=0)
    img = lesion_image(1, np.random.default_rng(0), size=64)
    plain = build_transform(64, (0.0,) * 3, (1.0,) * 3, AugConfig(**still))(img)
    torch.manual_seed(0)
    changes = {}
    for q in (10, 95):  # qualities drawn from [q, 95]
        tf = build_transform(64, (0.0,) * 3, (1.0,) * 3, AugConfig(jpeg=1.0, jpeg_quality_min=q, **still))
        changes[q] = np.mean([float((tf(img) - plain).abs().mean()) for _ in range(8)])
    assert 0 < changes[95] < changes[10]  # every image re-compressed; lower quality, more change
    off = build_transform(64, (0.0,) * 3, (1.0,) * 3, AugConfig(jpeg=0.0, **still))(img)
    assert torch.equal(off, plain)
    with pytest.raises(ValueError, match="jpeg_quality_min"):
        build_transform(64, (0.5,) * 3, (0.5,) * 3, AugConfig(jpeg=0.5, jpeg_quality_min=0))


def test_site_views_keep_the_size_and_are_fixed_by_the_seeded_stream():
    img = lesion_image(1, np.random.default_rng(0), size=64)
    always, never = RandomSiteView(1.0, ["zoom_out", "grid"], max_side=128), RandomSiteView(0.0, ["grid"], 128)
    assert never(img) is img
    torch.manual_seed(3)
    a = always(img)
    torch.manual_seed(3)
    assert np.array_equal(np.asarray(a), np.asarray(always(img)))  # torch's stream decides family and pixels
    assert max(a.size) <= 128 and not np.array_equal(np.asarray(a.resize(img.size)), np.asarray(img))
    zoomed = [RandomSiteView(1.0, ["zoom_out"], max_side=128)(img) for _ in range(3)]
    assert all(z.size[0] > img.size[0] for z in zoomed)  # a wider frame, built at most 128 px
    tf = build_transform(32, (0.5,) * 3, (0.5,) * 3, AugConfig(site_views=1.0, site_families=["blur"]))
    assert tf(img).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="fog"):
        RandomSiteView(0.5, ["fog"], 128)
