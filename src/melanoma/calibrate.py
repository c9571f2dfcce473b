"""Decision threshold and temperature, both fitted on validation data (never on test data).

The model emits a logit ``z``; ``p = sigmoid(z / T)``. ``T`` is fitted by minimising the negative
log-likelihood on validation logits (temperature scaling, Guo et al. 2017); the threshold is then the
largest one whose validation sensitivity still meets the target, or the one maximising Youden's J.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T > 0 minimising binary NLL of ``sigmoid(logits / T)``; 1.0 when a class is missing."""
    from scipy.optimize import minimize_scalar

    z, y = np.asarray(logits, float), np.asarray(labels, float)
    if len(set(y.tolist())) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        # log(1 + e^s) - y*s, written stably
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE with equal-width bins of p(malignant): sum_b |mean(p) - mean(y)| * n_b / n."""
    p, y = np.asarray(probs, float), np.asarray(labels, float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += abs(p[m].mean() - y[m].mean()) * m.sum() / len(p)
    return float(ece)


def reliability_curve(probs, labels, n_bins: int = 10) -> dict[str, list[float]]:
    """Per non-empty bin: mean predicted p, observed malignant fraction, and count."""
    p, y = np.asarray(probs, float), np.asarray(labels, float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = {"mean_predicted": [], "fraction_malignant": [], "count": []}
    for b in range(n_bins):
        m = bins == b
        if m.any():
            out["mean_predicted"].append(float(p[m].mean()))
            out["fraction_malignant"].append(float(y[m].mean()))
            out["count"].append(int(m.sum()))
    return out


def choose_threshold(probs, labels, target_sensitivity: float | None = 0.95) -> float:
    """Threshold on p(malignant) chosen on validation data.

    With ``target_sensitivity``: the largest threshold whose sensitivity is still >= the target
    (the most specific operating point that meets it). With ``None``: maximise Youden's J.
    """
    from sklearn.metrics import roc_curve

    y, p = np.asarray(labels, int), np.asarray(probs, float)
    if len(set(y.tolist())) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    thr = np.clip(thr, 0.0, 1.0)  # sklearn's first threshold is +inf
    if target_sensitivity is None:
        return float(thr[int(np.argmax(tpr - fpr))])
    ok = np.flatnonzero(tpr >= target_sensitivity)
    return float(thr[ok[0]])  # roc_curve orders thresholds from high to low


MIN_SOURCE_POSITIVES = 20  # a source's validation melanomas needed for its own say in the threshold


def choose_threshold_per_source(probs, labels, sources, target_sensitivity: float | None = 0.95,
                                min_positives: int = MIN_SOURCE_POSITIVES) -> tuple[float, dict[str, float]]:
    """The threshold that meets the rule on *each* source's validation images, not just on their pool: the
    lowest of the per-source thresholds of :func:`choose_threshold`. A pooled rule lets the largest source
    decide, and a source whose melanomas score lower (another clinic's camera) then misses most of them.
    Sources with fewer than ``min_positives`` melanomas are reported but have no say (their 0.95 quantile would
    be one image). Returns (threshold, {source: its own threshold})."""
    p, y, src = np.asarray(probs, float), np.asarray(labels, int), np.asarray(sources, object)
    own = {str(name): choose_threshold(p[src == name], y[src == name], target_sensitivity)
           for name in dict.fromkeys(src.tolist()) if (y[src == name] == 1).sum() >= min_positives
           and (y[src == name] == 0).any()}
    if not own:
        return choose_threshold(p, y, target_sensitivity), {}
    return min(own.values()), own


def calibrate_model_folder(model_dir, val_samples, target_sensitivity: float | None = 0.95,
                           batch_size: int = 32) -> dict:
    """Fit temperature and threshold of the model folder on ``val_samples`` and store them in its
    config.json. Returns what was fitted, with validation ECE before and after and sample sizes."""
    from pathlib import Path

    from .config import ModelConfig, write_checksums
    from .predict import Predictor

    predictor = Predictor(model_dir, batch_size=batch_size, num_workers=1 if len(val_samples) > 256 else 0)
    logits = predictor.predict_logits(val_samples)
    kept = [(z, s) for z, s in zip(logits, val_samples) if z is not None]
    z = np.array([a for a, _ in kept])
    y = np.array([s.label for _, s in kept])
    src = np.array([s.source for _, s in kept], object)
    temperature = fit_temperature(z, y)
    probs = sigmoid(z / temperature)
    rule = "youden" if target_sensitivity is None else f"sensitivity>={target_sensitivity}"
    per_source: dict[str, float] = {}
    if len(set(src.tolist())) > 1:
        threshold, per_source = choose_threshold_per_source(probs, y, src, target_sensitivity)
        rule += " on each source's validation images (lowest per-source threshold)"
    else:
        threshold = choose_threshold(probs, y, target_sensitivity)

    def at_threshold(m: np.ndarray) -> dict:
        pos, neg = m & (y == 1), m & (y == 0)
        return {"n": int(m.sum()), "n_malignant": int(pos.sum()),
                "own_threshold": per_source.get(str(src[m][0])) if m.any() else None,
                "sensitivity": float((probs[pos] >= threshold).mean()) if pos.any() else None,
                "specificity": float((probs[neg] < threshold).mean()) if neg.any() else None}

    result = {
        "temperature": temperature, "threshold": threshold, "threshold_rule": rule,
        "val_n": int(len(y)), "val_n_malignant": int(y.sum()),
        "val_ece_before": expected_calibration_error(sigmoid(z), y),
        "val_ece_after": expected_calibration_error(probs, y),
        "val_sensitivity": float((probs[y == 1] >= threshold).mean()) if y.any() else None,
        "val_specificity": float((probs[y == 0] < threshold).mean()) if (y == 0).any() else None,
    }
    if len(set(src.tolist())) > 1:
        result["per_source"] = {str(name): at_threshold(src == name) for name in dict.fromkeys(src.tolist())}
    cfg_path = Path(model_dir) / "config.json"
    cfg = ModelConfig.load(cfg_path)
    cfg.temperature, cfg.threshold = temperature, threshold
    cfg.training["calibration"] = result
    cfg.save(cfg_path)
    write_checksums(cfg_path.parent)
    return result
