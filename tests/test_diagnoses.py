"""The seven diagnoses: what labels allow, per-source priors, calibration and the differential."""

import numpy as np
import pytest

from melanoma.diagnoses import (
    DIAGNOSES,
    IS_CANCER,
    allowed,
    allowed_matrix,
    calibrated,
    class_counts,
    differential,
    fit_calibration,
    p_cancer,
    partial_nll,
    softmax,
    source_log_priors,
)
from melanoma.imaging import Sample


def test_a_named_diagnosis_allows_itself_and_a_partial_label_its_set():
    assert allowed("bkl", 0).tolist() == [d == "bkl" for d in DIAGNOSES]
    assert [d for d, a in zip(DIAGNOSES, allowed("", 0)) if a] == ["nv", "bkl", "df", "vasc"]
    assert [d for d, a in zip(DIAGNOSES, allowed("", 1)) if a] == ["mel", "bcc", "akiec"]
    assert [d for d, a in zip(DIAGNOSES, allowed("", 1, "melanoma")) if a] == ["mel"]
    with pytest.raises(ValueError, match="unknown diagnosis 'sk'"):
        allowed("sk", 0)
    with pytest.raises(ValueError, match="malignant_means"):
        allowed("", 1, "tumour")


def test_source_priors_count_named_images_and_share_partial_ones_by_the_named_mix():
    samples = [Sample(f"h{i}", 0, "ham", dx=dx) for i, dx in enumerate(["nv"] * 6 + ["bkl"] * 2 + ["mel"] * 2)]
    samples += [Sample(f"k{i}", label, "kaggle") for i, label in enumerate([0] * 4 + [1] * 4)]
    allow = allowed_matrix(samples, "melanoma")
    priors = {src: np.exp(v) for src, v in source_log_priors(samples, allow).items()}
    ham = dict(zip(DIAGNOSES, priors["ham"] * (10 + 7)))  # counts + one pseudo-count each
    assert ham == pytest.approx({"mel": 3, "nv": 7, "bkl": 3, "df": 1, "vasc": 1, "bcc": 1, "akiec": 1})
    # Kaggle's 4 benign images split as the named benign images are (nv 7 : bkl 3 : df 1 : vasc 1, pseudo-counts in)
    kaggle = dict(zip(DIAGNOSES, priors["kaggle"] * (8 + 7)))
    assert kaggle["mel"] == pytest.approx(5)
    assert kaggle["nv"] == pytest.approx(1 + 4 * 7 / 12) and kaggle["df"] == pytest.approx(1 + 4 / 12)
    assert sum(kaggle.values()) == pytest.approx(15)
    assert class_counts(samples, allow) == {"mel": 6, "nv": 6, "bkl": 2, "df": 0, "vasc": 0, "bcc": 0,
                                            "akiec": 0, "partial": 4}


def test_partial_nll_is_cross_entropy_for_one_diagnosis_and_the_sets_likelihood_otherwise():
    z = np.array([[2.0, 0.5, -1.0, 0.0, 0.0, 1.0, -2.0]])
    p = softmax(z)[0]
    assert partial_nll(z, allowed("nv", 0)[None]) == pytest.approx(-np.log(p[1]))
    assert partial_nll(z, allowed("", 1)[None]) == pytest.approx(-np.log(p[IS_CANCER].sum()))


def test_calibration_recovers_the_temperature_and_bias_that_made_the_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (6000, 7))
    true_t, true_bias = 2.0, np.array([0.0, 1.5, -0.5, -2.0, -1.0, 0.5, -1.5])
    probs = softmax(z / true_t + true_bias)
    dx = [DIAGNOSES[rng.choice(7, p=q)] for q in probs]
    t, bias = fit_calibration(z, allowed_matrix([Sample("x", 0, dx=d) for d in dx]))
    assert t == pytest.approx(true_t, rel=0.08)
    assert np.asarray(bias) == pytest.approx(true_bias, abs=0.15)
    q = calibrated(z[:3], t, bias)
    assert q.sum(1) == pytest.approx(1.0) and p_cancer(q) == pytest.approx(q[:, IS_CANCER].sum(1))
    shifted = calibrated(z[:3], t, bias, shift=np.log(4))  # a population with 4x the odds of each cancer
    odds = lambda p: p / (1 - p)  # noqa: E731
    assert odds(p_cancer(shifted)) == pytest.approx(4 * odds(p_cancer(q)))  # each cancer x4, the benign ones x1


def test_the_differential_lists_diagnoses_most_probable_first_with_plain_names():
    rows = differential([0.05, 0.6, 0.2, 0.05, 0.02, 0.05, 0.03], top=3)
    assert [r["dx"] for r in rows] == ["nv", "bkl", "mel"]
    assert rows[0] == {"dx": "nv", "name": "melanocytic nevus", "p": 0.6}
    assert len(differential(np.full(7, 1 / 7))) == 7
