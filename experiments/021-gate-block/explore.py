import sys
import numpy as np
sys.path.insert(0, "src")
from melanoma.ood import OODDetector, gate_threshold, FIELD_SHARE
d = dict(np.load(sys.argv[1]))
names = sorted({k.split("/")[1] for k in d if k.startswith("val/")})
D = d["ext"].shape[1]
BLOCKS = {"all": slice(0, D)}
print("D", D, {k: v.shape for k, v in d.items()})

def fit(sources, k=64, cols=slice(None), quantile=0.995):
    per = 2000 // len(sources)
    f = np.concatenate([d[f"train/{n}"][:per, cols] for n in sources] +
                       [d[f"field/{n}"][: round(FIELD_SHARE * per), cols] for n in sources])
    det = OODDetector.fit(f, k=k)
    sc = np.concatenate([det.score(d[f"val/{n}"][:, cols]) for n in sources])
    det.threshold = gate_threshold(sc, np.concatenate([[n] * len(d[f"val/{n}"]) for n in sources]), quantile)
    return det

def report(label, **kw):
    cols = kw.get("cols", slice(None))
    row = []
    for held in names:
        det = fit([n for n in names if n != held], **kw)
        row.append(f"{held[:5]} {100*(det.score(d[f'val/{held}'][:, cols]) > det.threshold).mean():.1f}")
    det = fit(names, **kw)
    r = lambda key: 100 * ((det.score(d[key][:, cols]) > det.threshold) | d.get(key + "_flat", False)).mean()
    print(f"{label:28s} held-out: {' '.join(row)} | all: non {r('non'):.1f} dev {r('dev'):.1f} ext {r('ext'):.1f}")

for k in (16, 32, 64, 128, 256):
    report(f"k={k}", k=k)
for q in (0.99,):
    report(f"k=64 q={q}", quantile=q)

# per-block detectors; score = max over blocks of score / that block's own threshold; threshold 1 then re-set
edges = np.cumsum([0, 80, 112, 192, 320])
blocks = [slice(edges[i], edges[i + 1]) for i in range(4)]
for b, c in zip((3, 4, 5, 6), blocks):
    report(f"block {b} alone", cols=c)

class Combo:
    def __init__(self, sources, k, use, quantile=0.995):
        self.dets = [fit(sources, k=k, cols=blocks[i], quantile=quantile) for i in use]
        self.use = use
        sc = np.concatenate([self._raw(d[f"val/{n}"]) for n in sources])
        self.threshold = gate_threshold(sc, np.concatenate([[n] * len(d[f"val/{n}"]) for n in sources]), quantile)
    def _raw(self, f):
        return np.max([det.score(f[:, blocks[i]]) / det.threshold for det, i in zip(self.dets, self.use)], axis=0)
    def score(self, f):
        return self._raw(f)

def report_combo(label, **kw):
    row = []
    for held in names:
        det = Combo([n for n in names if n != held], **kw)
        row.append(f"{held[:5]} {100*(det.score(d[f'val/{held}']) > det.threshold).mean():.1f}")
    det = Combo(names, **kw)
    r = lambda key: 100 * ((det.score(d[key]) > det.threshold) | d.get(key + "_flat", False)).mean()
    print(f"{label:28s} held-out: {' '.join(row)} | all: non {r('non'):.1f} dev {r('dev'):.1f} ext {r('ext'):.1f}")

for k in (16, 32, 64):
    report_combo(f"max blocks 3-6 k={k}", k=k, use=(0, 1, 2, 3))
    report_combo(f"max blocks 3-5 k={k}", k=k, use=(0, 1, 2))
