import json
import re
from pathlib import Path

from typer.testing import CliRunner

from melanoma.cli import app


def test_report_is_one_self_contained_html(kaggle_like: Path, tiny_model_dir: Path, tmp_path: Path):
    runner = CliRunner()
    run = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(kaggle_like), "--model", str(tiny_model_dir), "--out", str(run)])
    assert result.exit_code == 0, result.output
    m = json.loads((run / "metrics.json").read_text())
    assert "clean" in m and (run / "audit.json").is_file()  # train + test: audited on demand
    result = runner.invoke(app, ["report", str(run), "--eda", str(kaggle_like)])
    assert result.exit_code == 0, result.output
    doc = (run / "report.html").read_text()
    for heading in ("Metrics, full test split", "Metrics, clean test split", "Curves", "Duplicate audit",
                    "EDA and shortcut check", "Most confident mistakes", "not a diagnosis"):
        assert heading in doc
    assert f"n = {m['n']}" in doc and f"{m['roc_auc']:.3f}" in doc
    for plot in ("roc.png", "pr.png", "confusion_matrix.png", "reliability.png"):  # drawn from predictions.csv
        assert re.search(f'<img alt="{plot}" src="data:image/png;base64,', doc), plot
        assert not (run / plot).exists()  # evaluate wrote data files only
    assert not re.findall(r'src="(?!data:)', doc)  # nothing fetched from elsewhere


def test_report_needs_an_evaluation(tmp_path: Path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 3 and "no metrics.json" in result.output


def test_audit_cli_writes_its_files(kaggle_like: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["audit", str(kaggle_like), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert summary["n_images"] == 36
    assert (tmp_path / "a" / "clusters.csv").read_text().startswith("path,split,label,cluster_id")


def test_a_report_shows_the_evaluation_by_diagnosis_with_its_confusion_picture(tmp_path: Path):
    import numpy as np

    from melanoma.evaluate import diagnosis_metrics
    from melanoma.report import diagnosis_section

    rng = np.random.default_rng(0)
    dx = ["mel", "nv", "bkl", "df", "vasc", "bcc", "akiec"] * 4
    probs = rng.dirichlet(np.ones(7), len(dx))
    d = diagnosis_metrics(dx, probs[:, [0, 5, 6]].sum(1), 0.4, probs[:, 0], probs, n_boot=20)
    html = diagnosis_section(d, "test split")
    assert "dermatofibroma" in html and f"<td>balanced_accuracy</td><td>{d['balanced_accuracy']:.3f}" in html
    assert '<img alt="confusion by diagnosis" src="data:image/png;base64,' in html
    one_logit = diagnosis_section(diagnosis_metrics(dx, probs[:, 0], 0.4, probs[:, 0]), "test split")
    assert "<img" not in one_logit and "flagged" in one_logit  # no differential, no confusion picture
