"""Every benchmark in benchmarks/ run on tiny data behind MELANOMA_DATA, each result read back for what it measured
(diagnoses, stress, framing and compare_models: test_bench.py). A model that needs no gate or ONNX graph is an
untrained small_cnn; the others run the bundled model, on a dozen images."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from melanoma import bench
from melanoma.config import DEFAULT_MODEL_DIR

from conftest import lesion_image, write_class_folders, write_ham_like, write_one_hot

REPO = Path(__file__).resolve().parents[1]
BUNDLED = str(DEFAULT_MODEL_DIR)
EXTERNAL_DX = ["mel", "nv", "nv", "bkl", "df", "vasc", "bcc", "akiec", "mel", "nv", "mel", "nv"]


def write_isic2017(root: Path, rng, n_train: int = 8, n_val: int = 6) -> None:
    """ISIC 2017's layout: image folders and Part 3 ground-truth CSVs, melanomas and keratoses among nevi."""
    for part, n in (("Training", n_train), ("Validation", n_val)):
        images = root / f"ISIC-2017_{part}_Data"
        images.mkdir(parents=True)
        rows = []
        for k in range(n):
            image_id = f"ISIC_{(9 if part == 'Training' else 8) * 10**6 + k:07d}"
            lesion_image(int(k % 3 == 0), rng, 64).save(images / f"{image_id}.jpg", quality=95)
            rows.append([image_id, float(k % 3 == 0), float(k % 3 == 1)])
        with (root / f"ISIC-2017_{part}_Part3_GroundTruth.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
            w.writerows(rows)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """The four standard sets in miniature, a split.csv of half of each training source, a small_cnn model."""
    from melanoma.config import ModelConfig
    from melanoma.datasets import discover, write_split
    from melanoma.nn.models import create_model, save_model_folder

    tmp = tmp_path_factory.mktemp("benchmarks")
    root, rng = tmp / "data", np.random.default_rng(3)
    write_class_folders(root / bench.KAGGLE / "train", 8, seed=1, names=("Benign", "Malignant"), ext=".jpg")
    write_class_folders(root / bench.KAGGLE / "test", 4, seed=2, names=("Benign", "Malignant"), ext=".jpg")
    write_one_hot(root / bench.EXTERNAL, EXTERNAL_DX)
    write_ham_like(root / bench.HAM10000, rng, [(d, 1) for d in ("mel", "nv", "bkl", "bcc", "akiec", "df", "vasc")] * 2)
    write_isic2017(root / bench.ISIC2017, rng)
    train, val = [], []
    for source in (bench.KAGGLE, bench.HAM10000, bench.ISIC2017):
        pool = [s for split, items in discover(root / source).items() if split != "test" for s in items]
        train, val = train + pool[::2], val + pool[1::2]
    write_split(tmp / "split.csv", {"train": train, "val": val})
    model = save_model_folder(create_model("small_cnn", pretrained="none"), ModelConfig(arch="small_cnn", img_size=48),
                              tmp / "model")
    return SimpleNamespace(root=root, split=tmp / "split.csv", model=str(model), tmp=tmp, n_val=len(val))


def run(tiny: SimpleNamespace, script: str, *args, root: Path | None = None) -> str:
    """A benchmark as a user runs it, from a scratch folder, on the tiny data; its standard output."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *map(str, args)],
                          cwd=tiny.tmp, capture_output=True, text=True, timeout=600,
                          env={**os.environ, bench.DATA_ENV: str(root or tiny.root),
                               "MELANOMA_CACHE_DIR": str(tiny.tmp / "cache")})  # one audit of the tiny sets
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def test_sources_table_scores_each_sources_validation_and_the_test_sets(tiny):
    out = tiny.tmp / "sources.json"
    run(tiny, "sources_table", "--model", tiny.model, "--split", tiny.split, "--out", out)
    sets = read(out)["sets"]
    assert sets["ISIC 2018 test (external)"]["n"] == len(EXTERNAL_DX) and sets["Kaggle test"]["n"] == 8
    assert sum(v["n"] for k, v in sets.items() if "validation" in k) == tiny.n_val


def test_external_isic_splits_isic2017_by_its_copies_in_kaggle(tiny):
    run(tiny, "external_isic", "--model", tiny.model, "--out", tiny.tmp / "isic")
    r = read(tiny.tmp / "isic" / "metrics.json")
    assert r["all"]["n"] == 14 and r["not_in_kaggle"]["n"] + r["n_with_copy_in_kaggle"] == 14


def test_resolution_pairs_each_variant_with_the_stored_pictures(tiny):
    run(tiny, "resolution", "--model", tiny.model, "--out", tiny.tmp / "res.json")
    variants = read(tiny.tmp / "res.json")["variants"]
    first = next(iter(variants.values()))
    assert len(variants) > 1 and first["roc_auc"]["difference"] == 0  # the first is the stored pictures themselves


def test_roc_point_and_site_threshold_read_the_external_set(tiny):
    run(tiny, "roc_point", tiny.model, "--resamples", 20, "--out", tiny.tmp / "roc.json")
    r = read(tiny.tmp / "roc.json")["models"][tiny.model]
    assert r["n"] == len(EXTERNAL_DX) and 0 <= r["specificity"] <= 1
    run(tiny, "site_threshold", tiny.model, "--sizes", 6, "--draws", 10, "--out", tiny.tmp / "st.json")
    site = read(tiny.tmp / "st.json")["models"][tiny.model]["site"]
    assert [row["n_labelled"] for row in site] == [6]


def test_geometry_and_tta_compare_views_of_the_same_images(tiny):
    run(tiny, "geometry", tiny.model, tiny.split, "--out", tiny.tmp / "geo.json")
    sets = read(tiny.tmp / "geo.json")["sets"]
    assert len(sets) == 2 and all(len(v) > 1 for v in sets.values())
    run(tiny, "tta", "--model", tiny.model, "--out", tiny.tmp / "tta.json")
    sets = read(tiny.tmp / "tta.json")["sets"]  # TTA against one view, on the tiny standard sets
    assert set(sets) == {bench.CLEAN, bench.EXTERNAL_TITLE} and sets[bench.EXTERNAL_TITLE]["n"] == len(EXTERNAL_DX)


def test_other_dx_reports_hams_other_cancers(tiny):
    out = tiny.tmp / "odx.json"
    run(tiny, "other_dx", "--model", tiny.model, "--ham", tiny.root / bench.HAM10000, "--split", tiny.split,
        "--out", out)
    r = read(out)["models"][tiny.model]
    assert r["bcc"]["n"] == r["bcc"]["n_assessed"] == 2 and r["akiec"]["n"] == 2  # one probability per image
    assert r["auc_cost"]["n_bcc_akiec"] == 4


@pytest.fixture(scope="module")
def wide_external(tiny) -> Path:
    """An external set of 210 small images: the site benchmarks draw sites of 100 images from one half."""
    root = tiny.tmp / "wide"
    write_one_hot(root / bench.EXTERNAL, ["mel", "nv", "bkl"] * 70, seed=5)
    return root


def test_site_shift_and_site_adaptation_fit_on_one_half_and_score_the_other(tiny, wide_external):
    run(tiny, "site_shift", tiny.model, tiny.split, "--draws", 5, "--out", tiny.tmp / "ss.json", root=wide_external)
    halves = read(tiny.tmp / "ss.json")["halves"]
    assert [h["estimated_on_n"] for h in halves] == [105, 105]
    run(tiny, "site_adaptation", tiny.model, "--out", tiny.tmp / "sa.json", root=wide_external)
    halves = read(tiny.tmp / "sa.json")["halves"]
    assert len(halves) == 2 and all(h["adapted"]["n"] == 105 for h in halves)


def test_operating_points_and_calibration_read_evaluate_outputs(tiny):
    ev = [sys.executable, "-m", "melanoma", "evaluate"]
    env = {**os.environ, bench.DATA_ENV: str(tiny.root)}
    subprocess.run([*ev, tiny.split, "--split", "val", "--model", tiny.model, "--out", tiny.tmp / "ev_val"],
                   check=True, capture_output=True, env=env)
    subprocess.run([*ev, tiny.root / bench.KAGGLE, "--model", tiny.model, "--out", tiny.tmp / "ev_test"],
                   check=True, capture_output=True, env=env)
    run(tiny, "operating_points", tiny.tmp / "ev_val", tiny.tmp / "ev_test", "--out", tiny.tmp / "op.json")
    r = read(tiny.tmp / "op.json")  # thresholds chosen on validation, scored on test
    assert r["n_val"] == tiny.n_val and r["n_test"] == 8 and "Youden's J" in r["rules"]
    subprocess.run([*ev, tiny.root / bench.KAGGLE, "--out", tiny.tmp / "ev_bundled"], check=True,
                   capture_output=True, env=env)
    out = run(tiny, "calibration_prevalence", tiny.tmp / "ev_bundled", "--data", tiny.root / bench.KAGGLE)
    assert "ece_after_prior_shift_to_own_prevalence" in out


def test_the_gate_benchmarks_measure_the_bundled_gate(tiny):
    run(tiny, "ood_gate", "--lesions", tiny.root / bench.KAGGLE, "--out", tiny.tmp / "ood")
    r = read(tiny.tmp / "ood" / "ood_gate.json")
    assert r["non_lesion"]["n"] == 148 and r[str(tiny.root / bench.KAGGLE)]["n"] == 8
    run(tiny, "gate_sources", BUNDLED, tiny.split, "--per-source-fit", 4, "--out", tiny.tmp / "gs.json")
    held_out = read(tiny.tmp / "gs.json")["held_out"]
    assert set(held_out) == {bench.KAGGLE, bench.HAM10000, bench.ISIC2017}


def test_the_gradcam_benchmarks_draw_and_measure_the_maps(tiny):
    run(tiny, "gradcam_grid", tiny.root / bench.KAGGLE, "--n", 4, "--out", tiny.tmp / "grid.png")
    assert (tiny.tmp / "grid.png").stat().st_size > 1000
    run(tiny, "gradcam_border", BUNDLED, "--data", tiny.root / bench.KAGGLE, "--out", tiny.tmp / "border.json")
    (r,) = read(tiny.tmp / "border.json")["rows"]  # one row per model
    assert 0 <= r["mean_border_share"] <= 1 and r["n_called_malignant"] <= 8


def test_large_images_and_int8_compare_with_the_plain_graph(tiny):
    run(tiny, "large_images", "--data", tiny.root / bench.ISIC2017, "--out", tiny.tmp / "large")
    assert any((tiny.tmp / "large").iterdir())
    run(tiny, "int8_quantization", "--split-file", tiny.split, "--calibration-images", 6, "--out", tiny.tmp / "int8")
    r = read(tiny.tmp / "int8" / "int8.json")  # the bundled seven-class graph, quantised and compared
    assert r["validation_n"] == tiny.n_val and r["calibration_images"] == 6
    assert set(r["val_roc_auc"]) == {"fp32", "int8"}


def test_audit_quality_finds_the_copies_it_made(tiny):
    run(tiny, "audit_quality", tiny.root / bench.KAGGLE, "--n", 4, "--out", tiny.tmp / "aq")
    r = read(tiny.tmp / "aq" / "recall.json")
    assert r["n_sources"] == 4 and len(r["recall_per_edit"]) == 5 and (tiny.tmp / "aq" / "pairs_grid.png").is_file()


def test_the_speed_benchmarks_run_quickly_on_tiny_data(tiny):
    run(tiny, "inference_speed", "--quick", "--data", tiny.root / bench.KAGGLE / "test", "--out", tiny.tmp / "speed")
    r = read(tiny.tmp / "speed" / "speed.json")
    assert r["quick"] and {x["engine"] for x in r["end_to_end"]} >= {"onnx", "torch"}
    assert all(x["n_ok"] + 0 <= x["n_images"] == 8 for x in r["end_to_end"])
    run(tiny, "cold_start", "--repeats", 1, "--out", tiny.tmp / "cold.json")
    assert read(tiny.tmp / "cold.json")["predict one image"]["torch_imported"] is False
    run(tiny, "train_speed", "--quick", "--out", tiny.tmp / "train_speed")
    rows = read(tiny.tmp / "train_speed" / "train_speed.json")["rows"]
    assert [r["part"] for r in rows] == ["network", "data (1 core)"] and all(r["images_per_s"] > 0 for r in rows)


def test_the_app_load_test_keeps_the_server_up(tiny):
    out = run(tiny, "app_load", "--clients", 2, "--requests", 5)
    r = json.loads(out[out.index("{"):])  # after gradio's own lines
    assert r["server_up_after"] and r["good_failed"] == 0 and r["bad_answered_with_error"] == 2
    assert r["good_answered_correctly"] == r["good_requests"] == 8  # the same label as predict's


def test_the_recipe_sweep_trains_a_candidate_on_the_split(tiny):
    run(tiny, "recipe_sweep", tiny.split, tiny.tmp / "sweep.json", "full_e7", "--epochs", 1)
    (result,) = read(tiny.tmp / "sweep.json")
    assert result["name"] == "full_e7" and 0 <= result["best_val_auc"] <= 1
