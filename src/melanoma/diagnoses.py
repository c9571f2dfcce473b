"""The seven diagnoses: the one list, what each data source's labels allow, per-source priors, and the calibrated
probabilities a seven-class model reports (p(melanoma), p(skin cancer), the differential). Torch-free: the ONNX
core, evaluation and training all read it.

A seven-class network emits one logit per diagnosis. Trained with the priors of each image's source added to its
logits (logit adjustment, Menon et al. 2021), the bare logits rank every diagnosis at equal priors; calibration
(:func:`fit_calibration`) then fits a temperature and a bias per diagnosis on validation images, so that
``softmax(logits / T + bias)`` are probabilities for the validation images' mix of lesions.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

# ISIC 2018 Task 3's seven classes, in HAM10000's spelling; the order of a seven-class network's outputs.
DIAGNOSES = ("mel", "nv", "bkl", "df", "vasc", "bcc", "akiec")
NAMES = {"mel": "melanoma", "nv": "melanocytic nevus", "bkl": "benign keratosis", "df": "dermatofibroma",
         "vasc": "vascular lesion", "bcc": "basal cell carcinoma",
         "akiec": "actinic keratosis / intraepithelial carcinoma"}
CANCERS = ("mel", "bcc", "akiec")  # "see a dermatologist": the skin cancers (AK/IEC as in ISIC's "malignant")
BENIGN = ("nv", "bkl", "df", "vasc")
# What a plain "malignant" label (a benign/malignant folder, a melanoma-only CSV) allows when no diagnosis is named:
# "cancer": any of CANCERS; "melanoma": melanoma alone (a folder shown to hold only melanomas, as the Kaggle set's).
MALIGNANT_MEANS = ("cancer", "melanoma")
IS_CANCER = np.array([d in CANCERS for d in DIAGNOSES])


def allowed(dx: str, label: int, malignant_means: str = "cancer") -> np.ndarray:
    """(7,) bool: the diagnoses an image's labels allow. A named diagnosis allows itself; otherwise the label
    allows a set (benign: the four benign diagnoses; malignant: per ``malignant_means``). A partial label is
    trained on as the likelihood of its set, not dropped."""
    if dx:
        if dx not in DIAGNOSES:
            raise ValueError(f"unknown diagnosis {dx!r} (known: {', '.join(DIAGNOSES)})")
        return np.array([d == dx for d in DIAGNOSES])
    if malignant_means not in MALIGNANT_MEANS:
        raise ValueError(f"malignant_means must be one of {', '.join(MALIGNANT_MEANS)} (got {malignant_means!r})")
    if label == 1:
        return IS_CANCER.copy() if malignant_means == "cancer" else np.array([d == "mel" for d in DIAGNOSES])
    return ~IS_CANCER


def allowed_matrix(samples, malignant_means: str = "cancer") -> np.ndarray:
    """(n, 7) bool, :func:`allowed` of each sample (anything with ``dx`` and ``label``)."""
    return np.stack([allowed(s.dx, s.label, malignant_means) for s in samples]) if samples else \
        np.zeros((0, len(DIAGNOSES)), bool)


def source_log_priors(samples, allow: np.ndarray) -> dict[str, list[float]]:
    """Each source's log prior of the seven diagnoses among ``samples`` (rows of ``allow``). A partial label shares
    its one image among its allowed diagnoses in proportion to how often the named images of all sources show them
    (Kaggle's benign images count as nevi, keratoses, ... in the named sources' proportions); one pseudo-count per
    diagnosis keeps an absent one finite."""
    allow = np.asarray(allow, bool)
    named = allow.sum(1) == 1
    pooled = allow[named].sum(0) + 1.0
    share = allow * pooled
    share = share / share.sum(1, keepdims=True)
    out = {}
    for src in dict.fromkeys(s.source for s in samples):
        m = np.array([s.source == src for s in samples])
        counts = share[m].sum(0) + 1.0
        out[src] = np.log(counts / counts.sum()).round(6).tolist()
    return out


def class_counts(samples, allow: np.ndarray) -> dict[str, int]:
    """Images whose labels name each diagnosis alone (what a card reports as learnt), and how many carried a set."""
    allow = np.asarray(allow, bool)
    named = Counter(DIAGNOSES[int(np.argmax(a))] for a in allow if a.sum() == 1)
    return {**{d: named[d] for d in DIAGNOSES}, "partial": int((allow.sum(1) > 1).sum())}


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def calibrated(logits, temperature: float, bias, shift: float = 0.0) -> np.ndarray:
    """(..., 7) probabilities ``softmax(logits / T + bias)``; ``shift`` is added to the log-odds of every cancer
    (a population's prevalence, :meth:`BasePredictor.with_prevalence`)."""
    z = np.asarray(logits, np.float64) / temperature + np.asarray(bias, np.float64) + shift * IS_CANCER
    return softmax(z)


def p_cancer(probs: np.ndarray) -> np.ndarray:
    return np.asarray(probs)[..., IS_CANCER].sum(-1)


def partial_nll(logits: np.ndarray, allow: np.ndarray) -> float:
    """Mean negative log-likelihood of each image's allowed set under softmax(logits)."""
    z = np.asarray(logits, np.float64)
    top = z.max(1, keepdims=True)
    log_all = np.log(np.exp(z - top).sum(1))
    log_set = np.log((np.exp(z - top) * allow).sum(1))
    return float(np.mean(log_all - log_set))


def fit_calibration(logits, allow) -> tuple[float, list[float]]:
    """Temperature and per-diagnosis bias minimising :func:`partial_nll` of ``softmax(logits / T + bias)`` on
    validation images (Alexandari et al. 2020, "bias-corrected temperature scaling": the bias moves the equal priors
    the logits were trained at to the validation images' mix). Bias of the first diagnosis fixed at 0."""
    from scipy.optimize import minimize

    z, allow = np.asarray(logits, np.float64), np.asarray(allow, bool)

    def loss(v: np.ndarray) -> float:
        return partial_nll(z / np.exp(v[0]) + np.concatenate([[0.0], v[1:]]), allow)

    res = minimize(loss, np.zeros(len(DIAGNOSES)), method="L-BFGS-B",
                   bounds=[(np.log(0.05), np.log(20.0))] + [(-20.0, 20.0)] * (len(DIAGNOSES) - 1))
    return float(np.exp(res.x[0])), [0.0, *(round(float(b), 6) for b in res.x[1:])]


def differential(probs, top: int | None = None) -> list[dict]:
    """The diagnoses of one image, most probable first (the ``top`` first only): ``[{"dx", "name", "p"}, ...]``."""
    probs = np.asarray(probs, np.float64)
    order = np.argsort(-probs, kind="stable")[:top]
    return [{"dx": DIAGNOSES[i], "name": NAMES[DIAGNOSES[i]], "p": round(float(probs[i]), 6)} for i in order]


def short_differential(row_diagnoses: list[dict] | None, top: int = 3) -> str:
    """A row's ``diagnoses`` in one line, e.g. "melanocytic nevus 0.71, melanoma 0.18, benign keratosis 0.06"."""
    return ", ".join(f"{d['name']} {d['p']:.2f}" for d in (row_diagnoses or [])[:top])
