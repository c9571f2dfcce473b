from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from melanoma.cli import app
from melanoma.config import ModelConfig
from melanoma.engines.onnx_engine import OnnxPredictor
from melanoma.inputs import expand_paths
from melanoma.nn.adapt import adapt_model_folder
from melanoma.nn.models import load_model_folder
from melanoma.nn.torch_engine import TorchPredictor

from conftest import write_class_folders


def site_images(root: Path, n: int) -> list[Path]:
    """A "new site": lesion images with a warm colour cast, as another clinic's camera might give."""
    write_class_folders(root, n // 2, seed=5)
    for p in root.rglob("*.png"):
        a = np.asarray(Image.open(p).convert("RGB")).astype(float)
        Image.fromarray(np.clip(a * [1.15, 0.95, 0.8] + [20, 0, -10], 0, 255).astype(np.uint8)).save(p)
    return sorted(root.rglob("*.png"))


def test_adaptation_re_estimates_batch_norm_statistics_only(tmp_path: Path, tiny_model_dir: Path):
    images = site_images(tmp_path / "site", 16)
    folder, skipped = adapt_model_folder(tiny_model_dir, images, tmp_path / "adapted", batch_size=4, min_images=8)
    assert skipped == []
    before, cfg = load_model_folder(tiny_model_dir)
    after, adapted_cfg = load_model_folder(folder)  # loads, so its checksums verify
    b, a = before.state_dict(), after.state_dict()
    stats = [k for k in b if k.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.equal(b[k], a[k]) for k in stats)
    assert all(torch.equal(b[k], a[k]) for k in b if k not in stats and not k.endswith("num_batches_tracked"))
    # the first batch norm's running mean is now the mean of its input over the site's images
    from melanoma.datasets import load_image
    from melanoma.nn.data import build_transform

    tf = build_transform(cfg.img_size, cfg.mean, cfg.std, color_constancy=cfg.color_constancy)
    x = torch.stack([tf(load_image(p)) for p in images])
    first_bn = next(m for m in before.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    first_bn.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        before(x)
    bn_name = next(n for n, m in before.named_modules() if m is first_bn)
    torch.testing.assert_close(a[f"{bn_name}.running_mean"], seen[0].mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    record = adapted_cfg.training["site_adaptation"]
    assert record["n_images"] == 16 and adapted_cfg.threshold == cfg.threshold
    # both engines serve the adapted folder, with the same probabilities
    paths = expand_paths(images[:4])
    p_onnx = [r["p_malignant"] for r in OnnxPredictor(folder, use_ood=False).predict_paths(paths)]
    p_torch = [r["p_malignant"] for r in TorchPredictor(folder, use_ood=False).predict_paths(paths)]
    assert max(abs(u - v) for u, v in zip(p_onnx, p_torch)) < 1e-4


def test_too_few_images_or_a_used_folder_is_refused_and_nothing_is_written(tmp_path: Path, tiny_model_dir: Path):
    images = site_images(tmp_path / "site", 6)
    (tmp_path / "site" / "benign" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="at least 8 readable images"):
        adapt_model_folder(tiny_model_dir, [*images, tmp_path / "site" / "benign" / "broken.png"],
                           tmp_path / "adapted", min_images=8)
    assert not (tmp_path / "adapted").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        adapt_model_folder(tiny_model_dir, images, tmp_path / "used", min_images=4)
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]
    result = CliRunner().invoke(app, ["adapt", str(tmp_path / "site"), "--out", str(tmp_path / "adapted"),
                                      "--model", str(tiny_model_dir)])
    assert result.exit_code == 3 and "at least 100 readable images" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "adapted").exists()


def test_the_adapted_folder_records_where_it_came_from(tmp_path: Path, tiny_model_dir: Path):
    from melanoma.config import sha256_file

    folder, _ = adapt_model_folder(tiny_model_dir, site_images(tmp_path / "site", 8), tmp_path / "a", min_images=8)
    record = ModelConfig.load(folder / "config.json").training["site_adaptation"]
    assert record["from_model_sha256"] == sha256_file(tiny_model_dir / "model.safetensors")
    assert "AdaBN" in record["method"] and "threshold" in record["unchanged"]
    assert {"model.safetensors", "model.onnx", "config.json", "SHA256SUMS", "README.md"} <= {p.name for p in
                                                                                            folder.iterdir()}
