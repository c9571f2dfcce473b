"""Cache 028's gate features for ``choose.py`` (fit and validation data only; melanoma.bench.gate_cache): the gate's
2,000 fit images and half of them through each of 028's gate views, 1,200 negatives, the validation images, and 450
of them through each of nine site views.

    python experiments/029-lesion-gate/features.py RUN_DIR OUT_DIR [--negatives N] [--pictures DIR] [--only NAME]

(031 caches 1,600 negatives with its folder of pictures, ``--only neg`` beside a copy of this cache.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from melanoma.bench import gate_cache

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--negatives", type=int, default=1200)
    ap.add_argument("--pictures", type=Path, help="a folder of non-lesion pictures: the negatives' fourth kind")
    ap.add_argument("--only", help="cache this one array (e.g. neg)")
    args = ap.parse_args()
    gate_cache.write(args.run, args.out, args.negatives, args.pictures, only=args.only)
