"""Recipes: the one schema (TrainConfig), its checks, YAML with base chains, command-line overrides."""

from pathlib import Path

import pytest

from melanoma.recipe import AugConfig, TrainConfig

from conftest import REPO

RECIPES = sorted([*(REPO / "recipes").glob("*.yaml"), *(REPO / "experiments").glob("*/recipe.yaml")])


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_loads(recipe: Path):
    from melanoma.recipe import load_recipe

    cfg = load_recipe(recipe)
    second_stage = (REPO / cfg.pretrained / "config.json").is_file()  # a further stage of a model folder
    assert cfg.arch.startswith("tf_efficientnet_lite") and (cfg.pretrained == "imagenet" or second_stage)
    assert cfg.epochs >= 1


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_is_at_most_two_bases_from_a_whole_one(recipe: Path):
    import yaml

    chain = [recipe]
    while (base := (yaml.safe_load(chain[-1].read_text()) or {}).get("base")) is not None:
        chain.append((chain[-1].parent / base).resolve())
        assert "flagship" not in chain[-1].name, f"{recipe} builds on the moving pointer recipes/flagship.yaml"
    assert len(chain) - 1 <= 2, " -> ".join(p.parent.name for p in chain)


def test_a_recipe_lists_what_differs_from_its_base_and_unknown_keys_name_themselves(tmp_path: Path):
    from melanoma.recipe import load_recipe, resolved_recipe_text

    (tmp_path / "base.yaml").write_text("epochs: 4\nlr: 0.001\naug:\n  zoom: 0.2\n  vignette: 0.5\n")
    (tmp_path / "exp.yaml").write_text("notes: one change\nbase: base.yaml\nepochs: 2\naug:\n  zoom: 0.3\n")
    cfg = load_recipe(tmp_path / "exp.yaml")
    assert (cfg.epochs, cfg.lr, cfg.aug.zoom, cfg.aug.vignette) == (2, 0.001, 0.3, 0.5)
    (tmp_path / "resolved.yaml").write_text(resolved_recipe_text(tmp_path / "exp.yaml"))
    assert load_recipe(tmp_path / "resolved.yaml") == cfg  # what travels with a model stands alone
    (tmp_path / "bad.yaml").write_text("base: base.yaml\naug:\n  zooom: 0.3\n")
    with pytest.raises(ValueError, match="zooom"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="loops"):
        load_recipe(tmp_path / "loop.yaml")


@pytest.mark.parametrize("line, field", [
    ("epochs: 0", "epochs"), ("lr: -1", "lr"), ("val_fraction: 1.5", "val_fraction"), ("other_dx: maybe", "other_dx"),
    ("aug:\n  zoom: 2", "aug.zoom"), ("aug:\n  vignette: 1.2", "aug.vignette"), ("lr: fast", "lr"),
    ("pretrained: /no/such/model", "pretrained"), ("train_sources: [ham10000]", "train_sources"),
    ("source_logit_adjustment: true", "source_logit_adjustment"), ("threshold_groups: [[a, b]]", "threshold_groups"),
    ("extra_train: [x]\nthreshold_groups: [[a]]", "threshold_groups"),
    ("extra_train: [x]\nthreshold_groups: [[a, b], [b, c]]", "threshold_groups"),
    ("aug:\n  site_views: 0.3", "site_families"), ("aug:\n  site_families: [fog]", "aug.site_families"),
    ("gate_views: [fog]", "gate_views"), ("calibration_sources: [ham10000]", "calibration_sources"),
    ("gate_negatives: 5", "gate_negatives")])
def test_out_of_range_values_are_refused_with_their_name(tmp_path: Path, line: str, field: str):
    from melanoma.recipe import load_recipe

    (tmp_path / "r.yaml").write_text(line + "\n")
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_recipe(tmp_path / "r.yaml")


def test_command_line_options_are_overrides_of_the_one_schema():
    from melanoma.recipe import TrainConfig, apply_overrides

    base = TrainConfig(epochs=7)
    cfg = apply_overrides(base, {"lr": 0.001, "flips": False, "color": 0.2, "zoom": 0.3})
    assert (cfg.epochs, cfg.lr, cfg.aug.hflip, cfg.aug.vflip, cfg.aug.hue, cfg.aug.zoom) == (7, 0.001, False, False,
                                                                                           0.04, 0.3)
    assert base.lr == TrainConfig().lr  # the base is not changed
    with pytest.raises(ValueError, match="learning_rate"):
        apply_overrides(base, {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="epochs"):
        apply_overrides(base, {"epochs": 0})


def test_flagship_recipe_is_the_one_that_trained_the_bundled_model():
    """`melanoma train --recipe recipes/flagship.yaml` is how the README and the card say to reproduce it."""
    from melanoma.config import DEFAULT_MODEL_DIR, ModelConfig
    from melanoma.recipe import as_named, beside, load_recipe

    recorded = dict(ModelConfig.load(DEFAULT_MODEL_DIR / "config.json").training["recipe"])
    # fields added to TrainConfig since that run take their defaults, which is what the run used; its sources may
    # have been named from the working directory then (beside the data now); a gate refit records the folder of
    # pictures it was given, the recipe names it beside the data
    data = "../shared/data/melanoma_cancer_dataset"
    names = [Path(p).name for p in recorded["extra_train"]]
    assert all(p in (n, str(beside(data, n))) for p, n in zip(recorded["extra_train"], names, strict=True))
    trained_with = as_named(TrainConfig(**{**recorded, "aug": AugConfig(**recorded["aug"])}))
    assert load_recipe(REPO / "recipes" / "flagship.yaml") == trained_with
    assert load_recipe(DEFAULT_MODEL_DIR / "recipe.yaml") == load_recipe(REPO / "recipes" / "flagship.yaml")


def test_downscale_to_is_checked_before_anything_runs():
    from melanoma.recipe import TrainConfig, validate

    validate(TrainConfig(downscale_to=150))
    with pytest.raises(ValueError, match="downscale_to"):
        validate(TrainConfig(downscale_to=8))


def test_gate_blocks_are_stages_the_engines_give_the_gate():
    from melanoma.recipe import TrainConfig, validate

    validate(TrainConfig(gate_blocks=[4]))
    for bad in ([], [2, 4], [7]):
        with pytest.raises(ValueError, match="gate_blocks"):
            validate(TrainConfig(gate_blocks=bad))


def test_set_overrides_are_read_as_yaml_and_checked_against_the_one_schema():
    from melanoma.recipe import TrainConfig, apply_overrides, parse_overrides, settable_fields

    given = parse_overrides(["epochs=5", "aug.zoom=0.2", "extra_train=[../a, ../b]", "target_sensitivity=null",
                             "devices=2", "flips=false", "lr=1e-3", "arch=resnet18"])
    assert given == {"epochs": 5, "aug.zoom": 0.2, "extra_train": ["../a", "../b"], "target_sensitivity": None,
                     "devices": 2, "flips": False, "lr": 0.001, "arch": "resnet18"}  # 1e-3 a number, as meant
    cfg = apply_overrides(TrainConfig(), given)
    assert (cfg.epochs, cfg.aug.zoom, cfg.extra_train, cfg.target_sensitivity, cfg.aug.hflip) == (
        5, 0.2, ["../a", "../b"], None, False)
    for bad, message in (["epochs"], "KEY=VALUE"), (["=3"], "KEY=VALUE"), (["lr=[1"], "not valid YAML"):
        with pytest.raises(ValueError, match=message):
            parse_overrides(bad)
    with pytest.raises(ValueError, match="'aug.nope'"):
        apply_overrides(TrainConfig(), parse_overrides(["aug.nope=1"]))
    fields = settable_fields()
    assert fields["epochs"] == 10 and fields["aug.zoom"] == 0.1 and "aug" not in fields


def test_a_recipes_sources_are_found_beside_the_data():
    from melanoma.recipe import beside

    assert beside("../shared/data/melanoma_cancer_dataset", "ham10000") == Path("../shared/data/ham10000")
    assert beside("../shared/data/melanoma_cancer_dataset", "/data/ham10000") == Path("/data/ham10000")
