"""031's head setting and held-out checks, on fit and validation data only (NOTES.md): the network's gate refitted
with a head (ood.fit_gate) from cached features (``experiments/029-lesion-gate/features.py``), each kind of negative
and each lesion source held out of the fit in turn, for each C; the C by NOTES.md's rule.

    python experiments/031-broad-negatives/choose.py FEATURES_DIR MODEL_DIR --out head_choice-NAME.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.bench import gate_cache
from melanoma.config import atomic_write_text
from melanoma.ood import fit_gate

HELD_OUT_VIEWS = ("ruler", "bubbles")
CS = (0.01, 0.1, 1.0)
SOURCE_LIMIT = 0.02  # a held-out source's validation lesions refused at most this share (clause 7)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    c = gate_cache.read(args.features, args.model, HELD_OUT_VIEWS)
    columns, pos_f, pos_s, neg_f, neg_s = c.columns, c.pos_f, c.pos_s, c.neg_f, c.neg_s
    val_f, val_s, val_views, thr_f, thr_g = c.val_f, c.val_s, c.val_views, c.thr_f, c.thr_g

    def refused(det, f: np.ndarray) -> float:
        return round(float((det.score(f) > det.threshold).mean()), 4)

    out: dict = {"columns": None if columns is None else len(columns), "n_positive": len(pos_f),
                 "n_negative": {str(k): int((neg_s == k).sum()) for k in np.unique(neg_s)}, "n_val": len(val_f),
                 "by_c": {}}
    for c in CS:
        kinds = {str(k): refused(fit_gate(pos_f, thr_f, thr_g, columns, negative_features=neg_f[neg_s != k], c=c),
                                 neg_f[neg_s == k]) for k in np.unique(neg_s)}
        sources = {}
        for source in np.unique(val_s):  # clause 7: a lesion source held out of the whole fit
            keep, tkeep = pos_s != source, thr_g != source
            det = fit_gate(pos_f[keep], thr_f[tkeep], thr_g[tkeep], columns, negative_features=neg_f, c=c)
            sources[str(source)] = refused(det, val_f[val_s == source])
        det = fit_gate(pos_f, thr_f, thr_g, columns, negative_features=neg_f, c=c)
        out["by_c"][str(c)] = {"held_out_kind_refused": kinds, "mean_held_out_kind": float(np.mean([*kinds.values()])),
                               "held_out_source_refused": sources, "worst_held_out_source": max(sources.values()),
                               "val_refused": refused(det, val_f),
                               "val_views_refused": {k: refused(det, f) for k, (f, _) in val_views.items()}}
        print(c, json.dumps(out["by_c"][str(c)]), flush=True)
    rows = {float(c): r for c, r in out["by_c"].items()}
    within = [c for c, r in rows.items() if r["worst_held_out_source"] <= SOURCE_LIMIT]
    if within:
        best = max(rows[c]["mean_held_out_kind"] for c in within)
        out["chosen_c"] = min(c for c in within if rows[c]["mean_held_out_kind"] >= best - 0.01)
    else:
        out["chosen_c"] = min(rows, key=lambda c: (rows[c]["worst_held_out_source"], c))
    print("chosen C", out["chosen_c"])
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
