import csv
from pathlib import Path

import pytest
import torch
from conftest import write_class_folders

from melanoma.data import AugConfig
from melanoma.models import load_model_folder
from melanoma.train import TrainConfig, train


def tiny_config(**overrides) -> TrainConfig:
    base = dict(arch="small_cnn", pretrained="none", img_size=32, epochs=1, batch_size=8, num_workers=0,
                val_fraction=0.25, patience=10, accelerator="cpu", devices=1, aug=AugConfig(rotation=10))
    return TrainConfig(**{**base, **overrides})


def test_fast_dev_run_writes_a_loadable_model_folder(kaggle_like: Path, tmp_path: Path):
    cfg = tiny_config(arch="tf_efficientnet_lite0", pretrained="imagenet", img_size=64, fast_dev_run=True)
    model_dir = train(kaggle_like, tmp_path / "run", cfg)
    model, model_cfg = load_model_folder(model_dir)
    assert model_cfg.arch == "tf_efficientnet_lite0" and model_cfg.img_size == 64
    assert model_cfg.mean == (0.5, 0.5, 0.5)
    assert model_cfg.training["n_train"] == 18 and model_cfg.training["n_val"] == 6
    assert model_cfg.training["versions"]["torch"] == torch.__version__
    with open(tmp_path / "run" / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "val"} and len(rows) == 24
    assert {Path(r["path"]).parent.parent.name for r in rows} == {"train"}  # never a test image
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1)


def test_training_learns_and_resume_continues_the_run(tmp_path: Path):
    data = write_class_folders(tmp_path / "data", 24)
    run = tmp_path / "run"
    train(data, run, tiny_config(epochs=3, lr=3e-3))
    with pytest.raises(FileExistsError):
        train(data, run, tiny_config(epochs=3))
    model_dir = train(data, run, tiny_config(epochs=5, lr=3e-3), resume=True)
    epochs = [int(r["epoch"]) for log in sorted((run / "logs").glob("version_*/metrics.csv"))
              for r in csv.DictReader(open(log)) if r.get("val_auc")]
    assert epochs == [0, 1, 2, 3, 4]  # resumed at epoch 3, not from scratch
    _, cfg = load_model_folder(model_dir)
    assert cfg.training["best_val"]["val_auc"] >= 0.9  # the synthetic classes are easy


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path):
    data = write_class_folders(tmp_path / "data", 4)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(data, tmp_path / "run", tiny_config(), resume=True)
