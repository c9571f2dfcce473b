"""The "cannot assess" gate across sources: refitted without each training source in turn, how many real lesions
of that held-out source does it refuse? And the shipped gate (fitted on all) per source, on the external set and
on the generated non-lesion images.

    python benchmarks/gate_sources.py MODEL_DIR runs/NAME/split.csv [--out docs/results/NAME.json]

The gate is refitted by the function ``train`` fits it with (ood.fit_gate: the detector on 2,000 training images in
equal shares of the sources used, plus ood.FIELD_SHARE of them seen through each of ood.GATE_VIEWS; the threshold
on their validation images), on the model's own features; its draws are its own (a fixed random sample of each
source, drawn once, so the held-out fits differ only in the source left out), not train's. ``--compare`` fits without
views (as gates were fitted before experiments/011-gate-field); ``--candidates field,grid field,zoom_out``
also fits with each of those sets of views (ood.VIEWS; experiments/014-gate-views compared lens-shading and close-up
views, since removed); ``--knn 1 10`` also scores by the distance to the k-th nearest fit image
(experiments/015-gate-knn); ``--blocks 4`` fits every gate on stage 4's features alone (experiments/021-gate-block);
the JSON has one entry per fit.
Targets (issue 16): <= 2% of a held-out source's lesions refused; >= 95% of non-lesions refused.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from melanoma.bench import data_root
from melanoma.bench import gate_features as features
from melanoma.bench.nonlesion import nonlesion_images
from melanoma.card import public_name
from melanoma.datasets import discover, read_split
from melanoma.engines import load_predictor
from melanoma.imaging import InMemory
from melanoma.nn.torch_engine import TorchPredictor
from melanoma.ood import FIELD_SHARE, GATE_VIEWS, OODDetector, fit_gate, gate_threshold, gate_views

REPO = Path(__file__).resolve().parents[1]

EXTERNAL = data_root() / "isic2018_test"


class NearestGate:
    """experiments/015-gate-knn, in the form it would ship: standardised features on their top ``dims`` principal
    components, L2-normalised; the score is the Euclidean distance to the ``k``-th nearest fit vector (float16)."""

    def __init__(self, fit_f: np.ndarray, k: int, dims: int = 128):
        from sklearn.decomposition import PCA

        self.scale, self.k, self.threshold = fit_f.std(axis=0) + 1e-6, k, float("inf")
        self.pca = PCA(n_components=min(dims, len(fit_f) - 1), random_state=0).fit(fit_f / self.scale)
        self.bank = self._embed(fit_f).astype(np.float16)

    def _embed(self, f: np.ndarray) -> np.ndarray:
        z = self.pca.transform(np.asarray(f, np.float32) / self.scale)
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def score(self, f: np.ndarray) -> np.ndarray:
        cos = self._embed(f) @ self.bank.astype(np.float32).T
        kth = -np.partition(-cos, self.k - 1, axis=1)[:, self.k - 1]  # the k-th highest cosine = k-th nearest
        return np.sqrt(np.maximum(2 - 2 * kth, 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("--per-source-fit", type=int, default=1000, help="training images per source to draw from")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "gate_sources.json")
    ap.add_argument("--compare", action="store_true", help="also fit every gate without views")
    ap.add_argument("--candidates", nargs="*", default=[], help="other sets of views, each comma-separated")
    ap.add_argument("--knn", nargs="*", type=int, default=[], help="also a nearest-neighbour gate with each k")
    ap.add_argument("--blocks", default="3,4,5,6", help="the stages every gate here reads (melanoma calibrate "
                                                        "--gate-blocks), e.g. 4")
    args = ap.parse_args()
    blocks = tuple(int(b) for b in args.blocks.split(","))
    columns = TorchPredictor(args.model).gate_columns(blocks)

    predictor = load_predictor(args.model, num_workers=2)
    split = read_split(args.split)
    rng = random.Random(0)
    train, val = {}, {}
    for s in split["train"]:
        train.setdefault(s.source, []).append(s)
    for s in split["val"]:
        val.setdefault(s.source, []).append(s)
    names = sorted(val)
    drawn = {n: rng.sample(train[n], min(args.per_source_fit, len(train[n]))) for n in names}
    f_train = {n: features(predictor, drawn[n])[0] for n in names}
    candidates = [tuple(c.split(",")) for c in args.candidates]
    kinds = dict.fromkeys(k for c in [GATE_VIEWS, *candidates] for k in c)
    # one view of each kind per image; gate_views draws kind by kind, so each kind is drawn alone here
    f_views = {k: {n: features(predictor, gate_views(drawn[n], (k,)))[0] for n in names} for k in kinds}
    f_val = {n: features(predictor, val[n])[0] for n in names}
    f_ext, _ = features(predictor, discover(EXTERNAL)["test"])
    nonlesions = [InMemory(name, img) for name, img in nonlesion_images()]
    f_non, flat_non = features(predictor, nonlesions)

    def fit(sources: list[str], views: tuple[str, ...], knn: int | None = None) -> OODDetector:
        per = 2000 // len(sources)  # as train: balanced_by_source, then gate_views of the first FIELD_SHARE
        fit_f = [f_train[n][:per] for n in sources]
        fit_f += [f_views[k][n][: round(FIELD_SHARE * per)] for k in views for n in sources]
        fit_f = np.concatenate(fit_f)
        val_f = np.concatenate([f_val[n] for n in sources])
        val_sources = np.concatenate([[n] * len(f_val[n]) for n in sources])
        if knn is None:
            return fit_gate(fit_f, val_f, val_sources, columns)
        det = NearestGate(fit_f, knn)
        det.threshold = gate_threshold(det.score(val_f), val_sources)
        return det

    def refused(det: OODDetector, f: np.ndarray, flat: np.ndarray | None = None) -> float:
        out = det.score(f) > det.threshold
        return float((out | flat).mean() if flat is not None else out.mean())

    def fits(views: tuple[str, ...], knn: int | None = None) -> dict:
        out = {"views": list(views), "knn": knn, "held_out": {}}
        for held in names:
            det = fit([n for n in names if n != held], views, knn)
            out["held_out"][held] = {"n": len(f_val[held]), "refused": refused(det, f_val[held]),
                                     "external_refused": refused(det, f_ext),
                                     "nonlesions_refused": refused(det, f_non, flat_non)}
        det = fit(names, views, knn)
        out["all_sources"] = {**{n: {"n": len(f_val[n]), "refused": refused(det, f_val[n])} for n in names},
                              "ISIC 2018 test (external)": {"n": len(f_ext), "refused": refused(det, f_ext)},
                              "non-lesion images": {"n": len(f_non), "refused": refused(det, f_non, flat_non)}}
        return out

    result = {"model": str(args.model), "split": str(args.split), "n_fit": 2000, "field_share": FIELD_SHARE,
              "blocks": sorted(blocks),
              **fits(GATE_VIEWS)}
    if args.compare:
        result["without_field"] = fits(())
    for c in candidates:
        result["+".join(c)] = fits(c)
    for k in args.knn:
        result[f"knn{k}"] = fits(GATE_VIEWS, k)
    shipped = predictor.ood
    result["shipped_gate"] = {"external_refused": refused(shipped, f_ext),
                              "nonlesions_refused": refused(shipped, f_non, flat_non),
                              **{n: refused(shipped, f_val[n]) for n in names}}
    variants = [("+".join(GATE_VIEWS), result), ("no views", result.get("without_field"))]
    variants += [("+".join(c), result["+".join(c)]) for c in candidates] + [(f"knn{k}", result[f"knn{k}"])
                                                                              for k in args.knn]
    for variant, res in variants:
        for held, r in (res or {}).get("held_out", {}).items():
            print(f"| {variant}: {public_name(held)} held out of the fit | {r['n']} | {100 * r['refused']:.1f}% | "
                  f"{100 * r['external_refused']:.1f}% | {100 * r['nonlesions_refused']:.1f}% |")
        if res:
            print(f"| {variant}: fitted on all, refused | " + json.dumps(res["all_sources"]))
    print("| shipped gate | " + json.dumps(result["shipped_gate"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
