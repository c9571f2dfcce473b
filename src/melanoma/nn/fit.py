"""Fitting a model folder's decision parts on validation data: threshold and temperature, and the gate.

Engine-agnostic fitting lives beside it (:mod:`melanoma.calibrate`, :mod:`melanoma.ood`); this module runs the model
folder on the images (the PyTorch engine: at the end of training the folder has no ONNX graph yet) and stores what
was fitted. Called by ``train`` and ``melanoma calibrate``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..calibrate import (
    choose_threshold,
    choose_threshold_per_source,
    expected_calibration_error,
    fit_temperature,
    pooled_sources,
    sigmoid,
)
from ..config import CHECKSUMS, ModelConfig, atomic_write_bytes, atomic_write_text, write_checksums
from ..diagnoses import allowed_matrix, calibrated, fit_calibration, p_cancer, softmax
from ..engines import ONNX_FILE
from ..negatives import gate_negatives, package_photos, picture_sources
from ..ood import FIELD_SHARE, GATE_BLOCKS, GATE_VIEWS, HEAD_C, fit_gate, gate_views
from ..recipe import load_recipe, resolved_recipe_text
from ..sources import balanced_by_source
from .torch_engine import TorchPredictor

DECISION_FILES = ("config.json", "ood.safetensors", "recipe.yaml", CHECKSUMS)  # what the fits here rewrite
GATE_FIT_IMAGES = 2000  # training images the gate's PCA is fitted on, in equal shares of the sources
VAL_VIEW_SHARE = 0.2  # of each source's validation images, seen through each gate view for a headed gate's threshold


@contextmanager
def all_or_nothing(model_dir: str | Path) -> Iterator[None]:
    """Refits inside it land together or not at all: on any error the folder's decision files are put back as they
    were (a downscale set, then a threshold fit that fails, would leave a model judged at a detail its threshold and
    gate were not fitted for)."""
    saved = {n: (Path(model_dir) / n).read_bytes() for n in DECISION_FILES if (Path(model_dir) / n).is_file()}
    try:
        yield
    except BaseException:
        for name in DECISION_FILES:
            if name in saved:
                atomic_write_bytes(Path(model_dir) / name, saved[name])
            else:
                (Path(model_dir) / name).unlink(missing_ok=True)
        raise


def set_downscale(model_dir: str | Path, px: int | None) -> int | None:
    """Set a trained model folder's ``downscale_to`` (None: off), recorded in ``training.downscale_set_after``;
    its threshold, temperature and gate must then be refitted (``melanoma calibrate --downscale-to N --gate``)."""
    cfg_path = Path(model_dir) / "config.json"
    cfg = ModelConfig.load(cfg_path)
    cfg.training = {**cfg.training, "downscale_set_after": {"from": cfg.downscale_to, "to": px}}
    cfg.downscale_to = px
    cfg.save(cfg_path)
    write_checksums(cfg_path.parent)
    return px


def calibrate_model_folder(model_dir, val_samples, target_sensitivity: float | None = 0.95,
                           batch_size: int = 32, threshold_groups: list[list[str]] | None = None) -> dict:
    """Fit temperature and threshold of the model folder on ``val_samples`` and store them in its
    config.json. Returns what was fitted, with validation ECE before and after and sample sizes.
    ``threshold_groups``: sources pooled for the per-source threshold rule (:func:`calibrate.pooled_sources`)."""
    predictor = TorchPredictor(model_dir, batch_size=batch_size, num_workers=1 if len(val_samples) > 256 else 0)
    logits = predictor.predict_logits(val_samples)
    kept = [(z, s) for z, s in zip(logits, val_samples) if z is not None]
    z = np.array([a for a, _ in kept])
    y = np.array([s.label for _, s in kept])
    src = np.array([s.source for _, s in kept], object)
    rule_src = pooled_sources(src, threshold_groups)
    bias = None
    if predictor.cfg.diagnoses:  # seven classes: temperature and bias on the diagnoses, threshold on p(skin cancer)
        recipe = predictor.cfg.training.get("recipe") or {}
        # the recipe's calibration_sources (none: every source) fit temperature and bias; the threshold uses all
        fit_on = np.ones(len(src), bool)
        if recipe.get("calibration_sources"):
            fit_on = np.isin(src, recipe["calibration_sources"])
        if not fit_on.any():
            raise ValueError(f"no validation images from calibration_sources {recipe['calibration_sources']} "
                             f"(the validation images come from {sorted(set(src.tolist()))})")
        allowed = allowed_matrix([s for _, s in kept], recipe.get("malignant_means", "cancer"))
        temperature, bias = fit_calibration(z[fit_on], allowed[fit_on])
        uncalibrated, probs = p_cancer(softmax(z)), p_cancer(calibrated(z, temperature, bias))
    else:
        temperature = fit_temperature(z, y)
        uncalibrated, probs = sigmoid(z), sigmoid(z / temperature)
    rule = "youden" if target_sensitivity is None else f"sensitivity>={target_sensitivity}"
    per_source: dict[str, float] = {}
    if len(set(rule_src.tolist())) > 1:
        threshold, per_source = choose_threshold_per_source(probs, y, rule_src, target_sensitivity)
        rule += " on each source's validation images (lowest per-source threshold)"
    else:
        threshold = choose_threshold(probs, y, target_sensitivity)
    rule += "".join(f"; {'+'.join(g)} pooled" for g in threshold_groups or [])

    def at_threshold(m: np.ndarray) -> dict:
        pos, neg = m & (y == 1), m & (y == 0)
        return {"n": int(m.sum()), "n_malignant": int(pos.sum()),
                "own_threshold": per_source.get(str(rule_src[m][0])) if m.any() else None,
                **({"threshold_group": str(rule_src[m][0])} if m.any() and rule_src[m][0] != src[m][0] else {}),
                "sensitivity": float((probs[pos] >= threshold).mean()) if pos.any() else None,
                "specificity": float((probs[neg] < threshold).mean()) if neg.any() else None}

    result = {
        "temperature": temperature, "threshold": threshold, "threshold_rule": rule,
        "val_n": int(len(y)), "val_n_malignant": int(y.sum()),
        "val_ece_before": expected_calibration_error(uncalibrated, y),
        "val_ece_after": expected_calibration_error(probs, y),
        "val_sensitivity": float((probs[y == 1] >= threshold).mean()) if y.any() else None,
        "val_specificity": float((probs[y == 0] < threshold).mean()) if (y == 0).any() else None,
    }
    if len(set(src.tolist())) > 1:
        result["per_source"] = {str(name): at_threshold(src == name) for name in dict.fromkeys(src.tolist())}
    cfg_path = Path(model_dir) / "config.json"
    cfg = ModelConfig.load(cfg_path)
    cfg.temperature, cfg.threshold = temperature, threshold
    if bias is not None:
        cfg.class_bias = tuple(bias)
        result["class_bias"] = dict(zip(cfg.diagnoses, bias))
        result["calibration_n"] = int(fit_on.sum())
    cfg.training["calibration"] = result
    cfg.save(cfg_path)
    write_checksums(cfg_path.parent)
    if cfg.diagnoses and (cfg_path.parent / ONNX_FILE).is_file():  # its graph carries the calibrated probabilities
        from .export import export_onnx

        export_onnx(cfg_path.parent, cfg_path.parent / ONNX_FILE)
    return result


def fit_ood_for_model(model_dir: str | Path, fit_samples, val_samples, quantile: float = 0.995,
                      batch_size: int = 32, field_share: float = FIELD_SHARE,
                      views: tuple[str, ...] = GATE_VIEWS, blocks=GATE_BLOCKS, negatives: int = 0,
                      pictures: str | Path | None = None, head_c: float = HEAD_C) -> dict:
    """Fit the gate on features of ``fit_samples`` (training images, ideally every source alike) and of
    ``field_share`` of them seen through each of ``views`` (:func:`ood.gate_views`), reading the outputs of the
    backbone's stages ``blocks`` (:func:`ood.stage_columns`), with ``negatives`` non-lesion pictures
    (:func:`negatives.gate_negatives`, ``pictures`` a folder of them for its fourth kind) its lesion / non-lesion
    head (penalty ``head_c``), set its threshold by :func:`gate_threshold` on
    ``val_samples``' scores (real images only), and save it into the model folder."""
    model_dir = Path(model_dir)
    predictor = TorchPredictor(model_dir, batch_size=batch_size, num_workers=1, use_ood=False)
    columns = predictor.gate_columns(blocks)
    fit_samples = list(fit_samples)
    extra = gate_views(fit_samples, views, field_share) if field_share else []
    fit_f = predictor.features(fit_samples + extra)
    negs = gate_negatives(fit_samples, negatives, pictures=pictures) if negatives else []
    neg_f = predictor.features(negs) if negs else None
    val_f = predictor.features(val_samples)
    sources = np.array([s.source for s in val_samples], object)
    if negatives:  # a gate with a head is also held to site views of validation images, each kind a group
        val_views = gate_views(val_samples, views, VAL_VIEW_SHARE)
        fit_val = np.concatenate([val_f, predictor.features(val_views)])
        groups = np.concatenate([sources, ["view:" + v.path.rsplit("#", 1)[1] for v in val_views]])
    else:
        fit_val, groups = val_f, sources
    det = fit_gate(fit_f, fit_val, groups, columns, quantile, negative_features=neg_f, c=head_c)
    val_scores = det.score(val_f)
    det.save(model_dir)
    n_views = {kind: sum(v.path.endswith(f"#{kind}") for v in extra) for kind in views}
    return {"n_fit": len(fit_f) - len(extra), "n_views": n_views, "n_val": len(val_f), "quantile": quantile,
            "n_negatives": 0 if neg_f is None else len(neg_f), "n_val_views": len(fit_val) - len(val_f),
            **({"negatives": _negatives_record(negs, pictures)} if negs else {}),
            "blocks": sorted(set(blocks)), **({"head_c": head_c} if negatives else {}),
            "threshold": det.threshold,
            "val_rejected": float((val_scores > det.threshold).mean()),
            "val_rejected_per_source": {str(n): float((val_scores[sources == n] > det.threshold).mean())
                                        for n in dict.fromkeys(sources.tolist())}}


def _negatives_record(negs: list, pictures: str | Path | None) -> dict:
    """How many negatives of each kind, and the files they were cut from, so a fit elsewhere can be compared."""
    record = {**Counter(n.source.removeprefix("negative:") for n in negs), "photo_files": len(package_photos())}
    if pictures is not None:
        record["picture_files"] = {k: len(v) for k, v in picture_sources(pictures).items()}
    return record


def refit_gate(model_dir: str | Path, train_samples, val_samples, seed: int | None = None, blocks=None,
               negatives: int | None = None, pictures: str | Path | None = None, head_c: float | None = None) -> dict:
    """Refit the gate of a trained model folder on ``train_samples`` (an equal share of each source, drawn with
    ``seed``) with its threshold on ``val_samples``, as ``train`` does, and record it in config.json's
    ``training.gate``. ``seed``, ``blocks`` (the stages it reads), ``negatives`` (how many non-lesion pictures its head
    is fitted on), ``pictures`` (a folder of them) and ``head_c`` (the head's penalty): None, as the model's recipe says
    (its folder of pictures must exist here); given, they are written into the recipe the folder records, so that the
    folder says how its gate was made and a later refit without them makes the same gate."""
    model_dir = Path(model_dir)
    train_samples = list(train_samples)
    recipe = ModelConfig.load(model_dir / "config.json").training.get("recipe") or {}
    given = {k: v for k, v in (("gate_blocks", None if blocks is None else sorted(set(blocks))),
                               ("gate_negatives", negatives),
                               ("gate_negative_pictures", None if pictures is None else str(Path(pictures).resolve())),
                               ("gate_head_c", head_c))
             if v is not None}
    recipe = {**recipe, **given}
    seed = recipe.get("seed", 42) if seed is None else seed
    result = fit_ood_for_model(model_dir, balanced_by_source(train_samples, GATE_FIT_IMAGES, seed),
                               list(val_samples), views=tuple(recipe.get("gate_views", GATE_VIEWS)),
                               blocks=recipe.get("gate_blocks", GATE_BLOCKS), negatives=recipe.get("gate_negatives", 0),
                               pictures=_recipe_pictures(recipe), head_c=recipe.get("gate_head_c", HEAD_C))
    return record_gate(model_dir, {**result, "seed": seed}, train_samples, given)


def _recipe_pictures(recipe: dict) -> Path | None:
    """The recipe's ``gate_negative_pictures``; a relative path is in the data root (where ``train`` found it,
    beside its data), :func:`melanoma.bench.data_root`."""
    from ..bench import data_root

    folder = recipe.get("gate_negative_pictures")
    return None if not folder else Path(folder) if Path(folder).is_absolute() else data_root() / folder


def record_gate(model_dir: str | Path, result: dict, train_samples, recipe_changes: dict | None = None) -> dict:
    """``fit_ood_for_model``'s result, with the sources it drew from, into config.json's ``training.gate``, and
    ``recipe_changes`` (the gate's settings a refit was given) into its ``training.recipe``."""
    result = {**result, "sources": sorted({str(s.source) for s in train_samples})}
    cfg_path = Path(model_dir) / "config.json"
    cfg = ModelConfig.load(cfg_path)
    cfg.training = {**cfg.training, "gate": result}
    if recipe_changes and "recipe" in cfg.training:
        cfg.training["recipe"] = {**cfg.training["recipe"], **recipe_changes}
        written = Path(model_dir) / "recipe.yaml"
        if written.is_file():  # the folder's whole recipe says so too, naming the changed fields in its header
            text = resolved_recipe_text(written, replace(load_recipe(written), **recipe_changes))
            atomic_write_text(written, text.replace("the command line's", "`melanoma calibrate --gate`'s", 1))
    cfg.save(cfg_path)
    write_checksums(model_dir)
    return result
