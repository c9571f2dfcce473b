"""A new clinic re-chooses the decision threshold on N labelled images of its own: what does it get on the rest?

    python benchmarks/site_threshold.py MODEL_DIR [MODEL_DIR ...] [--sizes 50 100 200 400] [--target 0.90]
                                        [--out docs/results/site_threshold.json]

The external ISIC 2018 Task 3 test set plays the clinic. In each of ``--draws`` random draws, N of its images
(drawn at random, as a clinic labels its consecutive cases) are the clinic's labelled set: the threshold is chosen
on them as ``melanoma calibrate`` chooses it (``calibrate.choose_threshold``: the most specific point with
sensitivity >= the target); the other images are scored at it. Per N: the median and the 5th-95th percentiles over
draws of that held-out sensitivity and specificity, and the share of draws that meet the issue's external target
(sensitivity >= 0.85 with specificity >= 0.70). The model's shipped threshold, on all images, is the baseline.
Every image is scored, refused by the gate or not (as ``sources_table.py`` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.bench import labels_and_scores as scores
from melanoma.bench import standard_sets
from melanoma.calibrate import choose_threshold
from melanoma.engines import load_predictor

EXTERNAL = "ISIC 2018 test (external)"


def rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[float, float]:
    flagged = probs >= threshold
    return float(flagged[labels == 1].mean()), float((~flagged)[labels == 0].mean())


def site_draws(labels: np.ndarray, probs: np.ndarray, n: int, draws: int, target: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sens, spec = [], []
    for _ in range(draws):
        site = np.zeros(len(labels), bool)
        site[rng.choice(len(labels), n, replace=False)] = True
        t = choose_threshold(probs[site], labels[site], target)
        s, c = rates(labels[~site], probs[~site], t)
        sens.append(s)
        spec.append(c)
    sens, spec = np.array(sens), np.array(spec)
    pct = lambda a: [float(np.percentile(a, q)) for q in (5, 50, 95)]  # noqa: E731
    met = float(((sens >= 0.85) & (spec >= 0.70)).mean())
    return {"n_labelled": n, "n_scored": len(labels) - n, "sensitivity_p5_p50_p95": pct(sens),
            "specificity_p5_p50_p95": pct(spec), "share_meeting_target": met}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--sizes", nargs="+", type=int, default=[50, 100, 200, 400])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--target", type=float, default=0.90, help="sensitivity the clinic's threshold rule asks for")
    ap.add_argument("--out", type=Path, default=Path("runs/site_threshold.json"))
    args = ap.parse_args()
    samples = standard_sets()[EXTERNAL]
    result = {"set": EXTERNAL, "target_sensitivity": args.target, "draws": args.draws, "models": {}}
    for model in args.models:
        predictor = load_predictor(model)
        labels, probs = scores(predictor, samples)
        shipped = rates(labels, probs, predictor.threshold)
        rows = [site_draws(labels, probs, n, args.draws, args.target) for n in args.sizes]
        result["models"][str(model)] = {"n": int(len(labels)), "n_malignant": int(labels.sum()),
                                        "shipped_threshold": predictor.threshold,
                                        "shipped_sensitivity_specificity": list(shipped), "site": rows}
        print(f"{model}: shipped threshold {predictor.threshold:.3f}: sensitivity {shipped[0]:.3f}, "
              f"specificity {shipped[1]:.3f} (n = {len(labels)})")
        for r in rows:
            s, c = r["sensitivity_p5_p50_p95"], r["specificity_p5_p50_p95"]
            print(f"| {r['n_labelled']} labelled | {s[1]:.3f} ({s[0]:.3f}-{s[2]:.3f}) | "
                  f"{c[1]:.3f} ({c[0]:.3f}-{c[2]:.3f}) | {100 * r['share_meeting_target']:.0f}% |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
