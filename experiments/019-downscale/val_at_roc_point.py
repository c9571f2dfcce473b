"""experiments/019-downscale: at the threshold where the external ROC reaches sensitivity 0.85, the share of each
source's validation melanomas found (run from the repository root; prints one line per model)."""

from pathlib import Path

import numpy as np

from melanoma.bench import labels_and_scores as scores
from melanoma.bench import standard_sets
from melanoma.datasets import read_split
from melanoma.engines import load_predictor

ext = standard_sets()["ISIC 2018 test (external)"]
for m, split in (("runs/e019/model", "runs/e016/split.csv"), ("runs/e019s43/model", "runs/e016s43/split.csv")):
    p = load_predictor(Path(m))
    y, s = scores(p, ext)
    t = np.sort(s[y == 1])[::-1][int(np.ceil(0.85 * y.sum())) - 1]  # lowest score among the top 85% of melanomas
    val = read_split(Path(split))["val"]
    out = []
    for src in ("ham10000", "isic2017", "melanoma_cancer_dataset"):
        yv, sv = scores(p, [v for v in val if v.source == src])
        out.append(f"{src} {((sv >= t) & (yv == 1)).sum() / yv.sum():.3f}")
    print(m, f"ext threshold {t:.3f} (shipped {p.threshold:.3f}):", ", ".join(out))
