"""experiments/021-gate-block: gates fitted on cached features (cache.py), as `train` fits them (2,000 training
images in equal shares of the sources plus field views; threshold ood.gate_threshold on validation).

    python experiments/021-gate-block/explore.py FEATURES.npz [FEATURES.npz ...] [--check]

Per gate: the share of each source's validation lesions refused with that source held out of the fit, and, fitted
on all sources, the share of the test suite's 148 non-lesions, of the 28 dev photos and of the external lesions
refused. ``--check``: only the current gate (blocks 3-6) and the candidate (block 4), as the rules compare them.
"""

import argparse

import numpy as np

from melanoma.ood import FIELD_SHARE, OODDetector, gate_threshold

EDGES = np.cumsum([0, 80, 112, 192, 320])  # tf_efficientnet_lite0's stages 3-6: 80, 112, 192, 320 channels
BLOCK = {b: slice(EDGES[i], EDGES[i + 1]) for i, b in enumerate((3, 4, 5, 6))}


class MaxOfBlocks:
    """One gate per block; an image's score is the largest of its blocks' scores over their thresholds."""

    def __init__(self, d, sources, k, blocks, quantile=0.995):
        self.dets = [(fit(d, sources, k=k, cols=BLOCK[b], quantile=quantile), BLOCK[b]) for b in blocks]
        scores = np.concatenate([self.score(d[f"val/{n}"]) for n in sources])
        self.threshold = gate_threshold(scores, np.concatenate([[n] * len(d[f"val/{n}"]) for n in sources]),
                                        quantile)

    def score(self, f):
        return np.max([det.score(f[:, c]) / det.threshold for det, c in self.dets], axis=0)


class Sliced:
    """A gate fitted on some columns, scoring full feature vectors."""

    def __init__(self, det, cols):
        self.det, self.cols, self.threshold = det, cols, det.threshold

    def score(self, f):
        return self.det.score(f[:, self.cols])


def fit(d, sources, k=64, cols=slice(None), quantile=0.995):
    per = 2000 // len(sources)
    f = np.concatenate([d[f"train/{n}"][:per, cols] for n in sources]
                       + [d[f"field/{n}"][: round(FIELD_SHARE * per), cols] for n in sources])
    det = OODDetector.fit(f, k=k)
    scores = np.concatenate([det.score(d[f"val/{n}"][:, cols]) for n in sources])
    det.threshold = gate_threshold(scores, np.concatenate([[n] * len(d[f"val/{n}"]) for n in sources]), quantile)
    return det


def report(d, label, make) -> None:
    """``make(sources)`` -> a gate with .score(full features) and .threshold."""
    names = sorted({k.split("/")[1] for k in d if k.startswith("val/")})
    held = []
    for out in names:
        gate = make([n for n in names if n != out])
        held.append(f"{out[:5]} {100 * (gate.score(d[f'val/{out}']) > gate.threshold).mean():.1f}")
    gate = make(names)

    def refused(key):
        return 100 * ((gate.score(d[key]) > gate.threshold) | d.get(key + "_flat", False)).mean()

    print(f"{label:28s} held-out: {' '.join(held)} | all: non {refused('non'):.1f} dev {refused('dev'):.1f} "
          f"ext {refused('ext'):.1f}")


def sliced(d, k=64, cols=slice(None), quantile=0.995):
    return lambda sources: Sliced(fit(d, sources, k, cols, quantile), cols)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features", nargs="+")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    for path in args.features:
        d = dict(np.load(path))
        print("==", path)
        report(d, "blocks 3-6 k=64 (current)", sliced(d))
        report(d, "block 4 k=64 (candidate)", sliced(d, cols=BLOCK[4]))
        if args.check:
            continue
        for k in (16, 32, 128, 256):
            report(d, f"blocks 3-6 k={k}", sliced(d, k=k))
        report(d, "blocks 3-6 k=64 q=0.99", sliced(d, quantile=0.99))
        for b in (3, 5, 6):
            report(d, f"block {b} alone", sliced(d, cols=BLOCK[b]))
        for k in (16, 32, 64):
            for blocks in ((3, 4, 5, 6), (3, 4, 5)):
                report(d, f"max blocks {blocks} k={k}", lambda s, d=d, k=k, b=blocks: MaxOfBlocks(d, s, k, b))
        for k in (32, 96, 128):
            report(d, f"block 4 k={k}", sliced(d, k=k, cols=BLOCK[4]))
        report(d, "blocks 3+4 k=64", sliced(d, cols=slice(EDGES[0], EDGES[2])))
        report(d, "blocks 4+5 k=64", sliced(d, cols=slice(EDGES[1], EDGES[3])))


if __name__ == "__main__":
    main()
