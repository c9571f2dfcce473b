"""029's head settings and held-out checks, on fit and validation data only (NOTES.md): 028's gate refitted with a
head (ood.fit_gate) from cached features of 028's network (``features.py``), with each kind of negative, and each
lesion source, held out of the fit in turn.

    python experiments/029-lesion-gate/choose.py FEATURES_DIR MODEL_DIR [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.bench import gate_cache
from melanoma.ood import fit_gate

HELD_OUT_VIEWS = ("ruler", "bubbles")
CS = (0.1, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("head_choice.json"))
    args = ap.parse_args()

    c = gate_cache.read(args.features, args.model, HELD_OUT_VIEWS)
    columns, pos_f, pos_s, neg_f, neg_s = c.columns, c.pos_f, c.pos_s, c.neg_f, c.neg_s
    val_f, val_s, val_views, thr_f, thr_g = c.val_f, c.val_s, c.val_views, c.thr_f, c.thr_g

    def refused(det, f: np.ndarray) -> float:
        return round(float((det.score(f) > det.threshold).mean()), 4)

    def measured(det) -> dict:
        return {"val_refused": refused(det, val_f),
                "val_views_refused": {k: refused(det, f) for k, (f, _) in val_views.items()}}

    out = {"columns": None if columns is None else len(columns), "n_positive": len(pos_f),
           "n_negative": len(neg_f), "n_val": len(val_f), "by_c": {}}
    plain = fit_gate(pos_f, val_f, val_s, columns)  # 028's gate as trained: no head, lesions' threshold only
    out["distance_only"] = {**measured(plain), "negatives_refused": {str(k): refused(plain, neg_f[neg_s == k])
                                                                      for k in np.unique(neg_s)}}
    for c in CS:
        held = {}
        for kind in np.unique(neg_s):
            det = fit_gate(pos_f, thr_f, thr_g, columns, negative_features=neg_f[neg_s != kind], c=c)
            held[str(kind)] = refused(det, neg_f[neg_s == kind])
        det = fit_gate(pos_f, thr_f, thr_g, columns, negative_features=neg_f, c=c)
        out["by_c"][str(c)] = {"held_out_kind_refused": held, "mean_held_out_kind": float(np.mean(list(held.values()))),
                               **measured(det)}
        print(c, json.dumps(out["by_c"][str(c)]), flush=True)
    best = max(r["mean_held_out_kind"] for r in out["by_c"].values())
    chosen = min(c for c in CS if out["by_c"][str(c)]["mean_held_out_kind"] >= best - 0.01)
    out["chosen_c"] = chosen
    sources = {}
    for source in np.unique(val_s):  # clause 7: a lesion source held out of the whole fit
        keep, tkeep = pos_s != source, thr_g != source
        det = fit_gate(pos_f[keep], thr_f[tkeep], thr_g[tkeep], columns, negative_features=neg_f, c=chosen)
        sources[str(source)] = {"n": int((val_s == source).sum()), "refused": refused(det, val_f[val_s == source])}
    out["held_out_source"] = sources
    print(json.dumps({k: out[k] for k in ("distance_only", "chosen_c", "held_out_source")}, indent=1))
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
