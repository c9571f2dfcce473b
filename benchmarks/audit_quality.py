"""How good is the duplicate audit? Recall on synthetic copies of real images, and a grid of
flagged pairs to check precision by eye.

    python benchmarks/audit_quality.py ../shared/data/melanoma_cancer_dataset --out runs/audit-quality

Recall: 200 random images, each copied 5 ways (JPEG re-encode at quality 75, resize to 2x, 5% crop
on every side, horizontal flip, brightness x1.15); a copy counts as found when the audit of the copies
against the dataset pairs it with its own source. Precision: ``pairs_grid.png`` shows 24 random
flagged pairs of the dataset's own audit, to be judged by eye.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
from collections import Counter
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from melanoma.audit import audit, cached_audit
from melanoma.datasets import discover

EDITS = {
    "jpeg_q75": lambda im: _jpeg(im, 75),
    "resize_2x": lambda im: im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC),
    "crop_5pct": lambda im: im.crop((round(0.05 * im.width), round(0.05 * im.height),
                                     round(0.95 * im.width), round(0.95 * im.height))),
    "hflip": ImageOps.mirror,
    "brightness_1.15": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
}


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/audit-quality"))
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    samples = [s for items in discover(args.data).values() for s in items]
    rng = random.Random(0)
    picked = rng.sample(samples, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        copies = Path(tmp) / "copies"
        source_of = {}
        for k, s in enumerate(picked):
            d = copies / ("malignant" if s.label else "benign")
            d.mkdir(parents=True, exist_ok=True)
            im = Image.open(s.path).convert("RGB")
            for kind, edit in EDITS.items():
                p = d / f"{k}_{kind}.png"
                edit(im).save(p)
                source_of[str(p)] = str(s.path)
        result = audit(args.data, against=copies)
        hits = {(a, b) for a, b, _ in result.cross}
        found = Counter(Path(p).stem.split("_", 1)[1] for p, src in source_of.items() if (p, src) in hits)
        wrong = sum(1 for a, b, _ in result.cross if source_of[a] != b)
    recall = {kind: found[kind] / args.n for kind in EDITS}
    report = {"n_sources": args.n, "recall_per_edit": recall,
              "recall_overall": sum(found.values()) / (args.n * len(EDITS)),
              "matches_to_an_image_other_than_the_source": wrong,
              "note": "'other than the source' can be a true duplicate of the source already in the dataset"}
    print(json.dumps(report, indent=2))
    (args.out / "recall.json").write_text(json.dumps(report, indent=2) + "\n")

    pairs = cached_audit(args.data).pairs
    sample = rng.sample(pairs, min(24, len(pairs)))
    t = 112
    grid = Image.new("RGB", (4 * (2 * t + 12), 6 * (t + 6)), "white")
    for k, (i, j, _) in enumerate(sample):
        x, y = (k % 4) * (2 * t + 12), (k // 4) * (t + 6)
        for m, idx in enumerate((i, j)):
            grid.paste(Image.open(result_path(args.data, idx)).convert("RGB").resize((t, t)), (x + m * t, y))
    grid.save(args.out / "pairs_grid.png")
    print(f"written: {args.out / 'recall.json'}, {args.out / 'pairs_grid.png'} (24 flagged pairs to judge by eye)")


def result_path(data: Path, idx: int) -> Path:
    return cached_audit(data).samples[idx][0].path


if __name__ == "__main__":
    main()
