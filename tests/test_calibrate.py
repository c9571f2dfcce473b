import numpy as np
import pytest

from melanoma.calibrate import choose_threshold, expected_calibration_error, fit_temperature, reliability_curve, sigmoid


def overconfident(n: int = 4000, scale: float = 4.0, seed: int = 0):
    """Labels drawn from sigmoid(z), and a model that reports scale * z: right ranking, overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < sigmoid(z)).astype(int)
    return scale * z, y


def test_temperature_undoes_overconfidence_and_lowers_ece():
    logits, y = overconfident()
    t = fit_temperature(logits, y)
    assert t == pytest.approx(4.0, rel=0.15)
    before = expected_calibration_error(sigmoid(logits), y)
    after = expected_calibration_error(sigmoid(logits / t), y)
    assert before > 0.08 and after < 0.03 and after < before / 3


def test_threshold_meets_the_target_sensitivity_on_validation():
    logits, y = overconfident(scale=1.0, seed=1)
    p = sigmoid(logits)
    for target in (0.8, 0.9, 0.95):
        thr = choose_threshold(p, y, target)
        sensitivity = (p[y == 1] >= thr).mean()
        assert sensitivity >= target
        # and it is the most specific such threshold: at the next score up the target is missed
        setting, below = np.unique(p[p > thr]).min(), np.unique(p[p < thr]).max()
        assert (p[y == 1] > setting).mean() < target
        assert np.isclose(thr, (setting + below) / 2)  # halfway to the next lower score: an engine's last digit
        assert ((p >= thr) == (p >= setting)).all()  # does not cross it, and the same images are flagged


def test_youden_threshold_separates_two_clean_groups():
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    thr = choose_threshold(p, y, None)
    assert 0.3 < thr <= 0.6


def test_reliability_curve_counts_every_image():
    logits, y = overconfident(n=500)
    curve = reliability_curve(sigmoid(logits), y, n_bins=10)
    assert sum(curve["count"]) == 500
    assert all(0 <= f <= 1 for f in curve["fraction_malignant"])


def test_the_per_source_threshold_is_the_lowest_over_sources_with_enough_melanomas():
    from melanoma.calibrate import choose_threshold_per_source

    rng = np.random.default_rng(0)
    # source "low": melanomas score low (another clinic's camera); "high": they score high; "few": 5 melanomas only
    p = np.concatenate([rng.uniform(0.0, 0.3, 40), rng.uniform(0.1, 0.5, 30),   # low: benign, melanomas
                        rng.uniform(0.0, 0.5, 40), rng.uniform(0.6, 1.0, 30),   # high
                        rng.uniform(0.0, 0.5, 40), rng.uniform(0.0, 0.05, 5)])  # few
    y = np.array(([0] * 40 + [1] * 30) * 2 + [0] * 40 + [1] * 5)
    src = np.array(["low"] * 70 + ["high"] * 70 + ["few"] * 45, object)
    threshold, own = choose_threshold_per_source(p, y, src, 0.9)
    assert set(own) == {"low", "high"}  # "few" has no say: 5 < MIN_SOURCE_POSITIVES
    assert threshold == own["low"] < own["high"]
    for name in own:  # every source with a say keeps the target sensitivity
        assert (p[(src == name) & (y == 1)] >= threshold).mean() >= 0.9


def test_pooled_sources_rename_a_group_and_refuse_an_unknown_name():
    from melanoma.calibrate import pooled_sources

    src = ["ham10000", "isic2017", "kaggle", "ham10000"]
    assert pooled_sources(src, [["ham10000", "isic2017"]]).tolist() == ["ham10000+isic2017"] * 2 + ["kaggle",
                                                                                                    "ham10000+isic2017"]
    assert pooled_sources(src, None).tolist() == src
    with pytest.raises(ValueError, match="'ham1000'"):
        pooled_sources(src, [["ham1000", "isic2017"]])
