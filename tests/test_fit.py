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
    assert typo.exit_code == 3 and "'bb'" in typo.output and "Traceback" not in typo.output
    assert config.read_bytes() == before  # nothing written


def test_calibrate_downscale_to_changes_what_the_model_sees_and_refits_threshold_and_gate(tmp_path: Path):
    import shutil

    import numpy as np
    from PIL import Image

    from melanoma.imaging import InMemory, cap_shorter_side
    from melanoma.nn.models import create_model, save_model_folder
    from melanoma.nn.torch_engine import TorchPredictor

    model_dir = save_model_folder(create_model("tf_efficientnet_lite0"), ModelConfig(img_size=64), tmp_path / "m")
    plain = Path(shutil.copytree(model_dir, tmp_path / "plain"))
    parts = {}
    for part, seed in (("train", 1), ("val", 2)):  # two sources of 48 px lesions, 12 + 12 each
        folders = {name: write_class_folders(tmp_path / f"{part}{name}", 12, seed=seed + 10 * k)
                   for name, k in (("a", 0), ("b", 1))}
        parts[part] = [Sample(s.path, s.label, name) for name, d in folders.items() for s in discover(d)["all"]]
    write_split(tmp_path / "split.csv", parts)

    before = {n: (model_dir / n).read_bytes() for n in ("config.json", "SHA256SUMS")}
    half = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--downscale-to", "32"])
    assert half.exit_code == 2 and "--gate" in half.output  # a new input without a refitted gate is refused
    typo = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--downscale-to", "32",
                                    "--gate", "--pool", "a,bb"])  # fails after the downscale was set: put back
    assert typo.exit_code == 3 and "'bb'" in typo.output
    assert {n: (model_dir / n).read_bytes() for n in before} == before and not (model_dir / "ood.safetensors").exists()

    result = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--downscale-to",
                                      "32", "--gate", "--target-sensitivity", "0.9"])
    assert result.exit_code == 0, result.output
    assert '"downscale_to": 32' in result.output and '"threshold"' in result.output  # what was set, and fitted
    cfg = ModelConfig.load(model_dir / "config.json")
    assert cfg.downscale_to == 32 and cfg.training["downscale_set_after"] == {"from": None, "to": 32}
    assert "calibration" in cfg.training and cfg.training["gate"]["n_fit"] == 48  # both refitted with it
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    seen = TorchPredictor(model_dir, use_ood=False).run([InMemory("x", img)])[0]["logit"]  # checksums verify
    by_hand = TorchPredictor(plain, use_ood=False).run([InMemory("x", cap_shorter_side(img, 32))])[0]["logit"]
    assert np.isclose(seen, by_hand, atol=1e-5)  # the model sees the image shrunk to 32 px first, and only that
