"""The evaluation harness that benchmarks and experiment scripts call: the standard sets behind one data root, one
model's scores on a set, and paired comparisons of two models. Torch-free (the ONNX engine serves a model folder
with ``model.onnx``); the non-lesion images of :mod:`melanoma.bench.nonlesion` need scikit-image (the dev extra).

    MELANOMA_DATA=/path/to/data python benchmarks/diagnoses.py MODEL   # default: ../shared/data
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..diagnoses import CANCERS
from ..imaging import InMemory, Sample

DATA_ENV = "MELANOMA_DATA"
KAGGLE, ISIC2017, HAM10000, EXTERNAL = "melanoma_cancer_dataset", "isic2017", "ham10000", "isic2018_test"


def data_root() -> Path:
    """Where the standard datasets are: ``$MELANOMA_DATA``, else ``../shared/data`` (beside the repository)."""
    return Path(os.environ.get(DATA_ENV) or "../shared/data")


def external_set(root: Path | None = None) -> list[Sample]:
    """The ISIC 2018 Task 3 test (1,512 images, each naming its diagnosis): external validation, never training."""
    from ..datasets import discover

    return discover((root or data_root()) / EXTERNAL)["test"]


def kaggle_clean_test(root: Path | None = None) -> list[Sample]:
    """The Kaggle test images with no near-duplicate in the Kaggle training folder (audited once, cached)."""
    from ..audit import cached_audit
    from ..datasets import discover

    kaggle = (root or data_root()) / KAGGLE
    clean = cached_audit(kaggle).clean_test_paths()
    return [s for s in discover(kaggle)["test"] if str(s.path) in clean]


def validation_sets(split_csv: str | Path) -> dict[str, list[Sample]]:
    """A run's validation images (its ``split.csv``), per source."""
    from ..datasets import read_split

    out: dict[str, list[Sample]] = {}
    for s in read_split(split_csv)["val"]:
        out.setdefault(s.source, []).append(s)
    return out


def nonlesion_set() -> list[InMemory]:
    """The test suite's non-lesion images (photos, charts, blanks, ...): what the gate must refuse."""
    from .nonlesion import nonlesion_images

    return [InMemory(name, img) for name, img in nonlesion_images()]


def nonlesion_pictures(folder: str | Path, per_source: int = 100, seed: int = 0) -> list[InMemory]:
    """The wider non-lesion set: ``per_source`` seeded crops of the pictures under each subfolder of ``folder``
    (``tools/nonlesion_pictures.sh``'s ``DEST/held_out``: packages no gate is fitted on), as the gate's negatives
    are cut (:func:`melanoma.negatives.picture_crops`); a picture's source is ``nonlesion:<subfolder>``."""
    from ..negatives import picture_crops, picture_sources

    n = per_source * len(picture_sources(folder))
    crops = picture_crops(folder, n, np.random.default_rng([seed, 11]), name="held_out")
    return [InMemory(c.path, c.image, 0, "nonlesion:" + c.path.split(":")[2]) for c in crops]


def stratified(samples: list, n: int | None) -> list:
    """Every ``len/n``-th image of each diagnosis (all of them without ``n``): a fixed, proportionate subset."""
    if not n or n >= len(samples):
        return samples
    step = len(samples) / n
    by_dx: dict[str, list] = {}
    for s in samples:
        by_dx.setdefault(s.dx, []).append(s)
    return sorted([s for group in by_dx.values() for s in group[::max(1, round(step))]], key=lambda s: str(s.path))


@dataclass
class Scores:
    """One model on one set's readable images, in order: what it would decide for each."""

    samples: list
    p_verdict: np.ndarray  # p_malignant: p(skin cancer) for a seven-class model, p(melanoma) for a one-logit one
    p_melanoma: np.ndarray
    refused: np.ndarray  # bool: "cannot assess"
    threshold: float
    probs: np.ndarray | None = None  # (n, 7), a seven-class model's calibrated probabilities
    probs_equal_priors: np.ndarray | None = None  # (n, 7), softmax(logits / T): before the calibration's bias
    refusals: list | None = None  # a refused image's framing.REASONS key (None: the gate's own words)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])

    @property
    def is_cancer(self) -> np.ndarray:
        """Cancer (melanoma, BCC, AK/IEC) by the named diagnosis; the label where none is named."""
        return np.array([s.dx in CANCERS if s.dx else bool(s.label) for s in self.samples], int)

    @property
    def dx(self) -> np.ndarray:
        return np.array([s.dx for s in self.samples], object)


def score(predictor, samples: list) -> Scores:
    """``predictor`` (:func:`melanoma.engines.load_predictor`) on ``samples``; unreadable images are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable images: left out, and counted by the caller if it must
        results = predictor.run(samples)
    kept = [(s, r) for s, r in zip(samples, results) if r is not None]
    logits = [r["logit"] for _, r in kept]
    p_verdict = np.array([float(predictor.proba_from_logits(z)) for z in logits])
    probs = equal = None
    if predictor.cfg.diagnoses:
        z = np.array(logits).reshape(len(kept), -1)
        probs, equal = predictor.diagnosis_probs(z), predictor.diagnosis_probs(z, equal_priors=True)
        p_melanoma = probs[:, predictor.cfg.diagnoses.index("mel")]
    else:
        p_melanoma = p_verdict
    return Scores([s for s, _ in kept], p_verdict, p_melanoma,
                  np.array([predictor.is_out_of_distribution(r) for _, r in kept]), predictor.threshold, probs, equal,
                  [r.get("refusal") for _, r in kept])


def paired(a: Scores, b: Scores, target: str = "cancer", score_name: str = "p_verdict") -> dict:
    """B - A on the same images (``evaluate.paired_difference``: ROC-AUC, sensitivity, specificity, net benefit,
    each at its model's threshold, with 95% intervals). ``target``: "cancer" (cancer vs benign) or "melanoma"
    (melanoma vs rest); ``score_name``: which probability ranks (``p_verdict`` or ``p_melanoma``); thresholds
    always apply to ``p_verdict``, so with ``p_melanoma`` only the ROC-AUC is meaningful and it is all that is kept."""
    from ..evaluate import paired_difference

    if [s.path for s in a.samples] != [s.path for s in b.samples]:
        raise ValueError("the two models did not read the same images")
    y = a.is_cancer if target == "cancer" else (a.dx == "mel").astype(int) if a.dx.all() else a.labels
    d = paired_difference(y, getattr(a, score_name), getattr(b, score_name), a.threshold, b.threshold)
    keys = ("roc_auc", "recall", "specificity", "net_benefit") if score_name == "p_verdict" else ("roc_auc",)
    return {"n": len(y), "n_positive": int(y.sum()), **{k: d[k] for k in keys}}


def labels_and_scores(predictor, samples: list) -> tuple[np.ndarray, np.ndarray]:
    """Labels and p(malignant) (the verdict's probability) of every readable image, in order, refused or not."""
    s = score(predictor, samples)
    return s.labels, s.p_verdict


CLEAN, EXTERNAL_TITLE = "Kaggle clean test", "ISIC 2018 test (external)"


def standard_sets(root: Path | None = None) -> dict[str, list[Sample]]:
    """The two sets every recipe is compared on: the Kaggle clean test and the external ISIC 2018 test."""
    return {CLEAN: kaggle_clean_test(root), EXTERNAL_TITLE: external_set(root)}


PAIRED_METRICS = ("roc_auc", "recall", "specificity", "net_benefit")
PAIRED_CI = "95% percentile bootstrap of the paired difference B - A, 1000 resamples of images, seed 0"


def paired_sets(a, b, sets: dict[str, list]) -> dict:
    """Two predictors on each set: n, melanomas, and B - A for ROC-AUC, recall, specificity and net benefit (each at
    its model's threshold), printed as a table row per set too."""
    from ..evaluate import paired_difference

    out = {}
    for name, samples in sets.items():
        y, p_a = labels_and_scores(a, samples)
        y_b, p_b = labels_and_scores(b, samples)
        if len(y) != len(y_b) or not (y == y_b).all():
            raise ValueError(f"{name}: the two models could not read the same images")
        d = paired_difference(y, p_a, p_b, a.threshold, b.threshold)
        out[name] = r = {"n": len(y), "n_malignant": int(y.sum()), **{k: d[k] for k in PAIRED_METRICS}}
        print(f"| {name} | {r['n']} ({r['n_malignant']} mel.) | " + " | ".join(
            f"{v['a']:.3f} -> {v['b']:.3f}, {v['difference']:+.3f} ({v['difference_ci'][0]:+.3f} to "
            f"{v['difference_ci'][1]:+.3f})" for v in (r[k] for k in PAIRED_METRICS)) + " |", flush=True)
    return out


def describe(model: Path | None, predictor) -> dict:
    """Which model a result is of: its folder, threshold and weights' checksum."""
    from ..config import DEFAULT_MODEL_DIR, sha256_file

    return {"model": str(model or "bundled"), "threshold": predictor.threshold,
            "model_sha256": sha256_file(Path(model or DEFAULT_MODEL_DIR) / "model.safetensors")}


def gate_features(predictor, samples: list) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) gate features and (N,) flat-image flags of the readable samples, in order."""
    rs = [r for r in predictor.run(samples) if r is not None]
    return np.stack([r["features"] for r in rs]), np.array([r["flat"] for r in rs])
