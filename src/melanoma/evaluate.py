"""Evaluation: metrics of a model folder on a labelled split, written as ``metrics.json`` and
``predictions.csv`` (data files; the plots are drawn from them on request, see :func:`plot_pngs`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import atomic_write_bytes, atomic_write_text


def roc_points(labels, probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fps, tps, thresholds) at every distinct score, from the highest: sklearn's ``_binary_clf_curve``.

    Written with numpy because the bootstrap asks for ~1000 curves per evaluation and scikit-learn's input
    validation costs more than the curve itself on a few thousand images (benchmarks/cold_start.py);
    tests/test_evaluate.py keeps every metric built on it equal to scikit-learn's."""
    y, p = np.asarray(labels, int), np.asarray(probs, float)
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # the last image of each run of equal scores
    tps = np.cumsum(y)[last]
    return 1 + last - tps, tps, p[last]


def _curve(labels, probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) through every distinct score, and the precision at each score (no leading point)."""
    fps, tps, _ = roc_points(labels, probs)
    return np.r_[0, fps] / fps[-1], np.r_[0, tps] / tps[-1], tps / (tps + fps)


# Decision-curve net benefit (Vickers & Elkin 2006) at threshold probability 0.10: true positives per image, less
# false positives weighted 0.1 / 0.9, i.e. one melanoma found is worth nine benign lesions sent for excision. It is
# the one number that says whether a threshold trades sensitivity for specificity at a price a clinic would pay.
NET_BENEFIT_RISK = 0.10
NET_BENEFIT_ODDS = NET_BENEFIT_RISK / (1 - NET_BENEFIT_RISK)


def compute_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """Binary metrics for labels (0/1, malignant = 1) and p(malignant) at ``threshold``.

    ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]``; ``roc_auc`` and ``pr_auc`` (average precision) are
    None when only one class is present; ``net_benefit`` is at NET_BENEFIT_RISK.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = p >= threshold
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((y == 1).sum()) - tp, int((y == 0).sum()) - fp

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    roc_auc = pr_auc = None
    if tp + fn and tn + fp:
        fpr, tpr, precision = _curve(y, p)
        roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids
        pr_auc = float(np.sum(np.diff(tpr) * precision))  # average precision: sum of dR * P
    return {
        "n": int(len(y)), "n_benign": tn + fp, "n_malignant": tp + fn,
        "threshold": float(threshold),
        "accuracy": ratio(tp + tn, len(y)),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),  # = sensitivity
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "net_benefit": (tp - fp * NET_BENEFIT_ODDS) / len(y) if len(y) else None,
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


SENS_AT_SPEC = (0.80, 0.90, 0.95)
SPEC_AT_SENS = (0.90, 0.95)


def operating_points(labels, probs) -> dict[str, float | None]:
    """Best sensitivity reachable at each specificity in SENS_AT_SPEC, and vice versa, read off the
    ROC curve (keys like ``sensitivity_at_specificity_0.90``)."""
    y = np.asarray(labels, dtype=int)
    out: dict[str, float | None] = {}
    if len(set(y.tolist())) < 2:
        fpr = tpr = None
    else:
        fpr, tpr, _ = _curve(y, probs)
    for s in SENS_AT_SPEC:
        out[f"sensitivity_at_specificity_{s:.2f}"] = None if fpr is None else float(tpr[1 - fpr >= s].max())
    for t in SPEC_AT_SENS:
        out[f"specificity_at_sensitivity_{t:.2f}"] = None if fpr is None else float((1 - fpr)[tpr >= t].max())
    return out


def full_metrics(labels, probs, threshold: float) -> dict:
    """compute_metrics plus the ROC operating points and the expected calibration error (15 bins; None
    for one class, where it would only be the mean distance of p from that class)."""
    from .calibrate import expected_calibration_error

    m = compute_metrics(labels, probs, threshold)
    ece = expected_calibration_error(probs, labels) if m["roc_auc"] is not None else None  # None: one class
    return {**m, **operating_points(labels, probs), "ece": ece}


def bootstrap_ci(labels, probs, threshold: float, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, list[float] | None]:
    """Percentile bootstrap confidence intervals (images resampled with replacement, seeded) for
    every scalar metric of :func:`full_metrics`: ``{"roc_auc": [lo, hi], ...}``. A resample where a metric is
    undefined (one class drawn) adds nothing to that metric's interval."""
    y, p = np.asarray(labels, int), np.asarray(probs, float)
    return _percentile_intervals(len(y), lambda idx: _resampled_metrics(y, p, threshold, idx), n_boot, seed, level,
                                 chunk_cells=2_000_000)


def _percentile_intervals(n: int, draw: Callable[[np.ndarray], dict[str, np.ndarray]], n_boot: int, seed: int,
                          level: float, chunk_cells: int) -> dict[str, list[float]]:
    """``{key: [lo, hi]}``: percentile intervals of what ``draw`` gives for ``n_boot`` seeded resamples of ``n``
    images (rows of indices, drawn ``chunk_cells // n`` at a time: bounded memory at any n). NaN draws are skipped;
    a key with none left has no interval."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    chunk = max(1, chunk_cells // max(n, 1))
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, (min(chunk, n_boot - start), n))
        for key, values in draw(idx).items():
            draws.setdefault(key, []).append(values)
    alpha = (1 - level) / 2
    out = {}
    for key, parts in draws.items():
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        if len(v):
            out[key] = [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))]
    return out


def resample_weights(idx: np.ndarray) -> np.ndarray:
    """(b, n) rows of resampled image indices -> (b, n) counts: how often each image was drawn in each resample."""
    b, n = idx.shape
    return np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(float)


def _resampled_metrics(y: np.ndarray, p: np.ndarray, threshold: float, idx: np.ndarray) -> dict[str, np.ndarray]:
    """full_metrics' scalars for each row of ``idx`` (a resample of the images), all rows at once: a resample is
    a count per image, so one sort of the scores and cumulative sums over the counts give every resample's ROC.
    NaN where a metric is undefined. tests/test_evaluate.py checks it equals full_metrics row by row."""
    from .calibrate import ECE_BINS

    b, n = idx.shape
    w = resample_weights(idx)
    pos, neg = w * y, w * (1 - y)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    called = p >= threshold
    tp, fp = pos[:, called].sum(1), neg[:, called].sum(1)
    fn, tn = n_pos - tp, n_neg - fp

    def ratio(a, c):
        return np.divide(a, c, out=np.full(b, np.nan), where=c > 0)

    both = (n_pos > 0) & (n_neg > 0)
    order = np.argsort(-p, kind="mergesort")
    last = np.r_[np.flatnonzero(np.diff(p[order])), n - 1]
    tps, fps = np.cumsum(pos[:, order], 1)[:, last], np.cumsum(neg[:, order], 1)[:, last]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.hstack([np.zeros((b, 1)), tps / n_pos[:, None]])
        fpr = np.hstack([np.zeros((b, 1)), fps / n_neg[:, None]])
        precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=tps + fps > 0)
        out = {"accuracy": (tp + tn) / n, "precision": ratio(tp, tp + fp), "recall": ratio(tp, n_pos),
               "specificity": ratio(tn, n_neg), "f1": ratio(2 * tp, 2 * tp + fp + fn),
               "net_benefit": (tp - fp * NET_BENEFIT_ODDS) / n,
               "roc_auc": np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, 1),
               "pr_auc": np.sum(np.diff(tpr, axis=1) * precision, 1)}
        for s in SENS_AT_SPEC:
            out[f"sensitivity_at_specificity_{s:.2f}"] = np.where(1 - fpr >= s, tpr, -np.inf).max(1)
        for t in SPEC_AT_SENS:
            out[f"specificity_at_sensitivity_{t:.2f}"] = np.where(tpr >= t, 1 - fpr, -np.inf).max(1)
        bins = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
        onehot = np.eye(ECE_BINS)[bins]  # (n, bins)
        out["ece"] = np.abs(w @ (onehot * p[:, None]) - w @ (onehot * y[:, None])).sum(1) / n
    for key in ("roc_auc", "pr_auc", "ece", *(k for k in out if "_at_" in k)):
        out[key] = np.where(both, out[key], np.nan)
    return out


def paired_difference(labels, probs_a, probs_b, threshold_a: float, threshold_b: float | None = None,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """B minus A, two sets of scores for the same images (one model with and without a change):
    ``{metric: {"a", "b", "difference", "difference_ci": [lo, hi]}}`` for every scalar metric of
    :func:`full_metrics`. Both are scored on the same resamples, so the interval is of the change itself, narrower
    than either metric's own when the two scores move together."""
    y = np.asarray(labels, int)
    p_a, p_b = np.asarray(probs_a, float), np.asarray(probs_b, float)
    if not len(y) == len(p_a) == len(p_b):
        raise ValueError(f"labels and both scores must be as long (got {len(y)}, {len(p_a)}, {len(p_b)})")
    t_b = threshold_a if threshold_b is None else threshold_b
    m_a, m_b = full_metrics(y, p_a, threshold_a), full_metrics(y, p_b, t_b)

    def change(idx):
        r_a, r_b = _resampled_metrics(y, p_a, threshold_a, idx), _resampled_metrics(y, p_b, t_b, idx)
        return {key: r_b[key] - r_a[key] for key in r_a}

    cis = _percentile_intervals(len(y), change, n_boot, seed, level, chunk_cells=1_000_000)
    return {key: {"a": m_a[key], "b": m_b[key], "difference": m_b[key] - m_a[key], "difference_ci": ci}
            for key, ci in cis.items() if m_a.get(key) is not None and m_b.get(key) is not None}


def metrics_with_ci(labels, probs, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """full_metrics with a ``<metric>_ci`` entry ([low, high], 95%) beside each scalar metric."""
    m = full_metrics(labels, probs, threshold)
    cis = bootstrap_ci(labels, probs, threshold, n_boot, seed) if len(labels) else {}
    out = {}
    for key, value in m.items():
        out[key] = value
        if key in cis:
            out[f"{key}_ci"] = cis[key]
    return out


# diagnosis_metrics' one-number summaries, in the order the CLI, the report and the card show them
# What the command line and the report show of full_metrics, in order (each with its bootstrap CI where it has one):
# a new metric is computed in compute_metrics / operating_points, resampled in _resampled_metrics, and named here.
SUMMARY = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc",
           *(f"sensitivity_at_specificity_{s:.2f}" for s in SENS_AT_SPEC),
           *(f"specificity_at_sensitivity_{s:.2f}" for s in SPEC_AT_SENS), "net_benefit", "ece",
           "ece_before_temperature")
DIAGNOSIS_SUMMARY = ("balanced_accuracy", "balanced_accuracy_equal_priors", "melanoma_vs_rest_roc_auc",
                     "cancer_vs_benign_roc_auc", "cancer_sensitivity", "benign_specificity")


def diagnosis_metrics(dx, p_verdict, threshold: float, p_melanoma, probs=None, probs_equal_priors=None,
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics by diagnosis for images whose data name one (``dx``: one of diagnoses.DIAGNOSES each), each with a
    95% bootstrap interval (``<key>_ci``) over the same resamples of images:

    * any model: melanoma vs rest ROC-AUC of ``p_melanoma``; cancer (melanoma, BCC, AK/IEC) vs benign ROC-AUC of
      ``p_verdict``, and at ``threshold`` the cancers' sensitivity and the benign lesions' specificity; per
      diagnosis, its count and the share flagged (``p_verdict >= threshold``);
    * a seven-class model (``probs`` (n, 7), calibrated): balanced multi-class accuracy (the ISIC 2018 ranking
      metric: the mean of the seven recalls of the most probable diagnosis), per-diagnosis recall and one-vs-rest
      ROC-AUC, and the 7 x 7 confusion matrix (rows: true, columns: predicted). With ``probs_equal_priors`` (the
      probabilities at equal priors, before the calibration's bias) the balanced accuracy of their top diagnosis too.
    """
    from .diagnoses import CANCERS, DIAGNOSES

    dx = np.asarray(dx, object)
    if unknown := sorted(set(dx.tolist()) - set(DIAGNOSES)):
        raise ValueError(f"unknown diagnosis {unknown[0]!r}")
    p_v, p_m = np.asarray(p_verdict, float), np.asarray(p_melanoma, float)
    is_mel, is_cancer = (dx == "mel").astype(int), np.isin(dx, CANCERS).astype(int)
    flagged = p_v >= threshold
    present = [d for d in DIAGNOSES if (dx == d).any()]
    truth = np.array([DIAGNOSES.index(d) for d in dx])
    tops = {}
    if probs is not None:
        tops["balanced_accuracy"] = np.asarray(probs, float).argmax(1)
    if probs_equal_priors is not None:
        tops["balanced_accuracy_equal_priors"] = np.asarray(probs_equal_priors, float).argmax(1)

    def draw(idx: np.ndarray) -> dict[str, np.ndarray]:
        b, w = len(idx), resample_weights(idx)

        def share(mask_num, mask_den):
            den = w[:, mask_den].sum(1)
            return np.divide(w[:, mask_num].sum(1), den, out=np.full(b, np.nan), where=den > 0)

        mel = _resampled_metrics(is_mel, p_m, threshold, idx)
        cancer = _resampled_metrics(is_cancer, p_v, threshold, idx)
        out = {"melanoma_vs_rest_roc_auc": mel["roc_auc"], "cancer_vs_benign_roc_auc": cancer["roc_auc"],
               "cancer_sensitivity": cancer["recall"], "benign_specificity": cancer["specificity"],
               **{f"flagged_{d}": share((dx == d) & flagged, dx == d) for d in present}}
        for key, top in tops.items():
            recalls = np.stack([share((truth == k) & (top == k), truth == k) for k, d in enumerate(DIAGNOSES)
                                if d in present])
            out[key] = np.nanmean(recalls, 0)
            if key == "balanced_accuracy":
                out |= {f"recall_{d}": r for d, r in zip(present, recalls)}
        if probs is not None:
            for k, d in enumerate(DIAGNOSES):
                if d in present and len(present) > 1:
                    out[f"roc_auc_{d}"] = _resampled_metrics((truth == k).astype(int), np.asarray(probs)[:, k],
                                                             0.5, idx)["roc_auc"]
        return out

    n = len(dx)
    full = {k: float(v[0]) for k, v in draw(np.arange(n)[None]).items() if not np.isnan(v[0])}
    cis = _percentile_intervals(n, draw, n_boot, seed, 0.95, chunk_cells=500_000) if n else {}
    out = {"n": n, "n_per_diagnosis": {d: int((dx == d).sum()) for d in present}, "threshold": float(threshold)}
    for key, value in full.items():
        out[key] = value
        if key in cis:
            out[f"{key}_ci"] = cis[key]
    if probs is not None:
        top = tops["balanced_accuracy"]
        out["confusion_matrix"] = {"labels": list(DIAGNOSES),
                                   "counts": [[int(((truth == i) & (top == j)).sum()) for j in range(len(DIAGNOSES))]
                                              for i in range(len(DIAGNOSES))]}
    return out


def _figure(draw: Callable, size=(4.4, 4.0)) -> bytes:
    """A PNG drawn with ``draw(ax)``. A bare Figure, not pyplot: no GUI backend, no global state, and a faster
    start for four plots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    draw(fig.subplots())
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def plot_pngs(labels, probs, metrics: dict, title: str) -> dict[str, bytes]:
    """{file name: PNG} of the confusion matrix and, where both classes are present, the ROC, precision-recall
    and reliability curves of one set of predictions (drawn from :func:`roc_points`: no scikit-learn import)."""
    from .calibrate import reliability_curve

    y, p = np.asarray(labels, int), np.asarray(probs, float)
    cm = np.array(metrics["confusion_matrix"])

    def confusion(ax):
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, f"{v:d}", ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks([0, 1], ["benign", "malignant"])
        ax.set_yticks([0, 1], ["benign", "malignant"])
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title(f"{title}\nthreshold {metrics['threshold']:.3f}", fontsize=9)
    pngs = {"confusion_matrix.png": _figure(confusion)}
    if metrics["roc_auc"] is None:
        return pngs
    fpr, tpr, precision = _curve(y, p)
    precision = np.r_[1, precision]

    def roc(ax):
        ax.plot(fpr, tpr, label=f"model (AUC = {metrics['roc_auc']:.3f})")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
        ax.set_xlabel("false positive rate (1 - specificity)")
        ax.set_ylabel("true positive rate (sensitivity)")
        ax.set_title(f"ROC, {title}", fontsize=9)
        ax.legend(loc="lower right")

    def pr(ax):
        ax.step(tpr, precision, where="pre", label=f"model (AP = {metrics['pr_auc']:.3f})")
        ax.axhline(y.mean(), ls="--", color="grey", label="chance")
        ax.set_xlabel("recall (sensitivity)")
        ax.set_ylabel("precision")
        ax.set_title(f"Precision-recall, {title}", fontsize=9)
        ax.legend(loc="lower left")
    curve = reliability_curve(p, y)

    def reliability(ax):
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
        ax.plot(curve["mean_predicted"], curve["fraction_malignant"], "o-", label="model")
        ax.set_xlabel("mean predicted p(malignant)")
        ax.set_ylabel("observed fraction malignant")
        ax.set_title(f"Reliability (ECE {metrics['ece']:.3f}), {title}", fontsize=9)
        ax.legend(loc="upper left")
    return {**pngs, "roc.png": _figure(roc), "pr.png": _figure(pr), "reliability.png": _figure(reliability)}


def diagnosis_confusion_png(diagnosis: dict, title: str) -> bytes:
    """The 7 x 7 confusion matrix of :func:`diagnosis_metrics` (true rows, most probable diagnosis columns), each
    row also as a share of its diagnosis so a rare one's recall reads as plainly as a common one's."""
    cm = np.array(diagnosis["confusion_matrix"]["counts"])
    names = diagnosis["confusion_matrix"]["labels"]
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)

    def draw(ax):
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, f"{v:d}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), [f"{d} ({n})" for d, n in zip(names, cm.sum(1))])
        ax.set_xlabel("most probable diagnosis")
        ax.set_ylabel("true diagnosis (n)")
        bacc = diagnosis.get("balanced_accuracy")
        ax.set_title(f"{title}" + (f"\nbalanced accuracy {bacc:.3f}" if bacc is not None else ""), fontsize=9)
    return _figure(draw, size=(5.2, 4.6))


def plot_title(metrics: dict) -> str:
    return f"{metrics['split']} split, n={metrics['n']}"


def clean_paths_for(data: str | Path, split: str = "test", out: str | Path | None = None,
                    on_progress: Callable[[int], None] | None = None,
                    on_start: Callable[[int], None] | None = None) -> set[str] | None:
    """The clean test of ``data`` (its test images with no near-duplicate in its train split; audited once,
    cached), or None when ``split`` is not test or the dataset has no train and test splits. With ``out``,
    the audit's summary is written to ``out/audit.json``."""
    from .audit import cached_audit
    from .datasets import discover

    if split != "test" or not {"train", "test"} <= set(discover(data)):
        return None
    result = cached_audit(data, on_progress=on_progress, on_start=on_start)
    if out is not None:
        atomic_write_text(Path(out) / "audit.json", json.dumps(result.summary, indent=2) + "\n")
    return result.clean_test_paths()


def evaluate(data: str | Path, out: str | Path, model_dir: str | Path | None = None, split: str = "test",
             batch_size: int = 32, on_batch: Callable[[int], None] | None = None,
             on_start: Callable[[int], None] | None = None, n_boot: int = 1000,
             clean_paths: set[str] | None = None, tta: bool = False, engine: str = "auto",
             prevalence: float | None = None, plots: bool = False) -> dict:
    """Predict every image of ``split`` of the dataset at ``data`` and write the results to ``out``.

    A dataset without train/test folders is evaluated whole. Unreadable images are left out of the
    metrics and listed under ``skipped``. Every scalar metric has a ``<name>_ci`` 95% bootstrap
    interval. With ``clean_paths`` (the images with no near-duplicate in training data) the same
    metrics are also computed on that subset, under ``clean``. ``prevalence`` moves the probabilities to
    a population with that fraction malignant (see ``BasePredictor.with_prevalence``). ``plots=True`` also
    writes the PNGs of :func:`plot_pngs`; off by default, because matplotlib's import and four PNGs would be most
    of a small evaluation's time (benchmarks/cold_start.py), and ``melanoma report`` draws them from
    ``predictions.csv`` anyway.
    """
    from .calibrate import expected_calibration_error, sigmoid
    from .config import sha256_file
    from .datasets import discover, select_split
    from .diagnoses import p_cancer, softmax
    from .engines import load_predictor

    splits = discover(data)
    samples = select_split(splits, split)
    predictor = load_predictor(model_dir, engine, batch_size=batch_size,
                               num_workers=1 if len(samples) > 256 else 0, tta=tta).with_prevalence(prevalence)
    if predictor.cfg.diagnoses:  # a seven-class model judges HAM10000's BCC and AK/IEC too, as the cancers they are
        splits = discover(data, other_dx="malignant")
        samples = select_split(splits, split)
    if on_start:
        on_start(len(samples))
    logits = predictor.predict_logits(samples, on_batch)
    temperature = predictor.cfg.temperature
    probs = [None if z is None else float(predictor.proba_from_logits(z)) for z in logits]
    ok = [(s, p, z) for s, p, z in zip(samples, probs, logits) if p is not None]
    labels, scores = [s.label for s, _, _ in ok], [p for _, p, _ in ok]
    threshold = predictor.threshold
    seven = predictor.cfg.diagnoses
    if seven:  # p_malignant is p(skin cancer); the seven probabilities beside it
        z7 = np.array([z for _, _, z in ok]).reshape(-1, len(seven))
        probs7, equal7 = predictor.diagnosis_probs(z7), predictor.diagnosis_probs(z7, equal_priors=True)
        raw = p_cancer(softmax(z7)).tolist()  # before calibration
        p_mel = probs7[:, seven.index("mel")]
    else:
        raw = [float(sigmoid(np.float64(z))) for _, _, z in ok]  # before temperature scaling
        probs7 = equal7 = None
        p_mel = np.array(scores)

    def summary(idx: list[int]) -> dict:
        y, p = [labels[i] for i in idx], [scores[i] for i in idx]
        named = [i for i in idx if ok[i][0].dx]
        by_dx = None if not named else diagnosis_metrics(
            [ok[i][0].dx for i in named], [scores[i] for i in named], threshold, p_mel[named],
            None if probs7 is None else probs7[named], None if equal7 is None else equal7[named], n_boot)
        return {**metrics_with_ci(y, p, threshold, n_boot),
                "ece_before_temperature": expected_calibration_error([raw[i] for i in idx], y) if y else None,
                **({"diagnosis": by_dx} if by_dx else {})}

    split_name = split if split in splits else "all"
    metrics = {"data": str(data), "split": split_name, **summary(list(range(len(ok)))),
               "temperature": temperature, "prevalence": prevalence, "model": str(model_dir or "bundled"), "tta": tta,
               "model_sha256": sha256_file(Path(predictor.model_dir) / "model.safetensors"),
               "ci": f"95% percentile bootstrap, {n_boot} resamples of images, seed 0",
               "skipped": [str(s.path) for s, p in zip(samples, probs) if p is None]}
    sources = list(dict.fromkeys(s.source for s, _, _ in ok))
    if len(sources) > 1:  # e.g. a multi-source run's split.csv: every source on its own, then the pool above
        metrics["per_source"] = {name: summary([i for i, (s, _, _) in enumerate(ok) if s.source == name])
                                 for name in sources}
    if clean_paths is not None:
        keep = [i for i, (s, _, _) in enumerate(ok) if str(s.path) in clean_paths]
        metrics["clean"] = {**summary(keep), "n_excluded": len(ok) - len(keep)}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "p_malignant", "source", "dx", *(f"p_{d}" for d in seven or ())])
    writer.writerows([str(s.path), s.label, f"{p:.6f}", s.source, s.dx,
                      *(f"{q:.6f}" for q in (probs7[k] if seven else ()))] for k, (s, p, _) in enumerate(ok))
    atomic_write_text(out / "predictions.csv", buf.getvalue())
    if plots:
        for name, png in plot_pngs(labels, scores, metrics, plot_title(metrics)).items():
            atomic_write_bytes(out / name, png)
    return metrics


def read_predictions(eval_dir: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ``predictions.csv`` that :func:`evaluate` writes, back as (paths, labels (N,), p_malignant (N,))."""
    with (Path(eval_dir) / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return ([r["path"] for r in rows], np.array([int(r["label"]) for r in rows]),
            np.array([float(r["p_malignant"]) for r in rows]))
