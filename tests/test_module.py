"""The LightningModule's training step and the LP-FT linear probe."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_class_folders


def test_source_logit_adjustment_adds_each_images_offset_to_its_logit_in_the_loss():
    import torch.nn.functional as F

    from melanoma.nn.module import LesionClassifier

    module = LesionClassifier("small_cnn", "none", 1e-3, 0.0, "adamw", 0.0).eval()  # eval: the same logits twice
    module.log = lambda *a, **k: None  # no trainer attached
    x, y, idx = torch.randn(4, 3, 32, 32), torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([3, 1, 2, 0])
    plain = module.training_step((x, y, idx), 0)
    module.train_offsets = torch.tensor([-2.0, -1.0, 0.0, 3.0])  # indexed by the dataset index, not the batch row
    adjusted = module.training_step((x, y, idx), 0)
    with torch.no_grad():
        logits = module(x)
    assert plain.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, y).item(), rel=1e-5)
    assert adjusted.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits + torch.tensor([3.0, -1.0, 0.0, -2.0]), y).item(), rel=1e-5)
    assert adjusted.item() != pytest.approx(plain.item())


@pytest.mark.train
def test_frozen_blocks_keep_their_imagenet_weights_and_the_rest_learns():
    from melanoma.nn.module import LesionClassifier

    module = LesionClassifier("tf_efficientnet_lite0", "none", 1e-2, 0.0, "adam", 0.0, freeze_blocks=2)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    module.train()
    module.on_train_epoch_start()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.nn.functional.binary_cross_entropy_with_logits(module(x), y).backward()
    opt.step()
    after = module.net.state_dict()
    frozen = [k for k in before if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1."))]
    trained = [k for k in before if k.startswith(("blocks.2.", "blocks.6.", "conv_head", "classifier"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # running stats too
    assert any(not torch.equal(before[k], after[k]) for k in trained)


@pytest.mark.train
def test_linear_probe_fits_the_head_on_frozen_features_and_changes_no_other_weight(tmp_path: Path):
    from melanoma.datasets import discover
    from melanoma.nn.data import build_transform, make_loader
    from melanoma.nn.models import create_model
    from melanoma.nn.module import fit_linear_probe

    data = write_class_folders(tmp_path / "data", 16)
    samples = discover(data)["all"]
    loader = make_loader(samples, build_transform(64, (0.5,) * 3, (0.5,) * 3), batch_size=8)
    net = create_model("tf_efficientnet_lite0", pretrained="imagenet")
    body = {k: v.clone() for k, v in net.named_parameters() if not k.startswith("classifier.")}
    imagenet_bn = net.bn1.running_mean.clone()
    labels = torch.tensor([s.label for s in samples])

    def accuracy() -> float:
        with torch.no_grad():
            logits = torch.cat([net.eval()(x).squeeze(1) for x, _, _ in loader])
        return float(((logits > 0).long() == labels).float().mean())

    before = accuracy()
    info = fit_linear_probe(net, loader)
    assert info["n"] == 32 and info["train_auc"] > 0.95 and info["C"] > 0
    assert accuracy() > 0.9 and accuracy() > before  # the pretrained features separate the synthetic classes
    # no weight of the body changes; batch norm takes these images' statistics (fine-tuning's view of them)
    assert all(torch.equal(v, dict(net.named_parameters())[k]) for k, v in body.items())
    assert not torch.allclose(net.bn1.running_mean, imagenet_bn)
    with pytest.raises(ValueError, match="single-logit linear classifier"):
        fit_linear_probe(create_model("small_cnn", pretrained="none"), loader)


def test_diagnosis_head_adds_its_cross_entropy_over_the_images_that_name_a_diagnosis_and_is_not_saved():
    import torch.nn.functional as F

    from melanoma.nn.module import LesionClassifier

    module = LesionClassifier("tf_efficientnet_lite0", "none", 1e-3, 0.0, "adamw", 0.0,
                              diagnosis_loss=0.5, n_diagnoses=7).eval()
    module.log = lambda *a, **k: None
    x, y, idx = torch.randn(4, 3, 64, 64), torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([3, 1, 2, 0])
    module.train_dx = torch.tensor([0, -1, 2, 1])  # by dataset index: image 1 names no diagnosis
    loss = module.training_step((x, y, idx), 0)
    with torch.no_grad():
        pooled = module.net.forward_head(module.net.forward_features(x), pre_logits=True)
        logits, dx_logits = module(x), module.dx_head(pooled)
    bce = F.binary_cross_entropy_with_logits(logits, y)
    named = torch.tensor([0, 2, 3])  # batch rows whose image names one: dataset indices 3, 2, 0
    ce = F.cross_entropy(dx_logits[named], torch.tensor([1, 2, 0]))
    assert loss.item() == pytest.approx((bce + 0.5 * ce).item(), rel=1e-4)
    module.train_dx = torch.full((4,), -1)  # nothing named: the melanoma loss alone
    assert module.training_step((x, y, idx), 0).item() == pytest.approx(bce.item(), rel=1e-4)
    assert not any(k.startswith("dx_head") for k in module.net.state_dict())  # the model folder saves module.net


def test_diagnosis_head_needs_pooled_features():
    from melanoma.nn.module import LesionClassifier

    with pytest.raises(ValueError, match="diagnosis_loss needs"):
        LesionClassifier("small_cnn", "none", 1e-3, 0.0, "adamw", 0.0, diagnosis_loss=0.5, n_diagnoses=7)


def test_the_diagnosis_task_trains_on_each_images_allowed_set_with_its_sources_priors():
    import torch.nn.functional as F

    from melanoma.diagnoses import IS_CANCER, allowed
    from melanoma.nn.module import LesionClassifier, set_nll

    module = LesionClassifier("small_cnn", "none", 1e-3, 0.0, "adamw", 0.0, num_classes=7).eval()
    module.log = lambda *a, **k: None
    x, y, idx = torch.randn(3, 3, 32, 32), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([2, 0, 1])
    allow = torch.as_tensor(np.stack([allowed("", 1, "melanoma"), allowed("", 0), allowed("df", 0)]))
    module.train_allowed = allow  # dataset index 0: Kaggle melanoma, 1: Kaggle benign, 2: a named dermatofibroma
    offsets = torch.randn(3, 7)
    module.train_offsets = offsets
    loss = module.training_step((x, y, idx), 0)
    with torch.no_grad():
        z = module(x) + offsets[idx]
    log_p = z.log_softmax(1)
    expected = -(log_p[0, 3] + log_p[1, 0] + log_p[2, torch.as_tensor(~IS_CANCER)].logsumexp(0)) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    one_hot = torch.zeros(2, 7, dtype=torch.bool)
    one_hot[0, 1] = one_hot[1, 4] = True  # a named diagnosis: plain cross-entropy
    assert set_nll(z[:2], one_hot).item() == pytest.approx(F.cross_entropy(z[:2], torch.tensor([1, 4])).item())
