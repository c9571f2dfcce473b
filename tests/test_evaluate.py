import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.evaluate import compute_metrics, evaluate


def test_metrics_on_a_hand_checked_example():
    # threshold 0.5 -> predictions 1 1 0 0 | 1 0 0 0: tp=2 fn=2, fp=1 tn=3
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    probs = [0.9, 0.6, 0.4, 0.2, 0.7, 0.3, 0.1, 0.05]
    m = compute_metrics(labels, probs, threshold=0.5)
    assert m["confusion_matrix"] == [[3, 1], [2, 2]]
    assert (m["n"], m["n_benign"], m["n_malignant"]) == (8, 4, 4)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    # ROC-AUC = share of (malignant, benign) pairs ranked right: 0.9 beats 4, 0.6 and 0.4 beat 3, 0.2 beats 2
    assert m["roc_auc"] == pytest.approx((4 + 3 + 3 + 2) / 16)
    assert compute_metrics(labels, probs, threshold=0.15)["confusion_matrix"] == [[2, 2], [0, 4]]
    # net benefit at risk 0.10: (tp - fp * 1/9) / n; calling everyone malignant earns prevalence - (1 - prev) / 9
    assert m["net_benefit"] == pytest.approx((2 - 1 / 9) / 8)
    assert compute_metrics(labels, probs, threshold=0.0)["net_benefit"] == pytest.approx(0.5 - 0.5 / 9)
    assert compute_metrics(labels, probs, threshold=1.0)["net_benefit"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learns_with_ties_and_at_every_size(seed: int):
    from sklearn import metrics as sk

    from melanoma.evaluate import operating_points

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    p = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.25, n), 0, 1), 1 + seed)  # rounding: many ties
    m = compute_metrics(y, p, 0.5)
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(sk.average_precision_score(y, p))
    assert m["confusion_matrix"] == sk.confusion_matrix(y, p >= 0.5, labels=[0, 1]).tolist()
    assert m["f1"] == pytest.approx(sk.f1_score(y, p >= 0.5))
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    ops = operating_points(y, p)
    assert ops["sensitivity_at_specificity_0.90"] == pytest.approx(tpr[1 - fpr >= 0.90].max())
    assert ops["specificity_at_sensitivity_0.95"] == pytest.approx((1 - fpr)[tpr >= 0.95].max())


def test_the_bootstrap_scores_every_resample_as_full_metrics_does():
    from melanoma.evaluate import _resampled_metrics, full_metrics

    rng = np.random.default_rng(3)
    y = np.r_[0, 1, rng.integers(0, 2, 28)]
    p = np.round(rng.random(30), 1)  # ties
    idx = np.vstack([rng.integers(0, 30, (40, 30)), np.zeros((1, 30), int)])  # the last draws one image 30 times
    fast = _resampled_metrics(y, p, 0.45, idx)
    whole = full_metrics(y, p, 0.45)
    assert set(fast) == {k for k, v in whole.items() if isinstance(v, float) and k != "threshold"}
    for k, row in enumerate(idx):
        for key, value in full_metrics(y[row], p[row], 0.45).items():
            if key in fast:
                expected = np.nan if value is None else value
                assert fast[key][k] == pytest.approx(expected, nan_ok=True), (key, k)


def test_metrics_with_one_class_only():
    m = compute_metrics([0, 0], [0.2, 0.8])
    assert m["roc_auc"] is None and m["recall"] is None and m["specificity"] == 0.5


def test_evaluate_writes_the_contracted_files(kaggle_like: Path, tiny_model_dir: Path, tmp_path: Path):
    (kaggle_like / "test" / "malignant" / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.jpg"):
        m = evaluate(kaggle_like, tmp_path / "eval", tiny_model_dir, split="test")
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk == m
    for key in ("n", "n_benign", "n_malignant", "accuracy", "precision", "recall", "specificity", "f1",
                "roc_auc", "threshold", "confusion_matrix"):
        assert key in m
    assert (m["n"], m["n_benign"], m["n_malignant"]) == (12, 6, 6)
    assert m["skipped"] == [str(kaggle_like / "test" / "malignant" / "broken.jpg")]
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    assert tn + fp == 6 and fn + tp == 6
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert len(rows) == 12 and set(rows[0]) == {"path", "label", "p_malignant", "source", "dx"}
    assert {r["source"] for r in rows} == {"kaggle"} and "per_source" not in m  # one source: no per-source part
    assert all(0 <= float(r["p_malignant"]) <= 1 for r in rows)


def test_evaluate_cli_prints_a_summary(kaggle_like: Path, tiny_model_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["evaluate", str(kaggle_like), "--model", str(tiny_model_dir),
                                      "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert "n=12" in result.output and "roc_auc" in result.output
    assert (tmp_path / "e" / "metrics.json").is_file()


def test_evaluate_cli_takes_a_runs_split_file(kaggle_like: Path, tiny_model_dir: Path, tmp_path: Path):
    from melanoma.datasets import discover, write_split

    splits = discover(kaggle_like)
    write_split(tmp_path / "split.csv", {"train": splits["train"], "val": splits["test"][:8]})
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "split.csv"), "--split", "val",
                                      "--model", str(tiny_model_dir), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n"] == 8


def test_cli_errors_are_one_clear_line(tmp_path: Path):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 3 and "no such file or folder" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--model", str(tmp_path)])
    assert result.exit_code == 3 and "Traceback" not in result.output


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_n():
    from melanoma.evaluate import metrics_with_ci

    widths = []
    for n in (100, 1600):
        rng = np.random.default_rng(n)
        y = rng.integers(0, 2, n)
        p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
        m = metrics_with_ci(y, p, threshold=0.5, n_boot=300, seed=0)
        for key in ("accuracy", "recall", "specificity", "roc_auc", "pr_auc", "f1", "ece"):
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi, key
        widths.append(m["roc_auc_ci"][1] - m["roc_auc_ci"][0])
        assert metrics_with_ci(y, p, 0.5, n_boot=300, seed=0) == m  # seeded: reproducible
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 16x the data, about a quarter of the width


def test_calibration_error_has_an_interval_that_separates_calibrated_from_overconfident():
    from melanoma.evaluate import metrics_with_ci

    rng = np.random.default_rng(0)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)  # calibrated by construction
    calibrated = metrics_with_ci(y, p, 0.5, n_boot=300)
    overconfident = metrics_with_ci(y, np.where(p >= 0.5, 0.99, 0.01), 0.5, n_boot=300)
    assert calibrated["ece"] < 0.05 and calibrated["ece_ci"][1] < overconfident["ece_ci"][0]
    assert overconfident["ece_ci"][0] <= overconfident["ece"] <= overconfident["ece_ci"][1]


def test_operating_points_read_off_the_roc_curve():
    from melanoma.evaluate import operating_points

    y = [0] * 10 + [1] * 10
    p = [i / 100 for i in range(10)] + [0.05 + i / 10 for i in range(10)]  # one malignant below 0.06
    m = operating_points(y, p)
    # at specificity >= 0.90 (at most one benign above threshold) 9 of 10 malignant are found
    assert m["sensitivity_at_specificity_0.90"] == pytest.approx(0.9)
    assert m["specificity_at_sensitivity_0.95"] == pytest.approx(0.5)


def test_a_multi_source_split_is_reported_per_source_and_pooled(kaggle_like: Path, tiny_model_dir: Path,
                                                                 tmp_path: Path):
    from melanoma.datasets import discover, write_split
    from melanoma.imaging import Sample

    test = discover(kaggle_like)["test"]
    mixed = [Sample(s.path, s.label, "a" if i % 2 else "b") for i, s in enumerate(test)]
    write_split(tmp_path / "split.csv", {"val": mixed})
    m = evaluate(tmp_path / "split.csv", tmp_path / "eval", tiny_model_dir, split="val")
    assert m["n"] == 12 and set(m["per_source"]) == {"a", "b"}
    assert sum(v["n"] for v in m["per_source"].values()) == 12
    assert all("roc_auc_ci" in v for v in m["per_source"].values())


def test_plots_are_written_only_on_request_and_are_what_the_report_draws(kaggle_like: Path, tiny_model_dir: Path,
                                                                          tmp_path: Path):
    import base64
    import re

    from melanoma.report import build_report

    runner = CliRunner()
    for name, flag in (("data", "--no-plots"), ("plots", "--plots")):
        result = runner.invoke(app, ["evaluate", str(kaggle_like), "--model", str(tiny_model_dir), "--out",
                                     str(tmp_path / name), flag, "--no-clean"])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["metrics.json", "predictions.csv"]
    written = {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")}
    assert sorted(written) == ["confusion_matrix.png", "pr.png", "reliability.png", "roc.png"]
    doc = build_report(tmp_path / "data").read_text()
    drawn = dict(re.findall(r'<img alt="(\w+\.png)" src="data:image/png;base64,([^"]+)"', doc))
    assert {k: base64.b64decode(v) for k, v in drawn.items()} == written


def test_a_paired_difference_resolves_a_change_that_unpaired_intervals_cannot():
    from melanoma.evaluate import metrics_with_ci, paired_difference

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    shared, own = rng.normal(size=1000), rng.normal(size=1000)
    a = 1 / (1 + np.exp(-(1.2 * y + shared + 0.5 * own)))
    b = 1 / (1 + np.exp(-(1.2 * y + shared + 0.3 * own)))  # the same images, a little less noise
    d = paired_difference(y, a, b, 0.5, n_boot=400)["roc_auc"]
    ci_a, ci_b = metrics_with_ci(y, a, 0.5, 400)["roc_auc_ci"], metrics_with_ci(y, b, 0.5, 400)["roc_auc_ci"]
    assert ci_b[0] < ci_a[1]  # each on its own: the intervals overlap
    assert 0 < d["difference_ci"][0] <= d["difference"] <= d["difference_ci"][1]  # paired: the gain is resolved
    assert d["a"] == pytest.approx(compute_metrics(y, a)["roc_auc"]) and d["b"] > d["a"]
    back = paired_difference(y, b, a, 0.5, n_boot=400)["roc_auc"]  # swapped: the same change, negative
    assert back["difference"] == pytest.approx(-d["difference"]) and back["difference_ci"][1] < 0
    same = paired_difference(y, a, a, 0.5, n_boot=50)
    assert all(v["difference"] == 0 and v["difference_ci"] == [0.0, 0.0] for v in same.values())
    with pytest.raises(ValueError, match="as long"):
        paired_difference(y, a, b[:10], 0.5)


def test_metrics_by_diagnosis_on_a_hand_checked_example():
    from sklearn.metrics import roc_auc_score

    from melanoma.diagnoses import DIAGNOSES
    from melanoma.evaluate import diagnosis_metrics

    dx = ["mel", "mel", "nv", "nv", "nv", "nv", "bkl", "bkl", "bcc", "df"]
    top = ["mel", "nv", "nv", "nv", "nv", "mel", "bkl", "mel", "bcc", "bkl"]  # the most probable diagnosis
    probs = np.full((10, 7), 0.05)
    for i, d in enumerate(top):
        probs[i, DIAGNOSES.index(d)] = 0.7
    p_verdict = np.array([0.9, 0.3, 0.1, 0.2, 0.05, 0.8, 0.6, 0.7, 0.95, 0.4])
    p_mel = probs[:, 0]
    m = diagnosis_metrics(dx, p_verdict, 0.5, p_mel, probs, n_boot=200)
    # recalls: mel 1/2, nv 3/4, bkl 1/2, bcc 1/1, df 0/1 -> balanced accuracy their mean (absent classes left out)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.75 + 0.5 + 1 + 0) / 5)
    assert (m["recall_nv"], m["recall_df"]) == (0.75, 0.0) and "recall_vasc" not in m
    assert m["n_per_diagnosis"] == {"mel": 2, "nv": 4, "bkl": 2, "df": 1, "bcc": 1}
    # flagged at p >= 0.5: mel 1 of 2, nv 1 of 4 (0.8), bkl 2 of 2, bcc 1, df 0
    assert (m["flagged_mel"], m["flagged_nv"], m["flagged_bkl"], m["flagged_bcc"], m["flagged_df"]) == \
        (0.5, 0.25, 1.0, 1.0, 0.0)
    cancer = np.isin(dx, ["mel", "bcc", "akiec"])
    assert m["cancer_sensitivity"] == pytest.approx(2 / 3) and m["benign_specificity"] == pytest.approx(4 / 7)
    assert m["cancer_vs_benign_roc_auc"] == pytest.approx(roc_auc_score(cancer, p_verdict))
    assert m["melanoma_vs_rest_roc_auc"] == pytest.approx(roc_auc_score(np.array(dx) == "mel", p_mel))
    assert m["roc_auc_nv"] == pytest.approx(roc_auc_score(np.array(dx) == "nv", probs[:, 1]))
    counts = np.array(m["confusion_matrix"]["counts"])
    assert counts.sum() == 10 and counts[DIAGNOSES.index("df"), DIAGNOSES.index("bkl")] == 1
    assert counts[1, 0] == 1 and counts[1, 1] == 3  # one nevus called melanoma, three nevi right
    lo, hi = m["balanced_accuracy_ci"]
    assert lo <= m["balanced_accuracy"] <= hi and lo < hi
    one_logit = diagnosis_metrics(dx, p_verdict, 0.5, p_verdict)  # a one-logit model: no differential to score
    assert "balanced_accuracy" not in one_logit and one_logit["flagged_bkl"] == 1.0
    with pytest.raises(ValueError, match="unknown diagnosis 'sk'"):
        diagnosis_metrics(["sk"], [0.5], 0.5, [0.5])


def test_a_one_hot_ground_truth_is_evaluated_by_diagnosis(tmp_path: Path, tiny_model_dir: Path):
    from conftest import write_one_hot

    data = write_one_hot(tmp_path / "isic", ["mel", "nv", "nv", "bkl", "df", "vasc", "bcc", "akiec", "mel", "nv"])
    m = evaluate(data, tmp_path / "eval", tiny_model_dir, n_boot=50)
    d = m["diagnosis"]
    assert m["n"] == 10 and d["n_per_diagnosis"] == {"mel": 2, "nv": 3, "bkl": 1, "df": 1, "vasc": 1, "bcc": 1,
                                                     "akiec": 1}
    assert "balanced_accuracy" not in d  # the tiny model has one logit: flagged shares and the two ROC-AUCs only
    with (tmp_path / "eval" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["dx"] for r in rows) == sorted(["mel", "nv", "nv", "bkl", "df", "vasc", "bcc", "akiec", "mel",
                                                     "nv"])
    flagged = [float(r["p_malignant"]) >= m["threshold"] for r in rows if r["dx"] == "nv"]
    assert d["flagged_nv"] == pytest.approx(np.mean(flagged))
