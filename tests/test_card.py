"""The model card: Hugging Face metadata from ModelCardData, every source by its public name, no machine paths."""

from __future__ import annotations

import yaml

from melanoma.card import model_card, public_command, results_table
from melanoma.config import ModelConfig

SOURCES = {"melanoma_cancer_dataset": {"n_train": 9631, "n_train_malignant": 4113, "n_val": 1188,
                                       "n_val_malignant": 559, "n_left_out_copies_of_held_out": 1060},
           "ham10000": {"n_train": 7476, "n_train_malignant": 421, "n_val": 918, "n_val_malignant": 111,
                        "n_left_out_copies_of_held_out": 780}}
EXTERNAL = {"n": 1512, "n_malignant": 171, "roc_auc": 0.91, "roc_auc_ci": [0.89, 0.93], "recall": 0.86,
            "recall_ci": [0.8, 0.91], "specificity": 0.72, "specificity_ci": [0.7, 0.74], "refused": 0.01}


def card_for(**training) -> str:
    cfg = ModelConfig(arch="tf_efficientnet_lite0", training={
        "sources": SOURCES, "n_val": 2106, "recipe": {"other_dx": "exclude"},
        "command": "melanoma train --recipe recipes/flagship.yaml ../shared/data/melanoma_cancer_dataset", **training})
    return model_card(cfg, {"ISIC 2018 Task 3 test (external)": EXTERNAL})


def test_card_metadata_has_model_index_base_model_and_datasets():
    card = card_for()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == "timm/tf_efficientnet_lite0.in1k" and meta["library_name"] == "timm"
    assert meta["datasets"] == ["marmal88/skin_cancer"]
    results = meta["model-index"][0]["results"]
    assert {m["type"] for r in results for m in r["metrics"]} == {"roc_auc", "recall", "specificity"}
    assert all(r["dataset"]["name"] == "ISIC 2018 Task 3 test (external)" for r in results)


def test_card_names_every_source_with_its_counts_and_no_machine_path():
    card = card_for()
    assert "| Kaggle Melanoma Cancer Dataset | 9631 (4113) | 1188 (559) | 1060 |" in card
    assert "| HAM10000 | 7476 (421) | 918 (111) | 780 |" in card
    assert "../shared" not in card and "DATA/melanoma_cancer_dataset" in card
    assert "basal cell carcinomas and actinic keratoses were left out" in card
    assert "| ISIC 2018 Task 3 test (external) | 1512 (171) | 0.910 (0.890-0.930) |" in card
    assert public_command("melanoma train /x/y/ham10000 --out r") == "melanoma train DATA/ham10000 --out r"


def test_a_given_limitation_replaces_the_default_it_rewrites():
    cfg = ModelConfig(arch="tf_efficientnet_lite0", training={})
    mine = "Basal cell carcinoma and actinic keratosis were not trained on; on ISIC 2018 they count as benign."
    card = model_card(cfg, limitations=[mine])
    assert card.count("Basal cell carcinoma and actinic keratosis") == 1 and f"- {mine}\n" in card
    assert card.count("Not for non-dermoscopic") == 1


def test_results_table_shows_a_dash_for_metrics_a_one_class_row_lacks():
    benign_only = {"n": 120, "n_malignant": 0, "roc_auc": None, "recall": None, "specificity": 0.75,
                   "specificity_ci": [0.67, 0.82]}
    row = results_table({"external benign": benign_only})[2]
    assert row == "| external benign | 120 (0) | - | - | 0.750 (0.670-0.820) | - |"


def test_card_says_when_images_are_shrunk_first_and_whether_that_came_after_training():
    assert "first shrunk" not in card_for()
    trained = model_card(ModelConfig(downscale_to=150, training={"sources": SOURCES}), {})
    assert "first shrunk until the shorter side is at most 150 px)" in trained
    later = model_card(ModelConfig(downscale_to=150, training={"sources": SOURCES,
                                                               "downscale_set_after": {"from": None, "to": 150}}), {})
    assert "at most 150 px (set after training)" in later
    assert "shrink to 150 px first" in trained and "shrink to" not in card_for()  # timm alone would not
    assert "is all this model needs" in model_card(ModelConfig(color_constancy=None), {})


def test_card_says_which_stages_the_gate_reads_and_what_it_was_fitted_on():
    assert "stage(s)" not in card_for()  # an older folder's config records no blocks: nothing claimed
    gate = {"blocks": [4], "sources": ["ham10000", "melanoma_cancer_dataset"]}
    card = model_card(ModelConfig(training={"sources": SOURCES, "gate": gate}), {})
    assert "pooled features of EfficientNet stage(s) 4, fitted on HAM10000, Kaggle Melanoma Cancer Dataset" in card


def test_card_says_what_a_diagnosis_head_learnt_and_nothing_without_one():
    card = card_for(recipe={"other_dx": "exclude", "diagnosis_loss": 0.5},
                    train_diagnoses={"mel": 900, "nv": 6000, "bkl": 1200, "bcc": 0})
    assert "used in training only (weight 0.5)" in card and "(900 mel, 6000 nv, 1200 bkl)" in card
    plain = card_for()
    assert "training only" not in plain
    assert "validation images." not in plain  # with sources, their table alone describes the data


def test_a_seven_class_card_says_what_it_answers_and_reports_by_diagnosis():
    import numpy as np

    from melanoma.card import diagnosis_evaluations
    from melanoma.diagnoses import DIAGNOSES
    from melanoma.evaluate import diagnosis_metrics

    rng = np.random.default_rng(0)
    dx = list(DIAGNOSES) * 6
    probs = rng.dirichlet(np.ones(7), len(dx))
    external = {**diagnosis_metrics(dx, probs[:, [0, 5, 6]].sum(1), 0.4, probs[:, 0], probs, n_boot=20),
                "refused": 0.01}
    table = {"external": external, "kaggle_clean": {"n": 100, "n_melanoma": 30, "refused": 0.0,
                                                   "melanoma_roc_auc": 0.97, "melanoma_roc_auc_ci": [0.95, 0.98],
                                                   "recall": 0.95, "recall_ci": [0.9, 0.99], "specificity": 0.8,
                                                   "specificity_ci": [0.7, 0.9]}}
    evaluations = diagnosis_evaluations(table)
    cancer = evaluations["ISIC 2018 test (external): skin cancer vs benign lesions"]
    assert cancer["n_malignant"] == 18 and cancer["roc_auc"] == external["cancer_vs_benign_roc_auc"]
    assert cancer["recall"] == external["cancer_sensitivity"] and cancer["specificity_ci"] == \
        external["benign_specificity_ci"]
    cfg = ModelConfig(arch="tf_efficientnet_lite0", diagnoses=DIAGNOSES, class_bias=(0.0,) * 7, training={
        "sources": SOURCES, "recipe": {"other_dx": "malignant", "malignant_means": "melanoma"},
        "train_diagnoses": {**{d: 10 for d in DIAGNOSES}, "partial": 5000}})
    card = model_card(cfg, evaluations, by_diagnosis={"ISIC 2018 test": external})
    assert "Differential diagnosis" in card and "p(skin cancer)" in card and "diagnosis_logits" in card
    assert "5,000 images labelled only benign" in card and "melanoma alone" in card
    assert f"| dermatofibroma | 6 | {external['flagged_df']:.2f}" in card and "Balanced multi-class accuracy" in card
    assert "were not trained on" not in card  # the one-logit model's BCC/AK caveat does not apply


def test_the_card_carries_the_stress_suite_when_given():
    from melanoma.card import stress_table

    change = {"a": 0.85, "b": 0.80, "difference": -0.05, "difference_ci": [-0.09, -0.01]}
    stress = {"n": 381, "untransformed": {"refused": 0.01, "melanoma_roc_auc": 0.85},
              "families": {"zoom_out": {"refused": 0.2, "melanoma_roc_auc": change, "specificity": {"b": 0.3}}}}
    rows = stress_table(stress)
    assert "| zoomed out (lesion 15-35% of the frame) | 20.0% | 0.800 (-0.050, -0.090 to -0.010) | 0.300 |" in rows
    card = model_card(ModelConfig(arch="tf_efficientnet_lite0", training={}), stress=stress)
    assert card.index("## Pictures taken another way") < card.index("## Limitations")
    assert "## Pictures taken another way" not in model_card(ModelConfig(arch="tf_efficientnet_lite0", training={}))


def test_card_says_a_model_crops_to_the_lesion_and_ships_its_segmenter():
    assert "segmenter" not in card_for()
    cropped = model_card(ModelConfig(lesion_crop={"size": 160, "margin": 0.25, "threshold": 0.5},
                                     training={"sources": SOURCES}), {})
    assert "a square of 1.5 times the lesion's longer side" in cropped and "`segmenter.onnx` (the lesion" in cropped
    assert "crop to the lesion (`segmenter.onnx`)" in cropped  # timm's preprocessing alone would not
