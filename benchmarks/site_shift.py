"""The threshold moved with a new site's unlabelled scores (``site_shift`` below): what it gives on images the
shift was not estimated on.

    python benchmarks/site_shift.py MODEL_DIR SPLIT_CSV [--draws 200] [--out experiments/NNN/site_shift.json]

The external ISIC 2018 Task 3 test plays the site, in the two random halves of ``site_adaptation.py`` (seed 0):
the shift is estimated on one half's images (labels unused) and the other half is scored at the shifted and at
the model's own threshold, paired on the same images. Reference: the model's validation images (``SPLIT_CSV``, its
run's split) of the sources whose rule set the threshold (``training.calibration``'s per-source record). Two
checks of a site unlike the validation mix (labels used only to make the mix): the estimating half redrawn (with
replacement, its size kept) at 25% and at 5% melanomas, and only 100 of its images; per check the median and
5th-95th percentiles over draws of the other half's sensitivity and specificity. Every image is scored, refused
by the gate or not (as ``sources_table.py``). Rule and result: experiments/024-site-shift/NOTES.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from site_threshold import rates

from melanoma.bench import data_root
from melanoma.bench import labels_and_scores as scores
from melanoma.calibrate import log_odds, sigmoid
from melanoma.config import resolve_model_dir, sha256_file
from melanoma.datasets import discover, read_split
from melanoma.engines import load_predictor
from melanoma.evaluate import metrics_with_ci, paired_difference

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = data_root() / "isic2018_test"
KEEP = ("n", "n_malignant", "recall", "recall_ci", "specificity", "specificity_ci")


def site_shift(reference_median: float, site_logits) -> float:
    """How far a site's calibrated logits sit above the reference (validation) ones: the difference of medians.
    Most of a site's images are benign, so the median mostly follows its benign lesions. Here, not in the
    package: under its rule (experiments/024) it was not shipped."""
    return float(np.median(site_logits) - reference_median)


def shifted_threshold(threshold: float, shift: float) -> float:
    return float(sigmoid(log_odds(threshold) + shift))


def reference_sources(cfg) -> list[str]:
    """The sources whose validation rule set the shipped threshold (their own threshold is the model's)."""
    per_source = cfg.training.get("calibration", {}).get("per_source", {})
    return [s for s, r in per_source.items() if abs(r.get("own_threshold", -1) - cfg.threshold) < 1e-9]


def unlike_sites(y: np.ndarray, fit: np.ndarray) -> dict:
    """Ways to draw a site from the estimating half ``fit`` unlike the validation mix, each a function of a
    random generator giving image indices: its size kept at 25% or 5% melanomas (with replacement), or only 100
    of its images."""
    mel, ben = fit[y[fit] == 1], fit[y[fit] == 0]

    def at_prevalence(prevalence: float):
        n_mel = round(prevalence * len(fit))
        return lambda rng: np.concatenate([rng.choice(mel, n_mel), rng.choice(ben, len(fit) - n_mel)])

    return {"site_25pct_melanomas": at_prevalence(0.25), "site_5pct_melanomas": at_prevalence(0.05),
            "site_100_images": lambda rng: rng.choice(fit, 100, replace=False)}


def draws(y, z, test, ref_median, threshold, make_site, n_draws: int, seed: int) -> dict:
    """The other half's sensitivity and specificity at thresholds shifted by sites that ``make_site`` draws."""
    rng, p_test = np.random.default_rng(seed), sigmoid(z[test])
    sens, spec = [], []
    for _ in range(n_draws):
        site = make_site(rng)
        t = shifted_threshold(threshold, site_shift(ref_median, z[site]))
        a, b = rates(y[test], p_test, t)
        sens.append(a)
        spec.append(b)
    q = lambda v: [float(np.percentile(v, k)) for k in (5, 50, 95)]  # noqa: E731
    return {"sensitivity_p5_p50_p95": q(sens), "specificity_p5_p50_p95": q(spec)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("split", type=Path, help="the model's run's split.csv (its validation images)")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "site_shift.json")
    args = ap.parse_args()

    model_dir = resolve_model_dir(args.model)
    predictor = load_predictor(model_dir, num_workers=2)
    sources = reference_sources(predictor.cfg)
    reference = [s for s in read_split(args.split)["val"] if s.source in sources]
    _, p_ref = scores(predictor, reference)
    ref_median = float(np.median(log_odds(p_ref)))
    samples = discover(EXTERNAL)["test"]
    y, p = scores(predictor, samples)
    z, t0 = log_odds(p), predictor.threshold
    halves = np.array_split(np.random.default_rng(0).permutation(len(samples)), 2)
    result = {"model": str(args.model), "model_sha256": sha256_file(model_dir / "model.safetensors"),
              "threshold": t0, "reference": {"sources": sources, "n": len(reference),
                                             "median_calibrated_logit": ref_median},
              "method": "threshold log-odds + median(site logits) - median(reference logits)", "halves": []}
    for fit, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        shift = site_shift(ref_median, z[fit])
        t = shifted_threshold(t0, shift)
        d = paired_difference(y[test], p[test], p[test], t0, t)
        before, after = metrics_with_ci(y[test], p[test], t0), metrics_with_ci(y[test], p[test], t)
        row = {"estimated_on_n": len(fit), "estimated_on_melanomas": int(y[fit].sum()), "shift": shift,
               "shifted_threshold": t, "shipped": {m: before[m] for m in KEEP},
               "shifted": {m: after[m] for m in KEEP},
               "paired_change": {m: d[m] for m in ("recall", "specificity")},
               **{name: draws(y, z, test, ref_median, t0, make, args.draws, seed)
                  for seed, (name, make) in enumerate(unlike_sites(y, fit).items(), 1)}}
        result["halves"].append(row)
        print(f"scored {len(test)} ({int(y[test].sum())} mel.), shift {shift:+.3f} from the other half -> "
              f"threshold {t:.3f}: sensitivity "
              f"{before['recall']:.3f} -> {after['recall']:.3f}, specificity {before['specificity']:.3f} -> "
              f"{after['specificity']:.3f} ({d['specificity']['difference_ci'][0]:+.3f} to "
              f"{d['specificity']['difference_ci'][1]:+.3f}); 25% site sens p50 "
              f"{row['site_25pct_melanomas']['sensitivity_p5_p50_p95'][1]:.3f}; 100 images sens p5 "
              f"{row['site_100_images']['sensitivity_p5_p50_p95'][0]:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
