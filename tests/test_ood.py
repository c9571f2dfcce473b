from pathlib import Path

import numpy as np
import pytest

from melanoma.bench.nonlesion import nonlesion_images
from melanoma.card import gate_note
from melanoma.config import ModelConfig, write_checksums
from melanoma.imaging import Sample
from melanoma.inputs import expand_paths
from melanoma.nn.fit import fit_ood_for_model
from melanoma.nn.models import create_model, save_model_folder
from melanoma.nn.torch_engine import TorchPredictor
from melanoma.ood import OODDetector

from conftest import SAMPLES, textured_lesion


def test_detector_scores_far_points_higher_and_round_trips(tmp_path: Path):
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 40))
    inside = rng.normal(size=(500, 8)) @ basis + rng.normal(0, 0.05, (500, 40))
    det = OODDetector.fit(inside[:400], k=8)
    det.threshold = float(np.quantile(det.score(inside[400:]), 0.99))
    off_subspace = rng.normal(0, 1, (50, 40))  # same scale, wrong directions
    far_inside = rng.normal(size=(50, 8)) @ basis * 6  # right directions, far away
    assert (det.score(off_subspace) > det.threshold).mean() > 0.95
    assert (det.score(far_inside) > det.threshold).mean() > 0.95
    assert (det.score(inside[400:]) <= det.threshold).mean() >= 0.99
    det.save(tmp_path)
    again = OODDetector.load(tmp_path)
    assert np.allclose(again.score(off_subspace), det.score(off_subspace), rtol=1e-5)


def test_a_detector_on_some_columns_ignores_the_rest_and_keeps_them_through_save(tmp_path: Path):
    from melanoma.ood import stage_columns

    assert stage_columns([2, 3, 4, 5], (4,)).tolist() == [2, 3, 4]  # block 4: the second of GATE_BLOCKS 3-6
    assert stage_columns([2, 3, 4, 5], (6, 3)).tolist() == [0, 1, 9, 10, 11, 12, 13]
    assert stage_columns([2, 3, 4, 5], (3, 4, 5, 6)) is None  # all of them: as gates were fitted before
    with pytest.raises(ValueError, match="gate blocks"):
        stage_columns([2, 3, 4, 5], (7,))
    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 12))
    columns = stage_columns([2, 3, 4, 3], (4, 5))  # columns 2-8
    det = OODDetector.fit(f, k=4, columns=columns)
    noisy = f.copy()
    noisy[:, [0, 1, 9, 10, 11]] += rng.normal(0, 50, (300, 5))  # the columns it does not read
    assert np.allclose(det.score(noisy), det.score(f))
    noisy[:, 5] += 50  # one it reads
    assert (det.score(noisy) > det.score(f)).all()
    det.threshold = 1.0
    det.save(tmp_path)
    again = OODDetector.load(tmp_path)
    assert again.columns.tolist() == columns.tolist() and np.allclose(again.score(f), det.score(f), rtol=1e-5)


def write_lesions(folder: Path, n: int, seed: int) -> list[Sample]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        p = folder / f"l{i}.png"
        textured_lesion(rng, size=96).save(p)
        samples.append(Sample(p, 0))
    return samples


def test_gate_rejects_non_lesions_and_passes_lesions(tmp_path: Path):
    """An ImageNet backbone with a gate fitted on (synthetic) lesions says "cannot assess" for photos,
    charts, text and blanks, and assesses new lesions."""
    model_dir = save_model_folder(create_model("tf_efficientnet_lite0"), ModelConfig(img_size=96), tmp_path / "m")
    fit = write_lesions(tmp_path / "fit", 120, seed=1)
    val = write_lesions(tmp_path / "val", 60, seed=2)
    fit_ood_for_model(model_dir, fit, val, quantile=0.99)
    new = write_lesions(tmp_path / "new", 40, seed=3)
    others = []
    for name, img in list(nonlesion_images(crops_per_photo=0))[::3]:
        others.append(tmp_path / "others" / f"{name}.png")
        others[-1].parent.mkdir(exist_ok=True)
        img.save(others[-1])
    predictor = TorchPredictor(model_dir)
    rows = predictor.predict_paths(others)
    rejected = [r for r in rows if r["status"] == "out_of_distribution"]
    assert len(rejected) / len(rows) >= 0.9
    assert all(r["label"] is None and r["p_malignant"] is None and "cannot assess" in r["error"] for r in rejected)
    passed = [r for r in predictor.predict_paths([s.path for s in new]) if r["status"] == "ok"]
    assert len(passed) / len(new) >= 0.9


def test_blank_images_are_never_assessed(tmp_path: Path, tiny_model_dir: Path):
    from PIL import Image

    Image.new("RGB", (100, 100), (200, 150, 140)).save(tmp_path / "skin_colour.png")
    row = TorchPredictor(tiny_model_dir).predict_paths([tmp_path / "skin_colour.png"])[0]
    assert row["status"] == "out_of_distribution" and "blank" in row["error"]


def test_bundled_gate_on_real_lesions_and_generated_non_lesions(tmp_path: Path):
    predictor = TorchPredictor()
    if predictor.ood is None:
        pytest.fail("the bundled model ships without its out-of-distribution gate")
    lesion_rows = predictor.predict_paths(expand_paths([SAMPLES]))
    assert all(r["status"] == "ok" for r in lesion_rows)
    paths = []
    for name, img in nonlesion_images(crops_per_photo=1):
        paths.append(tmp_path / f"{name}.png")
        img.save(paths[-1])
    rows = predictor.predict_paths(paths)
    assert sum(r["status"] == "out_of_distribution" for r in rows) / len(rows) >= 0.95


def test_is_flat_measures_the_spread_of_the_grey_level():
    from melanoma.ood import FLAT_STD, is_flat

    rng = np.random.default_rng(0)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = np.stack([np.full((3, 32, 32), 0.4),  # one colour
                       0.4 + rng.normal(0, FLAT_STD / 10, (3, 32, 32)),  # sensor noise on one colour
                       rng.uniform(0, 1, (3, 32, 32)),  # texture
                       np.concatenate([np.zeros((3, 32, 16)), np.ones((3, 32, 16))], axis=2)])  # two halves
    x = ((pixels - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]).astype(np.float32)
    assert is_flat(x, mean, std).tolist() == [True, True, False, False]
    naive = pixels.mean(axis=1).reshape(4, -1).std(axis=1) < FLAT_STD  # the definition, on raw pixels
    assert is_flat(x, mean, std).tolist() == naive.tolist()


def test_calibrate_gate_refits_the_gate_on_every_source_and_records_it(tmp_path: Path):
    from typer.testing import CliRunner

    from melanoma.cli import app
    from melanoma.datasets import write_split
    from melanoma.imaging import Sample

    model_dir = save_model_folder(create_model("tf_efficientnet_lite0"), ModelConfig(img_size=96), tmp_path / "m")
    fit_ood_for_model(model_dir, write_lesions(tmp_path / "a", 30, seed=1), write_lesions(tmp_path / "av", 10, seed=2))
    before = (model_dir / "ood.safetensors").read_bytes()
    parts = {"train": [Sample(s.path, s.label, "clinic_a") for s in write_lesions(tmp_path / "ta", 40, seed=3)]
             + [Sample(s.path, s.label, "clinic_b") for s in write_lesions(tmp_path / "tb", 12, seed=4)],
             "val": [Sample(s.path, s.label, src) for src, seed in (("clinic_a", 5), ("clinic_b", 6))
                     for s in write_lesions(tmp_path / f"v{seed}", 10, seed=seed)]}
    write_split(tmp_path / "split.csv", parts)
    result = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                      "--no-threshold"])
    assert result.exit_code == 0, result.output
    cfg = ModelConfig.load(model_dir / "config.json")
    gate = cfg.training["gate"]
    assert gate["sources"] == ["clinic_a", "clinic_b"] and gate["n_fit"] == 52  # all of both: fewer than 2,000
    assert gate["n_views"] == {"field": 20 + 6}  # half of each source, also seen through a dermatoscope field
    assert set(gate["val_rejected_per_source"]) == {"clinic_a", "clinic_b"}
    assert (model_dir / "ood.safetensors").read_bytes() != before and cfg.threshold == 0.5  # threshold untouched
    TorchPredictor(model_dir)  # the checksums were rewritten: the folder still verifies
    assert gate["blocks"] == [3, 4, 5, 6] and OODDetector.load(model_dir).columns is None  # no recipe: all four
    cfg.training = {**cfg.training, "recipe": {"gate_blocks": [5]}}
    cfg.save(model_dir / "config.json")
    write_checksums(model_dir)
    as_trained = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                          "--no-threshold"])
    assert as_trained.exit_code == 0, as_trained.output  # refitted as the recipe fitted it: stage 5 alone
    assert ModelConfig.load(model_dir / "config.json").training["gate"]["blocks"] == [5]
    one = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                   "--no-threshold", "--gate-blocks", "4"])
    assert one.exit_code == 0, one.output
    assert ModelConfig.load(model_dir / "config.json").training["gate"]["blocks"] == [4]
    assert len(OODDetector.load(model_dir).columns) == 112  # lite0's stage 4 has 112 channels
    row = TorchPredictor(model_dir).predict_paths([parts["val"][0].path])[0]
    assert row["status"] in ("ok", "out_of_distribution") and row["ood_score"] is not None
    assert OODDetector.load(model_dir).head is None and "head" not in gate_note(cfg)  # the recipe asks for none
    (model_dir / "recipe.yaml").write_text("epochs: 2\ngate_blocks: [4]\n")  # as a trained folder carries one
    write_checksums(model_dir)
    headed = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                      "--no-threshold", "--gate-negatives", "30"])
    assert headed.exit_code == 0, headed.output
    recipe = ModelConfig.load(model_dir / "config.json").training["recipe"]  # the folder says how its gate was made
    assert recipe["gate_negatives"] == 30 and recipe["gate_blocks"] == [4]
    from melanoma.recipe import load_recipe

    assert load_recipe(model_dir / "recipe.yaml").gate_negatives == 30
    assert "calibrate --gate`'s gate_negatives" in (model_dir / "recipe.yaml").read_text()
    cfg = ModelConfig.load(model_dir / "config.json")
    assert cfg.training["gate"]["n_negatives"] == 30 and OODDetector.load(model_dir).head is not None
    assert cfg.training["gate"]["n_val_views"] == 2 + 2  # a fifth of each source's 10, through the field view
    kinds = cfg.training["gate"]["negatives"]  # which pictures, so that a fit elsewhere can be compared
    assert kinds["skin"] == kinds["photos"] == kinds["patterns"] == 10 and kinds["photo_files"] > 0
    assert "head fitted on 30 non-lesion pictures" in gate_note(cfg)
    row = TorchPredictor(model_dir).predict_paths([parts["val"][0].path])[0]  # the folder verifies, the head scores
    assert row["ood_score"] is not None
    weights = np.abs(OODDetector.load(model_dir).head["weights"][:-1]).mean()
    firmer = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                      "--no-threshold", "--gate-head-c", "0.01"])
    assert firmer.exit_code == 0, firmer.output
    cfg = ModelConfig.load(model_dir / "config.json")
    assert cfg.training["recipe"]["gate_head_c"] == 0.01 and cfg.training["gate"]["head_c"] == 0.01
    assert np.abs(OODDetector.load(model_dir).head["weights"][:-1]).mean() < weights  # a stronger penalty
    from test_negatives import picture_folder

    pictures = picture_folder(tmp_path / "pictures")
    fourth = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                      "--no-threshold", "--gate-negatives", "32", "--gate-negative-pictures",
                                      str(pictures)])
    assert fourth.exit_code == 0, fourth.output
    kinds = ModelConfig.load(model_dir / "config.json").training["gate"]["negatives"]
    assert kinds["picture_files"] == {"a": 2, "b": 1} and kinds["skin"] == kinds["pictures"] == 8  # a quarter each
    assert "a quarter cut from a, b)" in gate_note(ModelConfig.load(model_dir / "config.json"))  # the card names them
    before = (model_dir / "ood.safetensors").read_bytes()
    missing = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                       "--no-threshold", "--gate-negatives", "32", "--gate-negative-pictures",
                                       str(tmp_path / "nowhere")])
    assert missing.exit_code == 3 and "no folder of non-lesion pictures" in missing.output
    assert (model_dir / "ood.safetensors").read_bytes() == before  # a failed refit leaves the folder as it was
    again = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"), "--gate",
                                     "--no-threshold"])  # as the folder's recipe now says: the same head and pictures
    assert again.exit_code == 0, again.output
    gate = ModelConfig.load(model_dir / "config.json").training["gate"]
    assert gate["n_negatives"] == 32 and gate["negatives"]["picture_files"] == {"a": 2, "b": 1} and gate["seed"] == 42
    for bad, message in ((["--gate", "--gate-blocks", "2,4"], "must be some of"),
                         (["--gate", "--gate-blocks", "four"], "must be some of"),
                         (["--gate-blocks", "4"], "with --gate"), (["--gate-negatives", "30"], "with --gate"),
                         (["--gate-negative-pictures", "x"], "with --gate"), (["--gate-head-c", "0.1"], "with --gate"),
                         (["--gate", "--gate-head-c", "0"], "--gate-head-c")):
        refused = CliRunner().invoke(app, ["calibrate", str(model_dir), str(tmp_path / "split.csv"),
                                           "--no-threshold", *bad])
        assert refused.exit_code == 2 and message in refused.output, refused.output
    from conftest import write_class_folders

    flat = write_class_folders(tmp_path / "flat", 3)  # no train/val folders
    no_train = CliRunner().invoke(app, ["calibrate", str(model_dir), str(flat), "--gate", "--no-threshold"])
    assert no_train.exit_code == 3 and "no train split" in no_train.output


def test_dermatoscope_field_blackens_outside_a_disc_and_keeps_its_centre():
    from PIL import Image

    from melanoma.ood import FIELD_RADIUS, dermatoscope_field

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(60, 250, (120, 160, 3), dtype=np.uint8))  # 4:3, landscape
    views = [np.asarray(dermatoscope_field(image, np.random.default_rng(seed))) for seed in range(5)]
    original = np.asarray(image)
    for v in views:
        assert v.shape == original.shape and v.dtype == np.uint8
        assert (v[0, 0] == 0).all() and (v[-1, -1] == 0).all()  # corners lie outside any disc of radius <= 0.65 side
        assert (v[60, 80] == original[60, 80]).all()  # the centre is seen unchanged
        inside = (v > 0).any(axis=2).mean()  # the disc's share of the frame, within its radius range
        assert np.pi * (FIELD_RADIUS[0] * 120) ** 2 / (160 * 120) * 0.8 < inside < 1.0
    assert len({v.tobytes() for v in views}) == 5  # each draw its own radius and centre


def test_gate_views_of_the_first_share_of_each_source_keep_label_and_source(tmp_path: Path):
    from melanoma.imaging import InMemory
    from melanoma.ood import gate_views

    good = write_lesions(tmp_path / "l", 6, seed=4)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    samples = [Sample(s.path, i % 2, "clinic_a") for i, s in enumerate(good[:4])]
    samples += [Sample(tmp_path / "broken.jpg", 1, "clinic_b")] + [Sample(s.path, 1, "clinic_b") for s in good[4:]]
    views = gate_views(samples, ("field",), share=0.75, seed=0)  # 3 of clinic_a's 4; 2 of clinic_b's 3, one unreadable
    kept = samples[:3] + samples[5:6]
    assert [v.path for v in views] == [f"{s.path}#field" for s in kept]
    assert all(isinstance(v, InMemory) for v in views)
    assert [(v.label, v.source) for v in views] == [(s.label, s.source) for s in kept]
    assert gate_views(samples, ("field",), 0.75, 0)[0].image.tobytes() == views[0].image.tobytes()  # reproducible
    both = gate_views(samples, ("field", "grid"), 0.75, 0)
    assert [v.path for v in both] == [f"{s.path}#{k}" for k in ("field", "grid") for s in kept]
    assert [v.image.tobytes() for v in both[:4]] == [v.image.tobytes() for v in views]  # field views drawn first
    with pytest.raises(ValueError, match="unknown gate view"):
        gate_views(samples, ("fog",))


def test_the_gate_fit_is_one_function_its_threshold_keeps_every_sources_refusals_low():
    from melanoma.ood import fit_gate

    rng = np.random.default_rng(0)
    fit_f = rng.normal(size=(400, 96))  # more dimensions than the detector's 64 components, as real features have
    val_f = np.concatenate([rng.normal(size=(200, 96)), rng.normal(0.3, 1.0, size=(100, 96))])
    sources = np.array(["a"] * 200 + ["b"] * 100, object)
    det = fit_gate(fit_f, val_f, sources, quantile=0.99)
    refused = det.score(val_f) > det.threshold
    assert refused[sources == "a"].mean() <= 0.01 and refused[sources == "b"].mean() <= 0.01  # the shifted one too
    assert (det.score(rng.normal(3.0, 1.0, size=(50, 96))) > det.threshold).all()  # far away: refused


def test_a_head_learns_what_the_distance_cannot_see_and_is_saved_with_the_gate(tmp_path: Path):
    from melanoma.ood import fit_gate

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(40, 80))
    lesions = rng.normal(size=(1000, 40)) @ basis + rng.normal(0, 0.1, (1000, 80))
    # non-lesions about as far from the lesions as lesions are, in 40 dimensions, but all to one side in one of them
    others = (rng.normal(size=(300, 40)) + np.eye(40)[0] * 4.5) @ basis + rng.normal(0, 0.1, (300, 80))
    val = lesions[800:]
    sources = np.array(["a"] * 200, object)
    plain = fit_gate(lesions[:800], val, sources)
    headed = fit_gate(lesions[:800], val, sources, negative_features=others[:150])
    assert plain.head is None and headed.head["weights"].shape == (80 + 2,)  # every feature, the log distance, bias
    held_out = others[150:]
    assert (plain.score(held_out) > plain.threshold).mean() < 0.5  # a distance lets most of them through
    assert (headed.score(held_out) > headed.threshold).mean() > 0.9  # the head refuses them
    assert (headed.score(val) > headed.threshold).mean() <= 0.005  # and its threshold keeps the lesions
    # far away on the lesions' side of the head's boundary: the head calls it a lesion, the distance refuses it
    far = (rng.normal(size=(50, 40)) - np.eye(40)[0] * 30) @ basis
    assert (headed.head_logit(far) < headed.head["norms"][1]).all() and (headed.score(far) > headed.threshold).all()
    headed.save(tmp_path)
    again = OODDetector.load(tmp_path)
    assert all(np.allclose(again.head[k], headed.head[k]) for k in headed.head)
    assert np.allclose(again.score(held_out), headed.score(held_out))
    plain.save(tmp_path)
    assert OODDetector.load(tmp_path).head is None  # a gate without a head scores by distance, as every gate before
