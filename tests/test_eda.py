from pathlib import Path

import numpy as np
from PIL import Image

from melanoma.eda import eda, image_features

from conftest import textured_lesion


def vignetted(img: Image.Image) -> Image.Image:
    a = np.asarray(img).copy()
    h, w = a.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    a[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 > (0.48 * w) ** 2] = 0
    return Image.fromarray(a)


def test_planted_vignette_shortcut_is_detected(tmp_path: Path):
    rng = np.random.default_rng(0)
    for cls in ("benign", "malignant"):
        (tmp_path / cls).mkdir()
    for i in range(20):
        textured_lesion(rng).save(tmp_path / "benign" / f"b{i}.png")
        # 16 of 20 malignant images come through a dermatoscope with a round field of view
        img = textured_lesion(rng)
        (vignetted(img) if i < 16 else img).save(tmp_path / "malignant" / f"m{i}.png")
    s = eda(tmp_path, tmp_path / "out")
    v = s["shortcuts"]["vignette"]
    assert v["benign_mean"] == 0 and v["malignant_mean"] == 0.8
    assert v["auc"] == 0.9  # the vignette alone separates the classes
    assert abs(s["shortcuts"]["redness"]["auc"] - 0.5) < 0.3  # texture colour is the same per class
    assert s["counts"] == {"all": {"benign": 20, "malignant": 20}}
    assert (tmp_path / "out" / "grid_malignant.png").is_file()


def test_features_of_odd_modes_and_broken_files(tmp_path: Path):
    Image.new("L", (50, 40), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (30, 30), (255, 0, 0, 128)).save(tmp_path / "a.png")
    (tmp_path / "x.png").write_bytes(b"nope")
    assert image_features(tmp_path / "g.png")["mode"] == "L"
    assert image_features(tmp_path / "a.png")["redness"] > 0.9
    assert image_features(tmp_path / "x.png") is None
