"""029's head settings and held-out checks, on fit and validation data only (NOTES.md): the gate refitted from
cached features of 028's network (``features.py``) with each kind of negative, and each lesion source, held out.

    python experiments/029-lesion-gate/choose.py FEATURES_DIR MODEL_DIR [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.ood import OODDetector, fit_gate

FIT_VIEWS = ("field", "zoom_out", "grid", "film", "blur", "hair", "glare")  # 028's gate_views
VAL_VIEWS = ("zoom_out", "grid", "ruler", "film", "glare", "bubbles", "hair", "field", "blur")
CS = (0.01, 0.1, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("head_choice.json"))
    args = ap.parse_args()

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        return np.load(args.features / f"{name}.npy"), np.load(args.features / f"{name}_src.npy", allow_pickle=True)

    columns = OODDetector.load(args.model).columns  # the stages 028's gate reads (its recipe's gate_blocks)
    fit_f, fit_s = load("fit")
    views = [load(f"view_{k}") for k in FIT_VIEWS]
    pos_f = np.concatenate([fit_f, *[v[0] for v in views]])
    pos_s = np.concatenate([fit_s, *[v[1] for v in views]])
    neg_f, neg_s = load("neg")
    val_f, val_s = load("val")
    val_views = {k: load(f"valview_{k}")[0] for k in VAL_VIEWS}

    def refused(det, f: np.ndarray) -> float:
        return round(float((det.score(f) > det.threshold).mean()), 4)

    out = {"columns": None if columns is None else len(columns), "n_positive": len(pos_f), "n_negative": len(neg_f),
           "n_val": len(val_f), "by_c": {}}
    plain = fit_gate(pos_f, val_f, val_s, columns)
    out["distance_only"] = {"val_refused": refused(plain, val_f),
                            "val_views_refused": {k: refused(plain, f) for k, f in val_views.items()},
                            "negatives_refused": {k: refused(plain, neg_f[neg_s == k]) for k in np.unique(neg_s)}}
    for c in CS:
        held = {}
        for kind in np.unique(neg_s):
            det = fit_gate(pos_f, val_f, val_s, columns, negative_features=neg_f[neg_s != kind], c=c)
            held[str(kind)] = refused(det, neg_f[neg_s == kind])
        det = fit_gate(pos_f, val_f, val_s, columns, negative_features=neg_f, c=c)
        out["by_c"][str(c)] = {"held_out_kind_refused": held, "worst_held_out_kind": min(held.values()),
                               "val_refused": refused(det, val_f),
                               "val_views_refused": {k: refused(det, f) for k, f in val_views.items()}}
        print(c, json.dumps(out["by_c"][str(c)]), flush=True)
    best = max(out["by_c"].values(), key=lambda r: r["worst_held_out_kind"])["worst_held_out_kind"]
    chosen = min(c for c in CS if out["by_c"][str(c)]["worst_held_out_kind"] >= best - 0.01)
    out["chosen_c"] = chosen
    sources = {}
    for source in np.unique(val_s):  # clause 7: a lesion source held out of the whole fit
        keep, vkeep = pos_s != source, val_s != source
        det = fit_gate(pos_f[keep], val_f[vkeep], val_s[vkeep], columns, negative_features=neg_f, c=chosen)
        sources[str(source)] = {"n": int((val_s == source).sum()), "refused": refused(det, val_f[val_s == source])}
    out["held_out_source"] = sources
    print(json.dumps({k: out[k] for k in ("distance_only", "chosen_c", "held_out_source")}, indent=1))
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
