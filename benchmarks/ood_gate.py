"""Measure the "cannot assess" gate of a model folder.

    python benchmarks/ood_gate.py [--model DIR] --lesions ../shared/data/melanoma_cancer_dataset ../shared/data/isic2017

Rejection rate on the generated non-lesion set (melanoma.bench.nonlesion) and false rejection rate on real
lesion images (the test split of each dataset given, or all of it when it has no test split; for ISIC 2017,
train and validation). Writes a grid of non-lesion images that got through, if any.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from melanoma.bench.nonlesion import nonlesion_images
from melanoma.datasets import discover
from melanoma.engines import load_predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--lesions", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/ood-gate"))
    args = ap.parse_args()
    predictor = load_predictor(args.model, num_workers=2)
    report: dict = {"threshold": predictor.ood.threshold if predictor.ood else None}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, img in nonlesion_images():
            p = Path(tmp) / f"{name}.png"
            img.save(p)
            paths.append(p)
        rows = predictor.predict_paths(paths)
        passed = [Path(r["path"]).stem for r in rows if r["status"] == "ok"]
        report["non_lesion"] = {"n": len(rows), "rejected": sum(r["status"] == "out_of_distribution" for r in rows),
                                "rejection_rate": 1 - len(passed) / len(rows), "got_through": passed}
    for data in args.lesions:
        splits = discover(data)
        samples = splits["test"] if "test" in splits else [s for v in splits.values() for s in v]
        t = time.time()
        rows = predictor.predict_paths([s.path for s in samples])
        rejected = [r["path"] for r in rows if r["status"] == "out_of_distribution"]
        report[str(data)] = {"n": len(rows), "split": "test" if "test" in splits else "all",
                             "false_rejections": len(rejected), "false_rejection_rate": len(rejected) / len(rows),
                             "errors": sum(r["status"] == "error" for r in rows), "seconds": round(time.time() - t, 1),
                             "examples": rejected[:10]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ood_gate.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
