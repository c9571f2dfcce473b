"""A diagnostic beside 026's rule, not a decision: does the training-only diagnosis head rank melanomas better than
the melanoma logit it trained beside? Reads the head from the run's best checkpoint (the model folder drops it) and
scores, on the same images, the shipped logit and the head's melanoma log-odds against all six other diagnoses.

    python experiments/026-diagnosis-head/dx_head.py runs/e026s43 [--out experiments/026-diagnosis-head/dx_head.json]

Sets: the external ISIC 2018 test, and the run's own HAM10000 and ISIC 2017 validation images (split.csv).
Both scores are ranked only (ROC-AUC), so no threshold is chosen here; the change is paired
(``evaluate.paired_difference``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from melanoma.calibrate import sigmoid
from melanoma.datasets import discover, read_split
from melanoma.evaluate import paired_difference
from melanoma.nn.data import make_loader
from melanoma.nn.torch_engine import TorchPredictor

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@torch.inference_mode()
def two_scores(predictor: TorchPredictor, head: torch.nn.Linear, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, the melanoma logit and the head's melanoma log-odds (``mel`` against the logsumexp of the rest)."""
    net, ys, logits, heads = predictor.model, [], [], []
    for batch in make_loader(samples, predictor.transform, 64, num_workers=1):
        if batch is None:
            continue
        x, y, _ = batch
        pooled = net.forward_head(net.forward_features(x.contiguous(memory_format=torch.channels_last)),
                                  pre_logits=True)
        d = head(pooled)
        ys.append(y)
        logits.append(net.get_classifier()(pooled).squeeze(1))
        heads.append(d[:, 0] - torch.logsumexp(d[:, 1:], dim=1))  # DIAGNOSES[0] is "mel"
    return torch.cat(ys).numpy().astype(int), torch.cat(logits).numpy(), torch.cat(heads).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    state = torch.load(args.run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    head = torch.nn.Linear(state["dx_head.weight"].shape[1], state["dx_head.weight"].shape[0])
    head.load_state_dict({"weight": state["dx_head.weight"], "bias": state["dx_head.bias"]})
    predictor = TorchPredictor(args.run / "model", use_ood=False)
    val = read_split(args.run / "split.csv")["val"]
    sets = {"ISIC 2018 test (external)": discover(DATA / "isic2018_test")["test"],
            **{f"validation {s}": [v for v in val if v.source == s] for s in ("ham10000", "isic2017")}}
    out = {"run": str(args.run), "sets": {}}
    for name, samples in sets.items():
        y, z, h = two_scores(predictor, head, samples)
        d = paired_difference(y, sigmoid(z), sigmoid(h), 0.5)["roc_auc"]  # ranks only: the threshold is unused
        out["sets"][name] = {"n": len(y), "n_malignant": int(y.sum()), "logit_roc_auc": d["a"],
                             "head_roc_auc": d["b"], "difference": d["difference"], "difference_ci": d["difference_ci"]}
        print(f"{name} (n = {len(y)}, {int(y.sum())} mel.): logit {d['a']:.3f}, head {d['b']:.3f}, "
              f"{d['difference']:+.3f} ({d['difference_ci'][0]:+.3f} to {d['difference_ci'][1]:+.3f})")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
