from pathlib import Path

import pytest
import torch

from melanoma.backbones import lite_weights_file, map_lite_state_dict
from melanoma.config import ModelConfig, ModelError
from melanoma.nn.models import create_model, load_model_folder, save_model_folder


def test_every_lite0_imagenet_tensor_maps_onto_timm():
    import timm

    src = torch.load(lite_weights_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = map_lite_state_dict(src, model)
    assert len(src) == len(mapped) == len(model.state_dict()) == 296
    assert mapped.keys() == model.state_dict().keys()
    for key, tensor in mapped.items():
        assert tensor.shape == model.state_dict()[key].shape, key


def test_imagenet_weights_recognise_a_natural_image():
    from skimage import data

    model = create_model("tf_efficientnet_lite0", pretrained="imagenet", num_classes=1000).eval()
    cat = torch.tensor(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    x = (torch.nn.functional.interpolate(cat, size=(224, 224), mode="bilinear", antialias=True) - 0.5) / 0.5
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286)  # ImageNet's domestic cat classes (tabby ... Egyptian cat)


def test_binary_head_and_baselines():
    x = torch.randn(2, 3, 64, 64)
    assert create_model("tf_efficientnet_lite0")(x).shape == (2, 1)
    assert create_model("small_cnn", pretrained="none")(x).shape == (2, 1)
    assert create_model("resnet18", pretrained="none")(x).shape == (2, 1)  # any timm name


@pytest.mark.parametrize("arch, pretrained, message", [
    ("resnet18", "imagenet", "offline ImageNet weights"),
    ("no_such_net", "none", "unknown architecture"),
    ("small_cnn", "imagenet", "from scratch"),
    ("tf_efficientnet_lite0", "hub", "'none' or a model folder"),
])
def test_bad_model_choices_are_explained(arch, pretrained, message):
    with pytest.raises(ModelError, match=message):
        create_model(arch, pretrained=pretrained)


def test_model_folder_round_trip(tmp_path: Path):
    model = create_model("small_cnn", pretrained="none").eval()
    cfg = ModelConfig(arch="small_cnn", img_size=48, threshold=0.37, temperature=1.5,
                      training={"note": "round trip"})
    save_model_folder(model, cfg, tmp_path / "m")
    loaded, loaded_cfg = load_model_folder(tmp_path / "m")
    assert loaded_cfg == cfg
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not list((tmp_path / "m").glob("*.tmp"))  # atomic writes leave no temporaries


def test_a_model_folder_is_a_starting_point_for_more_training(tmp_path: Path):
    model = create_model("small_cnn", pretrained="none").eval()
    save_model_folder(model, ModelConfig(arch="small_cnn", img_size=48), tmp_path / "m")
    again = create_model("small_cnn", pretrained=str(tmp_path / "m"))
    assert again.training  # ready to train, with the folder's weights
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), again.eval()(x))
    with pytest.raises(ModelError, match="holds a small_cnn with 1 outputs; asked for tf_efficientnet_lite0"):
        create_model("tf_efficientnet_lite0", pretrained=str(tmp_path / "m"))


def test_broken_model_folders_give_clear_errors(tmp_path: Path):
    save_model_folder(create_model("small_cnn", pretrained="none"), ModelConfig(arch="small_cnn"), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_model_folder(tmp_path)
    (tmp_path / "SHA256SUMS").unlink()  # a folder without checksums: the loader itself notices
    with pytest.raises(ModelError, match="corrupt"):
        load_model_folder(tmp_path)
    save_model_folder(create_model("small_cnn", pretrained="none"), ModelConfig(arch="resnet18"), tmp_path)
    with pytest.raises(ModelError, match="do not match"):
        load_model_folder(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model_folder(tmp_path)


def test_the_bundled_model_loads_through_timm_alone():
    """The card's snippet: timm.create_model("local-dir:FOLDER") gives our network, logit for logit."""
    import timm

    from melanoma.config import DEFAULT_MODEL_DIR

    net = timm.create_model(f"local-dir:{DEFAULT_MODEL_DIR}", pretrained=True).eval()
    ours, _ = load_model_folder(DEFAULT_MODEL_DIR)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ours(x))


def test_a_config_from_a_newer_version_is_refused_not_half_read():
    cfg = ModelConfig(downscale_to=150)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg  # every key this version writes, timm's too, reads back
    newer = {**cfg.to_dict(), "sharpen": 2.0}  # a preprocessing step this version would silently skip
    with pytest.raises(ValueError, match=r"does not know: \['sharpen'\].*upgrade"):
        ModelConfig.from_dict(newer)
