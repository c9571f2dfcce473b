"""melanoma.bench.gate_cache: a network's gate features cached once, read back as a refit needs them."""

from pathlib import Path

import numpy as np
from test_ood import write_lesions

from melanoma.bench import gate_cache
from melanoma.config import ModelConfig, write_checksums
from melanoma.datasets import write_split
from melanoma.imaging import Sample
from melanoma.nn.fit import fit_ood_for_model
from melanoma.nn.models import create_model, save_model_folder
from melanoma.ood import fit_gate


def test_the_cache_holds_what_a_refit_needs_and_a_refit_from_it_scores(tmp_path: Path):
    run = tmp_path / "run"
    model = save_model_folder(create_model("tf_efficientnet_lite0"), ModelConfig(img_size=64), run / "model")
    cfg = ModelConfig.load(model / "config.json")
    cfg.training = {"recipe": {"gate_views": ["field", "grid"], "gate_blocks": [4], "seed": 3}}
    cfg.save(model / "config.json")
    write_checksums(model)
    parts = {"train": [Sample(s.path, 0, src) for src, seed in (("a", 1), ("b", 2))
                       for s in write_lesions(tmp_path / f"t{seed}", 6, seed)],
             "val": [Sample(s.path, 0, src) for src, seed in (("a", 3), ("b", 4))
                     for s in write_lesions(tmp_path / f"v{seed}", 4, seed)]}
    write_split(run / "split.csv", parts)
    fit_ood_for_model(model, parts["train"], parts["val"], blocks=(4,))
    write_checksums(model)

    gate_cache.write(run, tmp_path / "cache", negatives=6)
    names = {p.name for p in (tmp_path / "cache").glob("*.npy")}
    assert {"fit.npy", "neg.npy", "val.npy", "view_field.npy", "view_grid.npy"} <= names
    assert {f"valview_{f}.npy" for f in gate_cache.VAL_VIEWS} <= names and len(names) == 2 * (5 + 9)
    c = gate_cache.read(tmp_path / "cache", model)
    assert c.fit_views == ("field", "grid") and len(c.columns) == 112  # the stage the model's gate reads
    assert len(c.pos_f) == 12 + 6 + 6 and set(c.pos_s) == {"a", "b"}  # the fit images, half through each view
    assert len(c.neg_f) == 6 and set(c.neg_s) == {"negative:skin", "negative:photos", "negative:patterns"}
    assert sorted(set(c.thr_g)) == ["a", "b", "view:field", "view:grid"] and len(c.thr_f) == 8 + 8 + 8
    assert set(c.val_views) == {"field", "grid", "ruler", "bubbles"}
    det = fit_gate(c.pos_f, c.thr_f, c.thr_g, c.columns, negative_features=c.neg_f)
    assert det.head is not None and np.isfinite(det.score(c.val_f)).all()

    gate_cache.write(run, tmp_path / "only", negatives=6, only="neg")  # one array, the rest not drawn
    assert {p.name for p in (tmp_path / "only").glob("*.npy")} == {"neg.npy", "neg_src.npy"}
