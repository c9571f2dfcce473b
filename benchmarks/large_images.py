"""Photos larger than the model's input: does the way a big JPEG is decoded change the verdict?

    python benchmarks/large_images.py [--model DIR] [--data ../shared/data/isic2017] [--out runs/large-images]

Other clinics' dermatoscopes give 1,000-6,000 px photos; the training images were 224-256 px. The ISIC 2017
*validation* images (256 px, 150) are upscaled to 1024 x 768, 2048 x 1536 and 4096 x 3072 (bicubic, JPEG
quality 90: the same lesions, just more pixels) and predicted after three decodes: in full, and with libjpeg's
power-of-two DCT scaling ("draft") down to at least 1x and 2x the model's input. Reported against the full
decode: mean and max |p(malignant) difference|, labels flipped at the model's threshold, decode + preprocess
ms per image (1 thread). The noise floor: the same 256 px images merely re-encoded at JPEG quality 95.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from melanoma.bench import data_root
from melanoma.datasets import discover
from melanoma.engines import load_predictor
from melanoma.engines.base import preprocess
from melanoma.imaging import open_rgb

REPO = Path(__file__).resolve().parents[1]
SIZES = ((1024, 768), (2048, 1536), (4096, 3072))


def probabilities(predictor, paths: list[Path], draft: int | None) -> tuple[np.ndarray, float]:
    """(N,) calibrated p(malignant) of the network (gate aside) and decode + preprocess ms per image."""
    t = time.perf_counter()
    x = np.stack([preprocess(open_rgb(p, draft_size=draft), predictor.cfg) for p in paths])
    ms = (time.perf_counter() - t) / len(paths) * 1000
    logits = np.concatenate([predictor.forward(x[i:i + 32])[0] for i in range(0, len(x), 32)])
    return np.asarray(predictor.proba_from_logits(logits)), ms


def compare(p: np.ndarray, ref: np.ndarray, threshold: float) -> dict:
    d = np.abs(p - ref)
    return {"mean_abs_dp": round(float(d.mean()), 4), "max_abs_dp": round(float(d.max()), 3),
            "labels_flipped": int(((p >= threshold) != (ref >= threshold)).sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=data_root() / "isic2017")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "large-images")
    args = ap.parse_args()
    predictor = load_predictor(args.model, "onnx")
    size = predictor.cfg.img_size
    val = discover(args.data)["val"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        originals = [s.path for s in val]
        reencoded = [tmp / f"{p.stem}_q95.jpg" for p in originals]
        for src, dst in zip(originals, reencoded):
            Image.open(src).convert("RGB").save(dst, quality=95)
        ref, _ = probabilities(predictor, originals, None)
        p, _ = probabilities(predictor, reencoded, None)
        rows.append({"image": "256 px, re-encoded at quality 95 (noise floor)", "decode": "full",
                     **compare(p, ref, predictor.threshold)})
        for w, h in SIZES:
            big = [tmp / f"{p.stem}_{w}.jpg" for p in originals]
            for src, dst in zip(originals, big):
                Image.open(src).convert("RGB").resize((w, h), Image.BICUBIC).save(dst, quality=90)
            ref, ms = probabilities(predictor, big, None)
            rows.append({"image": f"{w} x {h}", "decode": "full", "ms_per_image": round(ms, 1)})
            for factor in (1, 2):
                p, ms = probabilities(predictor, big, factor * size)
                rows.append({"image": f"{w} x {h}", "decode": f"draft to >= {factor * size} px",
                             "ms_per_image": round(ms, 1), **compare(p, ref, predictor.threshold)})
            for f in big:
                f.unlink()
    result = {"model": str(args.model or "bundled"), "data": f"{args.data} (val)", "n": len(val), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "large_images.json").write_text(json.dumps(result, indent=2))
    print("| image | decode | ms/image | mean abs dp | max abs dp | labels flipped |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['decode']} | {r.get('ms_per_image', '-')} | {r.get('mean_abs_dp', '-')} | "
              f"{r.get('max_abs_dp', '-')} | {r.get('labels_flipped', '-')} |")


if __name__ == "__main__":
    main()
