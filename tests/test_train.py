import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from melanoma.nn.models import load_model_folder
from melanoma.nn.train import train
from melanoma.recipe import AugConfig, TrainConfig

from conftest import write_class_folders, write_ham_like

pytestmark = pytest.mark.train


def tiny_config(**overrides) -> TrainConfig:
    base = dict(arch="small_cnn", pretrained="none", img_size=32, epochs=1, batch_size=8, num_workers=0,
                val_fraction=0.25, patience=10, accelerator="cpu", devices=1, aug=AugConfig(rotation=10))
    return TrainConfig(**{**base, **overrides})


def test_fast_dev_run_writes_a_loadable_model_folder(kaggle_like: Path, tmp_path: Path, monkeypatch):
    cfg = tiny_config(arch="tf_efficientnet_lite0", pretrained="imagenet", img_size=64, fast_dev_run=True)
    model_dir = train(kaggle_like, tmp_path / "run", cfg)
    model, model_cfg = load_model_folder(model_dir)
    assert model_cfg.arch == "tf_efficientnet_lite0" and model_cfg.img_size == 64
    assert model_cfg.mean == (0.5, 0.5, 0.5)
    assert model_cfg.training["n_train"] == 18 and model_cfg.training["n_val"] == 6
    assert model_cfg.training["versions"]["torch"] == torch.__version__
    gate = model_cfg.training["gate"]  # recorded as `calibrate --gate` records it: what the card says of the gate
    assert gate["blocks"] == [3, 4, 5, 6] and gate["sources"] == ["kaggle"] and gate["n_fit"] == 18
    with open(tmp_path / "run" / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "val"} and len(rows) == 24
    assert {Path(r["path"]).parent.parent.name for r in rows} == {"train"}  # never a test image
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1)
    # the run also writes model.onnx, so the torch-free engine serves it, with PyTorch's probabilities
    # (gate off: an untrained gate may refuse synthetic images, and then there is no probability)
    from melanoma.engines.onnx_engine import OnnxPredictor
    from melanoma.inputs import expand_paths
    from melanoma.nn.torch_engine import TorchPredictor

    assert "onnx_export" in model_cfg.training["timings_s"]
    paths = expand_paths([kaggle_like / "test"])
    p_onnx = [r["p_malignant"] for r in OnnxPredictor(model_dir, use_ood=False).predict_paths(paths)]
    p_torch = [r["p_malignant"] for r in TorchPredictor(model_dir, use_ood=False).predict_paths(paths)]
    assert max(abs(a - b) for a, b in zip(p_onnx, p_torch)) < 1e-4
    # and timm loads the folder as it is, from its own config keys (the card's snippet): the same network
    import timm

    net = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x))
    assert tuple(timm.data.resolve_data_config({}, model=net)["mean"]) == model_cfg.mean
    # the same folder as a Hub repository (here: a local Hub cache, offline) loads by timm's hf-hub: too
    import shutil

    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--acme--lesions"
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from_hub = timm.create_model("hf-hub:acme/lesions", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_hub(x), model(x))


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


def test_a_logit_adjusted_run_records_each_trained_sources_log_odds(tmp_path: Path):
    import math

    first = write_class_folders(tmp_path / "first", 12, seed=1)
    second = write_class_folders(tmp_path / "second", 12, seed=2)
    for f in sorted((second / "malignant").iterdir())[4:]:  # the second source: 4 melanomas, 12 benign
        f.unlink()
    model_dir = train(first, tmp_path / "run", tiny_config(extra_train=[str(second)], source_logit_adjustment=True))
    _, cfg = load_model_folder(model_dir)
    with open(tmp_path / "run" / "split.csv") as f:
        trained = [r for r in csv.DictReader(f) if r["split"] == "train"]
    expected = {}
    for source in ("first", "second"):
        labels = [int(r["label"]) for r in trained if r["source"] == source]
        expected[source] = pytest.approx(math.log((sum(labels) + 1) / (len(labels) - sum(labels) + 1)))
    assert cfg.training["source_log_odds"] == expected
    assert cfg.training["source_log_odds"]["second"] < cfg.training["source_log_odds"]["first"]


def test_a_diagnosis_head_run_records_what_it_learnt_and_ships_the_plain_network(tmp_path: Path):
    import numpy as np

    kaggle = write_class_folders(tmp_path / "kaggle", 8)
    ham = write_ham_like(tmp_path / "ham", np.random.default_rng(0),
                         [("nv", 1)] * 8 + [("mel", 1)] * 6 + [("bkl", 1)] * 4 + [("df", 1)] * 2)
    cfg = tiny_config(arch="tf_efficientnet_lite0", extra_train=[str(ham)], diagnosis_loss=0.5)
    model_dir = train(kaggle, tmp_path / "run", cfg)
    model, model_cfg = load_model_folder(model_dir)  # strict load into a plain one-logit network
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1)
    with open(tmp_path / "run" / "split.csv") as f:
        trained = [r for r in csv.DictReader(f) if r["split"] == "train" and r["source"] == "ham"]
    ids = {r["image_id"]: r["dx"] for r in csv.DictReader((ham / "HAM10000_metadata.csv").open())}
    expected = {d: sum(ids[Path(r["path"]).stem] == d for r in trained) for d in ("mel", "nv", "bkl", "df")}
    recorded = model_cfg.training["train_diagnoses"]
    assert {d: recorded[d] for d in expected} == expected and sum(expected.values()) == len(trained)
    assert recorded["bcc"] == recorded["akiec"] == 0 and sum(recorded.values()) == len(trained)  # Kaggle names none


def test_a_second_stage_records_its_parent_by_checksum_not_by_path(tmp_path: Path):
    from melanoma.card import model_card, public_command
    from melanoma.config import sha256_file

    data = write_class_folders(tmp_path / "data", 8)
    parent = train(data, tmp_path / "first", tiny_config())
    child = train(data, tmp_path / "second", tiny_config(pretrained=str(parent)),
                  command=f"melanoma train {data} --pretrained {parent} --out {tmp_path / 'second'}")
    _, cfg = load_model_folder(child)
    assert cfg.pretrained == f"none, then a trained model (model.safetensors sha256 " \
                             f"{sha256_file(parent / 'model.safetensors')[:16]})"
    assert str(parent) not in model_card(cfg)
    assert public_command("melanoma train D --pretrained imagenet") == "melanoma train D --pretrained imagenet"


def test_recipe_file_with_command_line_overrides(tmp_path: Path, kaggle_like: Path):
    from typer.testing import CliRunner

    from melanoma.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text("arch: small_cnn\npretrained: none\nimg_size: 40\nepochs: 3\nlr: 0.002\n"
                      "color_constancy: shades_of_grey\naug:\n  vignette: 0.5\n  rotation: 10\n")
    result = CliRunner().invoke(app, ["train", str(kaggle_like), "--recipe", str(recipe), "--out",
                                      str(tmp_path / "run"), "--set", "img_size=48", "--set", "flips=false",
                                      "--set", "fast_dev_run=true"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    r = cfg["training"]["recipe"]
    assert (cfg["img_size"], r["epochs"], r["lr"], cfg["color_constancy"]) == (48, 3, 0.002, "shades_of_grey")
    assert (r["aug"]["vignette"], r["aug"]["rotation"], r["aug"]["hflip"]) == (0.5, 10, False)
    from melanoma.recipe import load_recipe

    written = load_recipe(tmp_path / "run" / "model" / "recipe.yaml")  # the run's recipe, options applied
    assert written == replace(load_recipe(recipe), img_size=48, fast_dev_run=True,
                              aug=replace(load_recipe(recipe).aug, hflip=False, vflip=False))
    assert "img_size, fast_dev_run, aug.hflip, aug.vflip" in (tmp_path / "run" / "model" / "recipe.yaml").read_text()

    recipe.write_text("epochs: 3\nlearning_rate: 0.1\n")
    result = CliRunner().invoke(app, ["train", str(kaggle_like), "--recipe", str(recipe), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "learning_rate" in result.output and "Traceback" not in result.output


def test_linear_probe_recipe_records_the_probe_and_its_time(kaggle_like: Path, tmp_path: Path):
    cfg = tiny_config(arch="tf_efficientnet_lite0", pretrained="imagenet", img_size=64, linear_probe=True,
                      fast_dev_run=True)
    _, model_cfg = load_model_folder(train(kaggle_like, tmp_path / "run", cfg))
    assert model_cfg.training["linear_probe"]["n"] == 18  # every training image (fewer than PROBE_IMAGES)
    assert model_cfg.training["timings_s"]["linear_probe"] > 0


def test_ema_ships_the_averaged_weights_and_resumes_with_both(tmp_path: Path):
    data = write_class_folders(tmp_path / "data", 16)
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="ema_decay"):
        train(data, run, tiny_config(ema_decay=1.0))
    train(data, run, tiny_config(epochs=2, lr=3e-3, ema_decay=0.9))
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    raw, avg = last["current_model_state"], last["state_dict"]
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if k.endswith("weight"))  # two sets of weights
    model_dir = train(data, run, tiny_config(epochs=3, lr=3e-3, ema_decay=0.9), resume=True)
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    model, cfg = load_model_folder(model_dir)
    shipped = model.state_dict()
    assert all(torch.equal(shipped[k], best["net." + k]) for k in shipped)  # the folder holds the average
    assert cfg.training["recipe"]["ema_decay"] == 0.9


def test_a_resumed_run_sees_the_data_an_unbroken_run_sees(tmp_path: Path, monkeypatch):
    # A restart must continue the data stream: same order and same augmentation per epoch as an
    # uninterrupted run, not a replay of epoch 0 (which lets the network memorise what it saw).
    from melanoma.nn.module import LesionClassifier

    seen: list[tuple[int, list[int], float]] = []
    step = LesionClassifier.training_step

    def recording_step(self, batch, batch_idx):
        seen.append((self.current_epoch, batch[2].tolist(), round(float(batch[0].sum()), 3)))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(LesionClassifier, "training_step", recording_step)
    data = write_class_folders(tmp_path / "data", 12)
    train(data, tmp_path / "unbroken", tiny_config(epochs=3))
    unbroken = seen[:]
    seen.clear()
    train(data, tmp_path / "broken", tiny_config(epochs=1))
    train(data, tmp_path / "broken", tiny_config(epochs=3), resume=True)
    assert [s for s in seen if s[0] > 0] == [s for s in unbroken if s[0] > 0]
    orders = [[i for e, idx, _ in unbroken if e == epoch for i in idx] for epoch in range(3)]
    assert orders[0] != orders[1] != orders[2]  # and every epoch is a fresh shuffle


@pytest.fixture(scope="module")
def seven_class_run(tmp_path_factory) -> Path:
    """A tiny two-source seven-class run: a Kaggle-like folder (benign / melanoma, partial labels) and a
    HAM10000-like one naming all seven diagnoses."""
    import numpy as np

    root = tmp_path_factory.mktemp("seven")
    kaggle = write_class_folders(root / "kaggle", 8)
    ham = write_ham_like(root / "ham", np.random.default_rng(1),
                         [(d, 1) for d in ("mel", "nv", "bkl", "df", "vasc", "bcc", "akiec") * 3])
    cfg = tiny_config(arch="tf_efficientnet_lite0", extra_train=[ham.name], task="diagnosis", other_dx="malignant",
                      malignant_means="melanoma", source_logit_adjustment=True, gate_blocks=[4],
                      calibration_sources=["ham"], gate_views=["field", "zoom_out", "grid"],
                      aug=AugConfig(rotation=10, site_views=0.5, site_families=["zoom_out", "blur"]))
    return train(kaggle, root / "run", cfg)


def test_a_seven_class_run_learns_every_sources_labels_and_calibrates_the_diagnoses(seven_class_run: Path):
    from melanoma.diagnoses import DIAGNOSES

    _, cfg = load_model_folder(seven_class_run)
    assert cfg.diagnoses == DIAGNOSES and len(cfg.class_bias) == 7 and cfg.num_outputs == 7
    with open(seven_class_run.parent / "split.csv") as f:
        trained = [r for r in csv.DictReader(f) if r["split"] == "train"]
    counts = cfg.training["train_diagnoses"]
    kaggle = [int(r["label"]) for r in trained if r["source"] == "kaggle"]
    assert counts["partial"] == kaggle.count(0)  # Kaggle's benign images: any of the four benign diagnoses
    named = {d: sum(r["dx"] == d for r in trained) for d in DIAGNOSES}
    assert {d: counts[d] for d in DIAGNOSES} == named | {"mel": named["mel"] + kaggle.count(1)}  # its melanomas
    assert counts["bcc"] > 0 and counts["akiec"] > 0  # trained on as themselves, not left out
    priors = cfg.training["source_log_odds"]
    assert set(priors) == {"kaggle", "ham"} and all(len(v) == 7 for v in priors.values())
    cal = cfg.training["calibration"]
    assert cal["class_bias"] == dict(zip(DIAGNOSES, cfg.class_bias)) and cal["threshold"] == cfg.threshold
    with open(seven_class_run.parent / "split.csv") as f:
        validated = [r for r in csv.DictReader(f) if r["split"] == "val"]
    assert cal["calibration_n"] == sum(r["source"] == "ham" for r in validated) < cal["val_n"]  # its sources only
    views = cfg.training["gate"]["n_views"]
    assert set(views) == {"field", "zoom_out", "grid"} and min(views.values()) > 0  # the gate saw the recipe's views


def test_a_seven_class_model_answers_the_same_through_onnx_torch_the_api_and_the_cli(seven_class_run: Path,
                                                                                    tmp_path: Path):
    import json

    import numpy as np
    import onnxruntime as ort
    from PIL import Image
    from typer.testing import CliRunner

    from melanoma import Classifier
    from melanoma.cli import app
    from melanoma.diagnoses import DIAGNOSES
    from melanoma.engines.base import preprocess

    images = sorted((seven_class_run.parents[1] / "ham" / "images").glob("*.jpg"))[:4]
    graph = ort.InferenceSession(str(seven_class_run / "model.onnx"))
    assert [o.name for o in graph.get_outputs()] == ["diagnosis_logits", "diagnosis_probabilities", "gate_features",
                                                     "cam"]
    by_engine = {}
    for engine in ("onnx", "torch"):
        clf = Classifier.from_pretrained(seven_class_run, engine=engine)
        clf.predictor.ood = None  # a tiny model's gate refuses anything; the probabilities are what is compared
        by_engine[engine] = clf.assess(images)
    for onnx_row, torch_row in zip(by_engine["onnx"], by_engine["torch"]):
        assert onnx_row["p_skin_cancer"] == pytest.approx(torch_row["p_skin_cancer"], abs=1e-4)
        probs = {d["dx"]: d["p"] for d in onnx_row["diagnoses"]}
        values = list(probs.values())  # most probable first, all seven, summing to 1 (each rounded to 6 digits)
        assert values == sorted(values, reverse=True) and len(values) == 7 and sum(values) == pytest.approx(1, abs=1e-5)
        assert onnx_row["p_skin_cancer"] == pytest.approx(probs["mel"] + probs["bcc"] + probs["akiec"], abs=2e-6)
        assert onnx_row["p_melanoma"] == pytest.approx(probs["mel"]) and onnx_row["p_malignant"] == \
            onnx_row["p_skin_cancer"]
        assert onnx_row["verdict"] == ("see a dermatologist" if onnx_row["p_skin_cancer"] >= clf.threshold
                                       else "looks benign")
    proba = clf.predict_proba(images)  # scikit-learn's conventions: a column per diagnosis, in classes_' order
    assert list(clf.classes_) == list(DIAGNOSES) and proba.shape == (4, 7)
    assert proba.sum(1) == pytest.approx(np.ones(4), abs=1e-5)
    assert list(clf.predict(images)) == [DIAGNOSES[i] for i in proba.argmax(1)]
    x = np.stack([preprocess(Image.open(p).convert("RGB"), clf.predictor.cfg) for p in images])
    logits, in_graph = graph.run(["diagnosis_logits", "diagnosis_probabilities"], {"image": x})
    assert in_graph == pytest.approx(clf.predictor.diagnosis_probs(logits), abs=1e-5)  # bare graph = package
    heat = Classifier.from_pretrained(seven_class_run).explain(images[:1])[0]
    assert heat[0]["status"] in ("ok", "out_of_distribution")
    result = CliRunner().invoke(app, ["predict", *map(str, images), "--model", str(seven_class_run), "--json"])
    rows = json.loads(result.stdout)
    assert {r["status"] for r in rows} <= {"ok", "out_of_distribution"} and len(rows) == 4
    csv_out = CliRunner().invoke(app, ["predict", str(images[0]), "--model", str(seven_class_run), "--format", "csv"])
    assert "p_skin_cancer" in csv_out.stdout.splitlines()[0]
    metrics = CliRunner().invoke(app, ["evaluate", str(seven_class_run.parent / "split.csv"), "--split", "val",
                                       "--model", str(seven_class_run), "--out", str(tmp_path / "ev")])
    assert metrics.exit_code == 0, metrics.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "balanced_accuracy" in m["per_source"]["ham"]["diagnosis"]
    assert "diagnosis" not in m["per_source"]["kaggle"]  # Kaggle's images name no diagnosis
    assert np.array(m["diagnosis"]["confusion_matrix"]["counts"]).sum() == m["per_source"]["ham"]["n"]


def test_the_diagnosis_task_needs_bcc_and_ak_trained_as_themselves():
    from melanoma.recipe import validate

    with pytest.raises(ValueError, match="other_dx must be malignant"):
        validate(tiny_config(task="diagnosis", extra_train=["x"]))
    with pytest.raises(ValueError, match="task must be melanoma or diagnosis"):
        validate(tiny_config(task="cancer"))


def test_a_seven_class_model_exports_to_the_hub_with_its_diagnoses(seven_class_run: Path, tmp_path: Path):
    import json

    from melanoma.nn.export import export_hub

    out = export_hub(seven_class_run, tmp_path / "hub")
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 7 and config["label_names"] == list(config["diagnoses"])
    assert config["pretrained_cfg"]["num_classes"] == 7 and len(config["class_bias"]) == 7
    card = (out / "README.md").read_text()
    assert "seven diagnoses" in card and "p(skin cancer)" in card and "diagnosis_logits" in card
    assert "license: cc-by-nc-4.0" in card


def test_training_is_three_stages_a_plan_a_fit_and_a_finish_that_can_be_rerun(tmp_path: Path):
    import numpy as np

    from melanoma.datasets import read_split
    from melanoma.nn.train import finish, prepare

    kaggle = write_class_folders(tmp_path / "kaggle", 8)
    ham = write_ham_like(tmp_path / "ham", np.random.default_rng(2), [(d, 1) for d in ("mel", "nv", "bkl", "bcc")] * 3)
    cfg = tiny_config(extra_train=[str(ham)], task="diagnosis", other_dx="malignant", source_logit_adjustment=True)
    plan = prepare(kaggle, cfg, tmp_path / "plan")  # inspectable before any training: what each image will teach
    saved = read_split(tmp_path / "plan" / "split.csv")
    assert [s.path for s in plan.train] == [s.path for s in saved["train"]] and len(plan.val) == len(saved["val"])
    assert plan.allowed.shape == (len(plan.train), 7) and len(plan.offsets) == len(plan.train)
    assert set(plan.priors) == {"kaggle", "ham"} and plan.diagnoses["partial"] > 0
    model_dir = train(kaggle, tmp_path / "run", cfg)
    before = json.loads((model_dir / "config.json").read_text())
    finish(model_dir, cfg, prepare(kaggle, cfg, tmp_path / "again"))  # the same plan again: the same decisions
    after = json.loads((model_dir / "config.json").read_text())
    assert after["threshold"] == pytest.approx(before["threshold"]) and after["class_bias"] == before["class_bias"]


def test_the_gates_folder_of_pictures_is_found_beside_the_data_or_the_plan_fails(tmp_path: Path):
    from melanoma.nn.train import prepare

    kaggle = write_class_folders(tmp_path / "kaggle", 4)
    with pytest.raises(ValueError, match="no folder of non-lesion pictures"):  # before any training, not after it
        prepare(kaggle, tiny_config(gate_negatives=40, gate_negative_pictures="nonlesions"), tmp_path / "plan")
    (tmp_path / "nonlesions" / "a").mkdir(parents=True)
    Image.new("RGB", (130, 130), (9, 99, 9)).save(tmp_path / "nonlesions" / "a" / "leaf.png")
    plan = prepare(kaggle, tiny_config(gate_negatives=40, gate_negative_pictures="nonlesions"), tmp_path / "plan2")
    assert plan.negative_pictures == tmp_path / "nonlesions"  # relative: beside the data, as extra_train
