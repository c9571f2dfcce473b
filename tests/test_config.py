"""The model folder's config.json: one schema, read strictly, written atomically, for one-logit and seven-class
models alike."""

import json
from pathlib import Path

import pytest

from melanoma.config import ModelConfig, load_config, write_checksums
from melanoma.diagnoses import DIAGNOSES


def test_a_one_logit_config_is_written_as_older_versions_wrote_it(tmp_path: Path):
    cfg = ModelConfig(arch="tf_efficientnet_lite0", threshold=0.3, temperature=1.2)
    cfg.save(tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text())
    assert "diagnoses" not in d and "class_bias" not in d  # an older package still reads it
    assert d["num_classes"] == 1 and d["label_names"] == ["benign", "malignant"]
    assert ModelConfig.load(tmp_path / "config.json") == cfg and cfg.num_outputs == 1


def test_a_seven_class_config_round_trips_and_tells_timm_its_outputs(tmp_path: Path):
    cfg = ModelConfig(arch="tf_efficientnet_lite0", diagnoses=DIAGNOSES, class_bias=(0.0, 0.5, -1, -3, -2, -2, -3))
    cfg.save(tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["num_classes"] == d["pretrained_cfg"]["num_classes"] == 7 and d["label_names"] == list(DIAGNOSES)
    back = ModelConfig.load(tmp_path / "config.json")
    assert back == cfg and back.diagnoses == DIAGNOSES and back.num_outputs == 7


def test_unknown_settings_and_broken_files_are_refused_with_their_reason(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"arch": "small_cnn", "img_size": 48, "crop": "centre"}))
    with pytest.raises(ValueError, match=r"does not know: \['crop'\]"):
        ModelConfig.load(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.load(tmp_path / "config.json")


def test_a_changed_file_fails_its_checksum_at_load(tmp_path: Path):
    from melanoma.config import ModelError

    ModelConfig(arch="small_cnn", img_size=48).save(tmp_path / "config.json")
    (tmp_path / "model.onnx").write_bytes(b"graph")
    write_checksums(tmp_path)
    assert load_config(tmp_path, "model.onnx").img_size == 48
    (tmp_path / "model.onnx").write_bytes(b"graph, edited")
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_config(tmp_path, "model.onnx")
