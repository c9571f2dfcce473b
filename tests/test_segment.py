import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from melanoma.nn.segment import SegmentConfig, augment, mask_path, split_masks, target, train_segmenter

from conftest import write_dark_segmenter, write_ham_like

pytestmark = pytest.mark.train


def ham_with_masks(root: Path, lesions: int = 8) -> Path:
    """A HAM10000-like folder whose masks mark each image's dark blob (two images of each lesion)."""
    write_ham_like(root, np.random.default_rng(0), [("nv", 2)] * lesions)
    (root / "masks").mkdir()
    for img in (root / "images").glob("*.jpg"):
        grey = np.asarray(Image.open(img).convert("L"), np.float32)
        Image.fromarray(np.uint8(255 * (grey < np.percentile(grey, 25)))).save(mask_path(img))
    return root


def test_a_zoomed_out_training_picture_keeps_its_mask_on_the_lesion():
    img = Image.new("RGB", (120, 90), (205, 160, 140))
    ImageDraw.Draw(img).rectangle([40, 30, 80, 60], fill=(60, 40, 30))
    mask = Image.new("L", (120, 90))
    ImageDraw.Draw(mask).rectangle([40, 30, 80, 60], fill=255)
    cfg = SegmentConfig(zoom_out=1.0, views=0.0)
    for seed in range(4):
        out, out_mask = augment(img, mask, np.random.default_rng(seed), cfg)
        assert out.size == out_mask.size and out.size[0] > 120  # a wider frame
        dark = np.asarray(out.convert("L")) < 100
        marked = np.asarray(out_mask) > 127
        assert (dark & marked).sum() / (dark | marked).sum() > 0.8  # the mask followed the picture


def test_the_target_is_each_cells_lesion_share():
    mask = Image.new("L", (64, 64))
    ImageDraw.Draw(mask).rectangle([0, 0, 31, 31], fill=255)
    t = target(mask, 32)
    assert t.shape == (1, 4, 4) and t[0, :2, :2].min() > 0.95 and t[0, 2:, 2:].max() < 0.05


def test_the_segmenter_trains_splits_by_lesion_and_exports_the_graph_the_cropper_reads(tmp_path: Path):
    import onnxruntime as ort

    from melanoma.lesion_crop import segmenter_input

    ham = ham_with_masks(tmp_path / "ham")
    cfg = SegmentConfig(epochs=1, size=64, batch_size=4, num_workers=0, val_fraction=0.25)
    train, val = split_masks(ham / "HAM10000_metadata.csv", cfg)
    assert not {s.group for s in train} & {s.group for s in val} and len(train) + len(val) == 16
    onnx_file = train_segmenter(ham / "HAM10000_metadata.csv", tmp_path / "seg", cfg)
    record = json.loads((tmp_path / "seg" / "segmenter.json").read_text())
    assert record["n_train"] == len(train) and record["settings"]["size"] == 64
    assert len(record["val_iou_by_epoch"]) == 1 and 0 <= record["val_iou_by_epoch"][0] <= 1
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = np.stack([segmenter_input(Image.open(s.path), 64) for s in val])
    assert session.run(None, {"image": x})[0].shape == (len(val), 1, 8, 8)


def test_a_model_folder_given_a_crop_frames_every_picture_before_judging_it(tiny_model_dir: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from melanoma.cli import app
    from melanoma.imaging import Sample
    from melanoma.nn.torch_engine import TorchExplainer, TorchPredictor

    seg = write_dark_segmenter(tmp_path / "seg")
    result = CliRunner().invoke(app, ["crop-to-lesion", str(tiny_model_dir), str(seg), "--margin", "0.25"])
    assert result.exit_code == 0, result.output
    assert "segmenter.onnx" in (tiny_model_dir / "SHA256SUMS").read_text()
    wide = Image.new("RGB", (400, 300), (205, 160, 140))
    ImageDraw.Draw(wide).ellipse([200, 100, 260, 160], fill=(80, 50, 40))
    wide.save(tmp_path / "wide.png")
    predictor = TorchPredictor(tiny_model_dir, use_ood=False)
    framed, evidence = predictor.frame(wide)
    assert framed.size[0] < 200
    assert evidence[0] > 0.9 and evidence[3] == pytest.approx(np.log(2))  # one region holds the map
    framed.save(tmp_path / "framed.png")
    plain = TorchPredictor(tiny_model_dir, use_ood=False)
    plain.cropper = None  # the same network without the crop, shown the picture already framed
    logit_wide = predictor.predict_logits([Sample(tmp_path / "wide.png", 0)])[0]
    assert logit_wide == pytest.approx(plain.predict_logits([Sample(tmp_path / "framed.png", 0)])[0], abs=1e-5)
    assert logit_wide != pytest.approx(plain.predict_logits([Sample(tmp_path / "wide.png", 0)])[0], abs=1e-5)
    # the overlay is drawn on the picture the heatmap is of: the framed one
    _, overlay = TorchExplainer(predictor).assess(wide, tmp_path / "wide.png")
    assert overlay is not None
    bad = CliRunner().invoke(app, ["crop-to-lesion", str(tiny_model_dir), str(tmp_path / "none.onnx")])
    assert bad.exit_code == 3 and "no segmenter" in bad.output


def test_a_cropping_models_results_keep_the_segmenters_evidence_and_its_gate_judges_the_framed_picture(
        tmp_path: Path):
    import shutil

    from melanoma.config import DEFAULT_MODEL_DIR, write_checksums
    from melanoma.engines.onnx_engine import OnnxPredictor
    from melanoma.framing import REASONS
    from melanoma.imaging import Sample
    from melanoma.lesion_crop import SEGMENTER_FILE
    from melanoma.nn.torch_engine import TorchPredictor

    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    shutil.copy(write_dark_segmenter(tmp_path / "seg"), folder / SEGMENTER_FILE)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "lesion_crop": {"size": 64, "margin": 0.25}}))
    write_checksums(folder)
    wide = Image.new("RGB", (400, 300), (205, 160, 140))
    ImageDraw.Draw(wide).ellipse([200, 100, 260, 160], fill=(80, 50, 40))
    wide.save(tmp_path / "wide.png")
    cropping, plain = OnnxPredictor(folder), OnnxPredictor(DEFAULT_MODEL_DIR)
    framed, evidence = cropping.frame(wide)
    assert plain.frame(wide) == (wide, None)
    assert evidence[0] > 0.9 and evidence[3] == pytest.approx(np.log(2))  # one region holds the map
    framed.save(tmp_path / "framed.png")
    [r] = cropping.run([Sample(tmp_path / "wide.png", 0)])
    [p] = plain.run([Sample(tmp_path / "framed.png", 0)])
    np.testing.assert_allclose(r["lesion_evidence"], evidence)
    assert p["lesion_evidence"] is None
    # the gate sees what the network sees: the framed picture's features, scored as the plain folder scores them
    np.testing.assert_allclose(r["features"], p["features"], rtol=1e-5, atol=1e-6)
    assert r["ood_score"] == pytest.approx(p["ood_score"], rel=1e-5)
    [t] = TorchPredictor(folder).run([Sample(tmp_path / "wide.png", 0)])  # the other engine, through its data loader
    np.testing.assert_allclose(t["lesion_evidence"], evidence, rtol=1e-5)
    np.testing.assert_allclose(t["features"], r["features"], rtol=1e-3, atol=1e-4)
    # a refused picture in which the segmenter found nothing says so; one with a lesion gets the usual sentences
    shade = np.linspace(0, 40, 400)[None, :, None]  # lit from one side: not a flat picture, and nowhere dark
    skin = Image.fromarray((np.array([220, 170, 150]) - shade + np.zeros((300, 1, 1))).astype(np.uint8))
    skin.save(tmp_path / "skin.png")
    cropping.ood.threshold = -np.inf  # refuse everything, to read the reasons
    rows = cropping.predict_paths([tmp_path / "skin.png", tmp_path / "wide.png"])
    assert rows[0]["error"] == f"cannot assess: {REASONS['no_lesion']}"
    assert rows[1]["status"] == "out_of_distribution" and REASONS["no_lesion"] not in rows[1]["error"]


def test_a_recipe_with_a_segmenter_trains_on_crops_and_ships_the_crop(tmp_path: Path):
    from melanoma.nn.train import prepare, train
    from melanoma.recipe import TrainConfig

    from conftest import write_class_folders

    data = write_class_folders(tmp_path / "data" / "kaggle", 8)
    cfg = TrainConfig(arch="small_cnn", pretrained="none", img_size=32, epochs=1, batch_size=8, num_workers=0,
                      val_fraction=0.25, accelerator="cpu", devices=1, lesion_crop_segmenter="seg/segmenter.onnx",
                      lesion_crop_margin=0.5)
    with pytest.raises(FileNotFoundError, match="no segmenter"):  # before any training, not after it
        prepare(data, cfg, tmp_path / "plan")
    write_dark_segmenter(tmp_path / "data" / "seg")  # relative: beside the data
    model_dir = train(data, tmp_path / "run", cfg)
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["lesion_crop"] == {"size": 64, "margin": 0.5, "threshold": 0.5}
    assert (model_dir / "segmenter.onnx").is_file() and "segmenter.onnx" in (model_dir / "SHA256SUMS").read_text()
    assert saved["training"]["lesion_crop"]["margin"] == 0.5
