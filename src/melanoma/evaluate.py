"""Evaluation: metrics of a model folder on a labelled split, written as ``metrics.json``,
``predictions.csv`` and ``confusion_matrix.png``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import atomic_write_bytes, atomic_write_text


def compute_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """Binary metrics for labels (0/1, malignant = 1) and p(malignant) at ``threshold``.

    ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]``; ``roc_auc`` and ``pr_auc`` are None when
    only one class is present.
    """
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= threshold).astype(int)
    (tn, fp), (fn, tp) = confusion_matrix(y, pred, labels=[0, 1]).tolist()

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    both = len(set(y.tolist())) == 2
    return {
        "n": int(len(y)), "n_benign": int((y == 0).sum()), "n_malignant": int((y == 1).sum()),
        "threshold": float(threshold),
        "accuracy": ratio(tp + tn, len(y)),
        "precision": precision,
        "recall": recall,  # = sensitivity
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def plot_confusion_matrix(cm: list[list[int]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(4.2, 4))
    ConfusionMatrixDisplay(np.array(cm), display_labels=["benign", "malignant"]).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def evaluate(data: str | Path, out: str | Path, model_dir: str | Path | None = None, split: str = "test",
             batch_size: int = 32, on_batch: Callable[[int], None] | None = None,
             on_start: Callable[[int], None] | None = None) -> dict:
    """Predict every image of ``split`` of the dataset at ``data`` and write the results to ``out``.

    A dataset without train/test folders is evaluated whole. Unreadable images are left out of the
    metrics and listed in ``metrics.json`` under ``skipped``.
    """
    from .data import discover, select_split
    from .predict import Predictor

    splits = discover(data)
    samples = select_split(splits, split)
    predictor = Predictor(model_dir, batch_size=batch_size, num_workers=1 if len(samples) > 256 else 0)
    if on_start:
        on_start(len(samples))
    probs = predictor.predict_samples(samples, on_batch)
    ok = [(s, p) for s, p in zip(samples, probs) if p is not None]
    metrics = compute_metrics([s.label for s, _ in ok], [p for _, p in ok], predictor.cfg.threshold)
    metrics = {"data": str(data), "split": split if split in splits else "all", **metrics,
               "temperature": predictor.cfg.temperature, "model": str(model_dir or "bundled"),
               "skipped": [str(s.path) for s, p in zip(samples, probs) if p is None]}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "p_malignant"])
    writer.writerows([str(s.path), s.label, f"{p:.6f}"] for s, p in ok)
    atomic_write_text(out / "predictions.csv", buf.getvalue())
    plot_confusion_matrix(metrics["confusion_matrix"], out / "confusion_matrix.png",
                          f"{metrics['split']} split, n={metrics['n']}, threshold={metrics['threshold']:.2f}")
    return metrics
