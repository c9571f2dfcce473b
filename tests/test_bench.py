"""The evaluation harness (melanoma.bench) and a benchmark run through it on tiny data behind MELANOMA_DATA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from melanoma import bench

from conftest import write_class_folders, write_one_hot

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "data"
    write_class_folders(root / bench.KAGGLE / "train", 8, seed=1, names=("Benign", "Malignant"), ext=".jpg")
    write_class_folders(root / bench.KAGGLE / "test", 4, seed=2, names=("Benign", "Malignant"), ext=".jpg")
    write_one_hot(root / bench.EXTERNAL, ["mel", "nv", "nv", "bkl", "df", "vasc", "bcc", "akiec", "mel", "nv"])
    monkeypatch.setenv(bench.DATA_ENV, str(root))
    return root


def test_the_standard_sets_come_from_one_data_root(data_root: Path):
    assert bench.data_root() == data_root
    external = bench.external_set()
    assert len(external) == 10 and {s.dx for s in external} == {"mel", "nv", "bkl", "df", "vasc", "bcc", "akiec"}
    assert len(bench.kaggle_clean_test()) == 8  # every test image: none is a copy of a training one


def test_scores_and_a_paired_comparison_of_a_model_with_itself(data_root: Path, tiny_model_dir: Path):
    from melanoma.engines import load_predictor

    s = bench.score(load_predictor(tiny_model_dir), bench.external_set())
    assert len(s.samples) == 10 and s.is_cancer.sum() == 4 and s.probs is None
    assert np.array_equal(s.p_melanoma, s.p_verdict)  # a one-logit model: its one probability is both
    same = bench.paired(s, s, "cancer")
    assert same["n_positive"] == 4 and same["roc_auc"]["difference"] == 0 and same["roc_auc"]["difference_ci"] == [0, 0]
    assert bench.paired(s, s, "melanoma", "p_melanoma")["n_positive"] == 2


def test_the_diagnoses_benchmark_runs_on_tiny_data(data_root: Path, tiny_model_dir: Path, tmp_path: Path):
    from test_negatives import picture_folder

    out = tmp_path / "diagnoses.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "diagnoses.py"), str(tiny_model_dir), "--against",
                    str(tiny_model_dir), "--out", str(out), "--nonlesion-pictures",
                    str(picture_folder(tmp_path / "pictures"))], check=True, cwd=tmp_path,
                   env={**os.environ, bench.DATA_ENV: str(data_root)}, capture_output=True)
    r = json.loads(out.read_text())
    assert r["external"]["n_per_diagnosis"]["nv"] == 3 and r["kaggle_clean"]["n"] == 8
    assert r["nonlesion"]["n"] > 100
    wider = r["nonlesion_pictures"]  # 100 crops of each held-out source, refused share by source
    assert wider["n"] == 200 and set(wider["by_source"]) == {"nonlesion:a", "nonlesion:b"}
    assert wider["refused"] == pytest.approx(np.mean(list(wider["by_source"].values())))
    assert r["paired"]["external_cancer_vs_benign"]["roc_auc"]["difference"] == 0


def test_the_stress_benchmark_runs_on_tiny_data(data_root: Path, tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "stress.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "stress.py"), str(tiny_model_dir), "--families",
                    "zoom_out,grid", "--against", str(tiny_model_dir), "--out", str(out)], check=True, cwd=tmp_path,
                   env={**os.environ, bench.DATA_ENV: str(data_root)}, capture_output=True)
    r = json.loads(out.read_text())
    assert r["n"] == 10 and set(r["families"]) == {"zoom_out", "grid"}
    grid = r["families"]["grid"]
    assert 0 <= grid["refused"] <= 1 and grid["melanoma_roc_auc"]["a"] == r["untransformed"]["melanoma_roc_auc"]
    assert sum(grid["refusals_said"].values()) == round(grid["refused"] * r["n"])  # every refusal's sentence
    against = r["families"]["zoom_out"]["against"]  # the model against itself on the same zoomed-out pictures
    assert against["cancer_roc_auc"]["difference"] == 0 and against["refused"] == r["families"]["zoom_out"]["refused"]


def test_the_framing_benchmark_fits_on_training_sources_and_checks_on_the_external_set(data_root: Path,
                                                                                        tmp_path: Path):
    out = tmp_path / "framing.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "framing.py"), "--fit-per-source", "6", "--limit",
                    "10", "--out", str(out)], check=True, cwd=tmp_path,
                   env={**os.environ, bench.DATA_ENV: str(data_root)}, capture_output=True)
    r = json.loads(out.read_text())
    assert r["fit"] == {"n": 6, "sources": [bench.KAGGLE], "false_rate": 0.02} and r["external_n"] == 10
    assert set(r["limits"]) == {"small", "blur", "marks"} and r["limits"]["blur"] < r["limits"]["marks"]
    for said in r["said"].values():
        assert sum(said.values()) == pytest.approx(1)


def test_every_benchmark_says_how_to_call_it():
    from concurrent.futures import ThreadPoolExecutor

    def help_of(script: Path):  # most of the time is importing torch: four at once
        return script.name, subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                           timeout=300)

    with ThreadPoolExecutor(4) as pool:
        done = dict(pool.map(help_of, sorted((REPO / "benchmarks").glob("*.py"))))
    assert len(done) > 20
    failed = {name: r.stderr[-500:] for name, r in done.items() if r.returncode != 0 or "usage:" not in r.stdout}
    assert not failed, failed


def test_the_compare_benchmark_pairs_a_model_with_itself_on_the_standard_sets(data_root: Path, tiny_model_dir: Path,
                                                                              tmp_path: Path):
    out = tmp_path / "compare.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_models.py"), str(tiny_model_dir),
                    str(tiny_model_dir), "--out", str(out)], check=True, cwd=tmp_path,
                   env={**os.environ, bench.DATA_ENV: str(data_root)}, capture_output=True)
    r = json.loads(out.read_text())
    assert set(r["sets"]) == {bench.CLEAN, bench.EXTERNAL_TITLE} and r["a"]["model_sha256"] == r["b"]["model_sha256"]
    assert r["sets"][bench.CLEAN]["n"] == 8 and r["sets"][bench.EXTERNAL_TITLE]["roc_auc"]["difference"] == 0
