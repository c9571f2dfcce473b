"""Exploratory data analysis, with a check for shortcuts: image features that differ between the
classes but are not the lesion (dermatoscope vignettes, dark borders, brightness, colour cast).

A feature is a shortcut risk when it alone separates the classes: we report its prevalence per
class and the ROC-AUC of the feature used as a classifier (0.5 = no information; far from 0.5 = a
model can score well by learning it instead of the lesion).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .config import atomic_write_bytes, atomic_write_text
from .datasets import discover
from .imaging import Sample

DARK = 40  # 0-255 grey level below which a region counts as black


def image_features(path: Path) -> dict | None:
    """Size, mode and shortcut features of one image; None when it cannot be read."""
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
            rgb = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BOX), dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    grey = rgb.mean(axis=2)
    corners = np.concatenate([grey[:8, :8], grey[:8, -8:], grey[-8:, :8], grey[-8:, -8:]], axis=None)
    frame = np.concatenate([grey[:2].ravel(), grey[-2:].ravel(), grey[:, :2].ravel(), grey[:, -2:].ravel()])
    centre = grey[16:48, 16:48]
    # colour ratios of the middle only, so that a black vignette does not masquerade as a colour
    r, g, b = (rgb[16:48, 16:48, c].mean() for c in range(3))
    return {
        "width": size[0], "height": size[1], "mode": mode,
        "vignette": float(corners.mean() < DARK and centre.mean() > 2 * DARK),  # dark corners, bright middle
        "dark_border": float((frame < DARK).mean() > 0.5),  # a black frame around the picture
        "brightness": float(grey.mean() / 255),
        "corner_brightness": float(corners.mean() / 255),
        "redness": float(r / (r + g + b + 1e-6)),
        "blueness": float(b / (r + g + b + 1e-6)),  # ink marks and some dermatoscopes' light
        "contrast": float(grey.std() / 255),
    }


SHORTCUT_FEATURES = ("vignette", "dark_border", "brightness", "corner_brightness", "redness", "blueness", "contrast")


def shortcut_table(features: list[dict], labels: list[int]) -> dict[str, dict]:
    """Per feature: mean per class and the AUC of the feature alone as a malignancy score."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    table = {}
    for name in SHORTCUT_FEATURES:
        v = np.array([f[name] for f in features])
        auc = float(roc_auc_score(y, v)) if len(set(y.tolist())) == 2 else None
        table[name] = {"benign_mean": float(v[y == 0].mean()) if (y == 0).any() else None,
                       "malignant_mean": float(v[y == 1].mean()) if (y == 1).any() else None,
                       "auc": auc,
                       # how far from chance, whichever direction: 0 = useless, 0.5 = perfect separation
                       "separation": None if auc is None else abs(auc - 0.5)}
    return table


def sample_grid(samples: list[Sample], path: Path, n: int = 16, seed: int = 0, thumb: int = 96) -> None:
    """A PNG grid of ``n`` random images (4 per row)."""
    rng = np.random.default_rng(seed)
    pick = [samples[i] for i in rng.choice(len(samples), min(n, len(samples)), replace=False)]
    cols = 4
    grid = Image.new("RGB", (cols * thumb, -(-len(pick) // cols) * thumb), "white")
    for k, s in enumerate(pick):
        try:
            with Image.open(s.path) as im:
                grid.paste(im.convert("RGB").resize((thumb, thumb)), ((k % cols) * thumb, (k // cols) * thumb))
        except (OSError, ValueError):
            continue
    buf = io.BytesIO()
    grid.save(buf, "PNG")
    atomic_write_bytes(path, buf.getvalue())


def eda(data: str | Path, out: str | Path, on_progress: Callable[[int], None] | None = None) -> dict:
    """Counts, sizes, modes, colour statistics and the shortcut check, per split and class; writes
    ``eda.json`` and ``grid_<class>.png`` into ``out``."""
    out = Path(out)
    splits = discover(data)
    rows = []
    for split, items in splits.items():
        for s in items:
            f = image_features(s.path)
            if on_progress:
                on_progress(1)
            if f is not None:
                rows.append((split, s, f))
    summary: dict = {"data": str(data), "n_unreadable": sum(len(v) for v in splits.values()) - len(rows),
                     "counts": {split: {"benign": sum(1 for sp, s, _ in rows if sp == split and s.label == 0),
                                        "malignant": sum(1 for sp, s, _ in rows if sp == split and s.label == 1)}
                                for split in splits},
                     "sizes": dict(Counter(f"{f['width']}x{f['height']}" for _, _, f in rows).most_common(10)),
                     "modes": dict(Counter(f["mode"] for _, _, f in rows))}
    summary["shortcuts"] = shortcut_table([f for _, _, f in rows], [s.label for _, s, _ in rows])
    summary["shortcuts_per_split"] = {
        split: shortcut_table([f for sp, _, f in rows if sp == split], [s.label for sp, s, _ in rows if sp == split])
        for split in splits}
    out.mkdir(parents=True, exist_ok=True)
    for label, name in enumerate(("benign", "malignant")):
        sample_grid([s for _, s, _ in rows if s.label == label], out / f"grid_{name}.png")
    atomic_write_text(out / "eda.json", json.dumps(summary, indent=2) + "\n")
    return summary
