"""Decision threshold and temperature, both fitted on validation data (never on test data).

The model emits a logit ``z``; ``p = sigmoid(z / T)``. ``T`` is fitted by minimising the negative
log-likelihood on validation logits (temperature scaling, Guo et al. 2017); the threshold is then the
largest one whose validation sensitivity still meets the target, or the one maximising Youden's J.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def log_odds(p):
    """log(p / (1 - p)), p clipped away from 0 and 1; scalar or array."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


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


ECE_BINS = 15


def expected_calibration_error(probs, labels, n_bins: int = ECE_BINS) -> float:
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

    With ``target_sensitivity``: the most specific operating point whose sensitivity is still >= the target.
    With ``None``: maximise Youden's J. The threshold sits halfway between the score that sets the operating point
    and the next lower one, so it flags the same validation images as that score would, and an image scored a
    last digit differently (ONNX Runtime against PyTorch) does not cross it.
    """
    from sklearn.metrics import roc_curve

    y, p = np.asarray(labels, int), np.asarray(probs, float)
    if len(set(y.tolist())) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    thr = np.clip(thr, 0.0, 1.0)  # sklearn's first threshold is +inf; the rest are the distinct scores, high to low
    i = int(np.argmax(tpr - fpr)) if target_sensitivity is None else int(np.flatnonzero(tpr >= target_sensitivity)[0])
    return float((thr[i] + thr[i + 1]) / 2) if i + 1 < len(thr) else float(thr[i])


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


def pooled_sources(sources, groups: list[list[str]] | None) -> np.ndarray:
    """Each image's source, with the sources of each group in ``groups`` renamed to one pooled name ("a+b"), for
    the threshold rule: a small archive's few validation melanomas then count together with a like archive's,
    instead of deciding the lowest per-source threshold alone. Raises ValueError for a name no image has."""
    src = np.asarray(sources, object)
    group_of = {name: "+".join(g) for g in groups or [] for name in g}
    if unknown := sorted(set(group_of) - set(src.tolist())):
        raise ValueError(f"threshold_groups: no validation image of source {unknown[0]!r} "
                         f"(sources: {', '.join(sorted(set(src.tolist())))})")
    return np.array([group_of.get(s, s) for s in src.tolist()], object)

