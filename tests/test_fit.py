"""fit: a model folder's threshold and temperature from validation images (the gate's fit is in test_ood)."""

from pathlib import Path

from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.config import ModelConfig
from melanoma.datasets import discover, write_split
from melanoma.imaging import Sample

from conftest import write_class_folders


def write_sources(tmp_path: Path, per_class: dict[str, int]) -> Path:
    """A split.csv whose val rows are ``per_class[name]`` benign and as many malignant images per source."""
    val = []
    for i, (name, n) in enumerate(per_class.items()):
        folder = write_class_folders(tmp_path / name, n, seed=i)
        val += [Sample(s.path, s.label, name) for s in discover(folder)["all"]]
    write_split(tmp_path / "split.csv", {"train": [], "val": val})
    return tmp_path / "split.csv"


def test_pooled_sources_share_one_threshold_and_a_misspelt_source_is_refused(tiny_model_dir: Path, tmp_path: Path):
    split = write_sources(tmp_path, {"a": 12, "b": 12, "c": 24})  # a, b: 12 melanomas each, too few for a say alone
    config = tiny_model_dir / "config.json"

    def calibration(*extra: str) -> dict:
        result = CliRunner().invoke(app, ["calibrate", str(tiny_model_dir), str(split), *extra])
        assert result.exit_code == 0, result.output
        return ModelConfig.load(config).training["calibration"]

    alone = calibration()
    assert alone["per_source"]["a"]["own_threshold"] is None and alone["per_source"]["b"]["own_threshold"] is None
    assert alone["threshold"] == alone["per_source"]["c"]["own_threshold"]

    pooled = calibration("--pool", "a,b")
    a, b, c = (pooled["per_source"][n] for n in "abc")
    assert a["threshold_group"] == b["threshold_group"] == "a+b" and "threshold_group" not in c
    assert a["own_threshold"] == b["own_threshold"] is not None
    assert pooled["threshold"] == min(a["own_threshold"], c["own_threshold"])
    assert (a["sensitivity"] * 12 + b["sensitivity"] * 12) / 24 >= 0.95  # the rule holds on the pool
    assert "a+b pooled" in pooled["threshold_rule"]

    before = config.read_bytes()
    typo = CliRunner().invoke(app, ["calibrate", str(tiny_model_dir), str(split), "--pool", "a,bb"])
    assert typo.exit_code == 2 and "'bb'" in typo.output and "Traceback" not in typo.output
    assert config.read_bytes() == before  # nothing written
