"""Training at scale and surviving faults: DDP on CPU, kill -9 and resume, atomic saves, bad output folders."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import tiny_config

from melanoma.nn.train import train

from conftest import write_class_folders


def env() -> dict[str, str]:
    """The environment at call time: with the test's private cache folder (conftest.private_cache)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "melanoma", *args]


def epochs_logged(run: Path) -> list[int]:
    return [int(r["epoch"]) for log in sorted((run / "logs").glob("version_*/metrics.csv"))
            for r in csv.DictReader(open(log)) if r.get("val_auc")]


TINY = [f"--set={kv}" for kv in ("arch=small_cnn", "pretrained=none", "img_size=32", "batch_size=8", "num_workers=0",
                                  "accelerator=cpu", "patience=50", "val_fraction=0.25")]


def test_unwritable_output_fails_before_training(tmp_path: Path):
    data = write_class_folders(tmp_path / "data", 4)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot write to"):
        train(data, blocker / "run", tiny_config())  # a file where a folder should be
    assert not (blocker.parent / "run").exists()


@pytest.mark.slow
@pytest.mark.train
def test_kill_9_mid_training_then_resume(tmp_path: Path):
    data = write_class_folders(tmp_path / "data", 40)
    run = tmp_path / "run"
    proc = subprocess.Popen(cli("train", str(data), "--out", str(run), "--set", "epochs=40", *TINY), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(epochs_logged(run)) < 3:
        time.sleep(0.2)
    time.sleep(0.3)  # somewhere inside the next epoch, maybe inside a save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = max(epochs_logged(run))
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "model").exists()
    result = subprocess.run(cli("train", str(data), "--out", str(run), "--set", "epochs=40", "--resume", *TINY),
                            env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = epochs_logged(run)
    assert epochs[-1] == 39 and set(range(40)) <= set(epochs)
    last_log = sorted((run / "logs").glob("version_*/metrics.csv"))[-1]
    first_after_resume = [int(r["epoch"]) for r in csv.DictReader(open(last_log))
                          if r.get("val_auc")][0]
    assert first_after_resume >= done  # at most the interrupted epoch is redone
    resumed = json.loads((run / "model" / "config.json").read_text())["training"]["best_val"]
    straight = tmp_path / "straight"
    result = subprocess.run(cli("train", str(data), "--out", str(straight), "--set", "epochs=40", *TINY),
                            env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    uninterrupted = json.loads((straight / "model" / "config.json").read_text())["training"]["best_val"]
    assert resumed["val_auc"] == pytest.approx(uninterrupted["val_auc"], abs=0.05)  # as good, within noise


def test_crash_during_a_save_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch):
    from melanoma.config import atomic_write_bytes

    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old and good")

    class Boom(Exception):
        pass

    real_fsync = os.fsync

    def crash(fd):
        raise Boom()

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(Boom):
        atomic_write_bytes(target, b"new but never finished")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == b"old and good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left behind


@pytest.mark.train
def test_same_seed_same_validation_metrics(tmp_path: Path):
    data = write_class_folders(tmp_path / "data", 16)
    cfgs = []
    for k in range(2):
        model_dir = train(data, tmp_path / f"run{k}", tiny_config(epochs=2, seed=3))
        cfgs.append(json.loads((model_dir / "config.json").read_text())["training"])
    assert cfgs[0]["split_sha256"] == cfgs[1]["split_sha256"]
    for key, value in cfgs[0]["best_val"].items():
        assert cfgs[1]["best_val"][key] == pytest.approx(value, abs=1e-6), key
    assert {"torch", "timm", "melanoma"} <= cfgs[0]["versions"].keys()


@pytest.mark.slow
@pytest.mark.train
def test_ddp_two_processes_on_cpu(tmp_path: Path):
    """Two gloo processes: one model folder (rank 0), and a validation AUC over every validation image."""
    from sklearn.metrics import roc_auc_score

    from melanoma.datasets import read_split
    from melanoma.nn.torch_engine import TorchPredictor

    data = write_class_folders(tmp_path / "data", 24)
    run = tmp_path / "run"
    result = subprocess.run(cli("train", str(data), "--out", str(run), "--set", "epochs=2", "--set", "devices=2",
                                "--set", "strategy=ddp", *TINY), env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    both = result.stdout + result.stderr
    assert "GLOBAL_RANK: 1" in result.stderr or "Initializing distributed: GLOBAL_RANK: 1" in both
    cfg = json.loads((run / "model" / "config.json").read_text())
    val = read_split(run / "split.csv")["val"]
    # the saved model is the last epoch's here only if that epoch was the best: compare with the best checkpoint
    import torch

    from melanoma.nn.models import create_model
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    net = create_model("small_cnn", pretrained="none")
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    predictor = TorchPredictor(run / "model")
    predictor.model = net.eval()
    probs = predictor.predict_samples(val)
    auc = roc_auc_score([s.label for s in val], probs)
    assert cfg["training"]["best_val"]["val_auc"] == pytest.approx(auc, abs=1e-5)
