from pathlib import Path

import numpy as np
from PIL import Image

from melanoma.imaging import Sample
from melanoma.negatives import HELD_OUT_PACKAGES, KINDS, gate_negatives, mask_path, package_photos, skin_beside_lesion

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
