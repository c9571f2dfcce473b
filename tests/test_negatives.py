from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from melanoma.bench import nonlesion_pictures
from melanoma.imaging import Sample
from melanoma.negatives import (
    HELD_OUT_PACKAGES,
    KINDS,
    MIN_PHOTO_SIDE,
    gate_negatives,
    mask_path,
    opaque,
    package_photos,
    picture_sources,
    skin_beside_lesion,
)

SKIN, LESION = (205, 160, 140), (60, 35, 25)


def lesion_on_skin(folder: Path, name: str, centre: tuple[int, int], radius: int, with_mask: bool) -> Sample:
    """A 200x150 picture: skin with one dark disc; its mask beside it (HAM10000's layout) when ``with_mask``."""
    yy, xx = np.mgrid[0:150, 0:200]
    disc = np.hypot(xx - centre[0], yy - centre[1]) < radius
    a = np.where(disc[..., None], LESION, SKIN).astype(np.uint8)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    path = folder / "images" / f"{name}.jpg"
    Image.fromarray(a).save(path)
    if with_mask:
        (folder / "masks").mkdir(exist_ok=True)
        Image.fromarray((255 * disc).astype(np.uint8)).save(mask_path(path))
    return Sample(path, 0, "ham10000")


def test_skin_beside_a_lesion_never_touches_it(tmp_path: Path):
    rng = np.random.default_rng(0)
    s = lesion_on_skin(tmp_path, "a", (150, 50), 30, with_mask=True)  # the lesion in the top-right corner
    for _ in range(10):
        crop = np.asarray(skin_beside_lesion(Image.open(s.path), Image.open(mask_path(s.path)), rng), float)
        assert crop.shape == (256, 256, 3) and crop.mean(axis=2).min() > 120  # no dark lesion pixel in it
    whole = lesion_on_skin(tmp_path, "b", (100, 75), 150, with_mask=True)  # the lesion fills the picture
    assert skin_beside_lesion(Image.open(whole.path), Image.open(mask_path(whole.path)), rng) is None


def test_negatives_come_in_equal_kinds_seeded_and_without_the_held_out_photos(tmp_path: Path):
    samples = [lesion_on_skin(tmp_path, f"m{i}", (100, 75), 25, with_mask=i % 2 == 0) for i in range(6)]
    negatives = gate_negatives(samples, 9, seed=3)
    assert [n.source for n in negatives].count("negative:skin") == 3
    assert {n.source for n in negatives} == {f"negative:{k}" for k in KINDS}
    assert len(negatives) == 9 and len({n.path for n in negatives}) == 9
    again = gate_negatives(samples, 9, seed=3)
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(negatives, again, strict=True))
    other = gate_negatives(samples, 9, seed=4)
    assert not np.array_equal(np.asarray(negatives[-1].image), np.asarray(other[-1].image))
    for n in negatives:
        if n.source == "negative:skin":  # cut beside the lesion or made around it: skin-coloured, no dark disc
            assert np.asarray(n.image, float).mean(axis=2).min() > 120
    assert not any(set(p.parts) & set(HELD_OUT_PACKAGES) for p in package_photos())


def picture_folder(root: Path) -> Path:
    """Two sources of pictures: ``a`` (a red and a green picture, and an icon too small to count), ``b`` (one
    see-through sprite, a blue disc, in a nested folder); and an empty source ``c``."""
    for sub in ("a", "b/sprites", "c"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (200, 150), (200, 0, 0)).save(root / "a" / "red.png")
    Image.new("RGB", (160, 160), (0, 200, 0)).save(root / "a" / "green.jpg")
    Image.new("RGB", (MIN_PHOTO_SIDE - 1, 200), (0, 0, 0)).save(root / "a" / "icon.png")
    sprite = Image.new("RGBA", (150, 150), (0, 0, 0, 0))
    ImageDraw.Draw(sprite).ellipse((20, 20, 130, 130), fill=(0, 0, 255, 255))
    sprite.save(root / "b" / "sprites" / "disc.webp", lossless=True)
    (root / "c" / "notes.txt").write_text("not a picture")
    return root


def test_a_folder_of_pictures_is_a_fourth_kind_drawn_from_each_source_in_turn(tmp_path: Path):
    folder = picture_folder(tmp_path / "pictures")
    sources = picture_sources(folder)
    assert {k: [p.name for p in v] for k, v in sources.items()} == {"a": ["green.jpg", "red.png"], "b": ["disc.webp"]}
    samples = [lesion_on_skin(tmp_path, f"m{i}", (100, 75), 25, with_mask=True) for i in range(6)]
    plain, four = gate_negatives(samples, 6, seed=1), gate_negatives(samples, 8, seed=1, pictures=folder)
    assert [n.source for n in four].count("negative:pictures") == 2
    # the three built-in kinds are the same pictures with or without the folder when their shares are
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(plain, four[:6], strict=True))
    pictures = [n for n in four if n.source == "negative:pictures"]
    assert [n.path.split(":")[2] for n in pictures] == ["a", "b"]
    assert all(n.image.size == (256, 256) and n.image.mode == "RGB" for n in pictures)
    with Image.open(folder / "b" / "sprites" / "disc.webp") as sprite:  # see-through pixels hold anything: a colour
        flat = np.asarray(opaque(sprite, np.random.default_rng(0)))
    corners = flat[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == corners[0]).all() and (flat[75, 75] == (0, 0, 255)).all()
    assert not (corners[0] == flat[75, 75]).all()


def test_the_wider_non_lesion_set_takes_as_many_from_every_source_and_a_bad_folder_is_an_error(tmp_path: Path):
    folder = picture_folder(tmp_path / "pictures")
    wider = nonlesion_pictures(folder, per_source=3)
    assert [s.source for s in wider] == ["nonlesion:a", "nonlesion:b"] * 3 and all(s.label == 0 for s in wider)
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image))
               for a, b in zip(wider, nonlesion_pictures(folder, per_source=3), strict=True))
    with pytest.raises(ValueError, match="no folder of non-lesion pictures"):
        picture_sources(tmp_path / "missing")
    (tmp_path / "empty" / "c").mkdir(parents=True)
    with pytest.raises(ValueError, match="no subfolder with a picture"):
        picture_sources(tmp_path / "empty")
