"""The "cannot assess" gate: is this input a dermoscopic lesion image like the ones the model knows?

The score of an image is how far its CNN features lie from those of training images: a Mahalanobis
distance inside the top principal components plus the share of the feature vector outside them (Lee et
al. 2018's feature-space detector, in a low-rank form that 2,000 images can estimate). The features
are the globally pooled outputs of four middle-to-late stages (EfficientNet blocks 3-6; another family's per
melanoma.backbones), each dimension standardised: the final pooled features (the classifier's input) let most cat
photos, screenshots and charts through, because fine-tuning keeps only what tells benign from malignant, while the
intermediate stages still describe what the image is (docs/results.md, "Inference, the gate and Grad-CAM"). Cats,
screenshots, charts and landscapes land far away. Blank and single-colour images are refused outright: they have
no lesion to assess.

The threshold is a high quantile of the scores of held-out lesion images (validation split), so the
expected false rejection rate on lesions is known by construction.

A distance learns from lesions only; optionally (recipe ``gate_negatives``) a lesion / non-lesion head fitted on
non-lesion pictures (:mod:`melanoma.negatives`) joins it (:class:`OODDetector`'s ``head``; experiments/029).

Some archives photograph through a contact dermatoscope's round field (a black frame around a disc), others
fill the frame; a gate fitted only on the second kind refuses the first. So the fit set also sees a share of its
images through a synthetic field (:func:`gate_views`; experiments/011-gate-field, 014-gate-views).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .views import FAMILIES as SITE_FAMILIES
from .views import view as site_view

OOD_FILE = "ood.safetensors"
# The labels of the four stages whose pooled outputs the engines give the gate, concatenated: EfficientNet's block
# numbers; another backbone family's four stages take the same labels, in order (melanoma.backbones.GATE_STAGES).
GATE_BLOCKS = (3, 4, 5, 6)
FLAT_STD = 0.02  # grey-level std (0-1) under which an image is called blank / single-colour
FIELD_SHARE = 0.5  # of the gate's fit images, also seen through a synthetic dermatoscope field
FIELD_RADIUS = (0.42, 0.65)  # the field's radius, in units of the image's shorter side
FIELD_MAX_SIDE = 448  # px: views are made (and held in memory) at most this large; the model sees 224-300
GATE_VIEWS = ("field",)  # the views the gate's fit images are also seen through (gate_views)
HEAD_C = 1.0  # the head's inverse L2 penalty (scikit-learn's C) over its standardised inputs (experiments/029)


class OODDetector:
    """Scores (N, D) feature vectors; larger = less like the training lesions. ``columns``: the indices of the D
    features it reads (:func:`stage_columns`; None: all, as every gate fitted before experiments/021-gate-block).

    ``head`` (optional; experiments/029-lesion-gate): a lesion / non-lesion logistic regression over all D features
    (standardised by ``head["mean"]``, ``head["scale"]``) and the log distance, ``head["weights"]`` with the bias
    last. With it the score is the larger of the two parts, each past its own validation threshold
    (``head["norms"]``): log(distance / norm) and logit - norm, so a picture is refused when it is far from every
    lesion the gate saw, or near them and still more like the non-lesions."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, variances: np.ndarray, residual_scale: float,
                 threshold: float, scale: np.ndarray | None = None, columns: np.ndarray | None = None,
                 head: dict[str, np.ndarray] | None = None):
        self.mean, self.components, self.variances = mean, components, variances
        self.scale = np.ones_like(mean) if scale is None else scale  # per-dimension std of the fit features
        self.residual_scale, self.threshold, self.columns = residual_scale, threshold, columns
        self.head = head

    @classmethod
    def fit(cls, features: np.ndarray, k: int = 64, columns: np.ndarray | None = None) -> OODDetector:
        from sklearn.decomposition import PCA

        features = features if columns is None else features[:, columns]
        scale = features.std(axis=0) + 1e-6
        features = features / scale
        k = min(k, len(features) - 1, features.shape[1])
        pca = PCA(n_components=k, random_state=0).fit(features)
        det = cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                  pca.explained_variance_.astype(np.float32), 1.0, float("inf"), scale.astype(np.float32), columns)
        det.residual_scale = float(np.mean(det._parts(features)[1])) or 1.0
        return det

    def _parts(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centred = f - self.mean
        proj = centred @ self.components.T
        inside = (proj**2 / self.variances).mean(axis=1)
        residual = (centred**2).sum(axis=1) - (proj**2).sum(axis=1)
        return inside, np.maximum(residual, 0)

    def distance(self, f: np.ndarray) -> np.ndarray:
        """The feature-space distance from the fit lesions (the whole score of a gate without a head)."""
        f = np.asarray(f, np.float32)
        inside, residual = self._parts((f if self.columns is None else f[:, self.columns]) / self.scale)
        return inside + residual / self.residual_scale

    def head_logit(self, f: np.ndarray) -> np.ndarray:
        """The head's log-odds of "not a lesion"."""
        f = np.asarray(f, np.float32)
        z = np.column_stack([(f - self.head["mean"]) / self.head["scale"], np.log1p(self.distance(f))])
        return z @ self.head["weights"][:-1] + self.head["weights"][-1]

    def score(self, f: np.ndarray) -> np.ndarray:
        """Larger = less like a lesion: the distance; with a head, the larger part past its norm."""
        if self.head is None:
            return self.distance(f)
        norm_distance, norm_logit = self.head["norms"]
        return np.maximum(np.log(np.maximum(self.distance(f), 1e-12) / norm_distance),
                          self.head_logit(f) - norm_logit)

    def fit_head(self, lesions: np.ndarray, others: np.ndarray, val: np.ndarray, val_groups,
                 c: float = HEAD_C, quantile: float = 0.995) -> OODDetector:
        """Fit the head: a logistic regression of "not a lesion" on the standardised features and the log distance,
        ``lesions`` and ``others`` (features of non-lesion pictures, :mod:`melanoma.negatives`) weighted to equal
        shares; each part's norm is :func:`gate_threshold` of its scores on ``val`` (grouped by ``val_groups``)."""
        from sklearn.linear_model import LogisticRegression

        lesions, others = np.asarray(lesions, np.float32), np.asarray(others, np.float32)
        self.head = {"mean": lesions.mean(axis=0), "scale": lesions.std(axis=0) + 1e-6}
        x = np.concatenate([lesions, others])
        z = np.column_stack([(x - self.head["mean"]) / self.head["scale"], np.log1p(self.distance(x))])
        y = np.r_[np.zeros(len(lesions)), np.ones(len(others))]
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(z, y)
        self.head["weights"] = np.r_[lr.coef_[0], lr.intercept_].astype(np.float32)
        self.head["norms"] = np.array([gate_threshold(self.distance(val), val_groups, quantile),
                                       gate_threshold(self.head_logit(val), val_groups, quantile)], np.float32)
        return self

    def save(self, model_dir: Path) -> None:
        from safetensors.numpy import save

        from .config import atomic_write_bytes, write_checksums

        # safetensors writes raw buffers: Fortran-ordered arrays (PCA's) must be made C-contiguous
        data = {k: np.ascontiguousarray(v) for k, v in
                {"mean": self.mean, "components": self.components, "variances": self.variances,
                 "scale": self.scale}.items()}
        data |= {"residual_scale": np.array([self.residual_scale], np.float32),
                 "threshold": np.array([self.threshold], np.float32)}
        if self.columns is not None:
            data["columns"] = np.asarray(self.columns, np.int64)
        data |= {f"head_{k}": np.ascontiguousarray(v, np.float32) for k, v in (self.head or {}).items()}
        atomic_write_bytes(model_dir / OOD_FILE, save(data))
        write_checksums(model_dir)

    @classmethod
    def load(cls, model_dir: Path) -> OODDetector | None:
        from safetensors.numpy import load_file

        path = Path(model_dir) / OOD_FILE
        if not path.is_file():
            return None
        d = load_file(path)
        return cls(d["mean"], d["components"], d["variances"], float(d["residual_scale"][0]),
                   float(d["threshold"][0]), d.get("scale"), d.get("columns"),
                   {k.removeprefix("head_"): v for k, v in d.items() if k.startswith("head_")} or None)


def stage_columns(widths, blocks) -> np.ndarray | None:
    """The indices, in the gate features (:data:`GATE_BLOCKS`' pooled outputs concatenated, ``widths`` their channel
    counts), of ``blocks``' outputs; None for all of them. Which stages a gate reads is a fit choice, not a
    default, because no choice won on every network (experiments/021-gate-block)."""
    blocks = tuple(sorted(set(blocks)))
    if not blocks or not set(blocks) <= set(GATE_BLOCKS):
        raise ValueError(f"gate blocks must be some of {', '.join(map(str, GATE_BLOCKS))} (got {list(blocks)})")
    if blocks == GATE_BLOCKS:
        return None
    starts = np.cumsum([0, *widths])
    return np.concatenate([np.arange(starts[i], starts[i + 1]) for i, b in enumerate(GATE_BLOCKS) if b in blocks])


def dermatoscope_field(image, rng: np.random.Generator):
    """The PIL image as seen through a contact dermatoscope: inside a soft-edged disc of random radius and
    slightly off-centre, black outside (clipped by the image's edges when the disc is larger than it)."""
    from PIL import Image

    w, h = image.size
    side = min(w, h)
    r = rng.uniform(*FIELD_RADIUS) * side
    cx, cy = (w / 2, h / 2) + rng.uniform(-0.05, 0.05, 2) * side
    yy, xx = np.ogrid[:h, :w]
    inside = np.clip((r - np.hypot(xx - cx, yy - cy)) / (0.04 * side), 0, 1)  # a 4%-of-side soft edge
    return Image.fromarray((np.asarray(image, np.float32) * inside[..., None]).astype(np.uint8))


def _site_view(family: str):
    def apply(image, rng: np.random.Generator):
        return site_view(image, family, rng, max_side=FIELD_MAX_SIDE)
    return apply


# the gate's views: a dermatoscope field (the default; the gates fitted so far drew it, so it keeps its name and random
# stream rather than melanoma.views' round field), and any other site view (melanoma.views: zoom-out, grid...)
VIEWS = {**{family: _site_view(family) for family in SITE_FAMILIES}, "field": dermatoscope_field}


def gate_views(samples, kinds: tuple[str, ...] = GATE_VIEWS, share: float = FIELD_SHARE, seed: int = 0) -> list:
    """The first ``share`` of each source's ``samples`` (Sample or InMemory) seen once through each of ``kinds``
    (names in :data:`VIEWS`), as InMemory images with the same label and source, path ``<path>#<kind>``; an
    unreadable image has no view (the gate's fit skips it too)."""
    from .imaging import ImageError, InMemory, load_any

    unknown = set(kinds) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown gate view(s) {sorted(unknown)}; known: {', '.join(VIEWS)}")
    by_source: dict[str, list] = {}
    for s in samples:
        by_source.setdefault(s.source, []).append(s)
    chosen = [s for items in by_source.values() for s in items[: round(share * len(items))]]
    rng = np.random.default_rng(seed)
    views = []
    for kind in kinds:  # kind by kind: ("field",) draws the same stream as the gates fitted before 014
        for s in chosen:
            try:
                image = load_any(s, FIELD_MAX_SIDE)
            except ImageError:
                continue
            image.thumbnail((FIELD_MAX_SIDE, FIELD_MAX_SIDE))
            views.append(InMemory(f"{s.path}#{kind}", VIEWS[kind](image, rng), s.label, s.source))
    return views


def is_flat(x, mean, std) -> np.ndarray:
    """(N, 3, H, W) normalised batch (numpy or CPU torch) -> (N,) bool: the image is (nearly) one colour."""
    # The grey level is mean_c(x_c std_c + mean_c); the constant mean_c cannot change a spread, so one
    # weighted sum over channels gives the same std in a fifth of the time (no un-normalised copy).
    grey = np.einsum("nchw,c->nhw", np.asarray(x, dtype=np.float32), np.asarray(std, np.float32) / 3)
    return grey.reshape(len(grey), -1).std(axis=1) < FLAT_STD


def fit_gate(fit_features: np.ndarray, val_features: np.ndarray, val_sources, columns: np.ndarray | None = None,
             quantile: float = 0.995, negative_features: np.ndarray | None = None, c: float = HEAD_C) -> OODDetector:
    """The gate, fitted: the detector on ``fit_features`` (training images and their views), with
    ``negative_features`` (non-lesion pictures) also its lesion / non-lesion head, its threshold by
    :func:`gate_threshold` on the validation images' scores (``val_sources`` groups them: a gate with a head is
    also held to its validation images' site views, each kind a group). What ``train``, ``calibrate --gate`` and
    ``benchmarks/gate_sources.py`` all call."""
    det = OODDetector.fit(np.asarray(fit_features), columns=columns)
    if negative_features is not None and len(negative_features):
        det.fit_head(fit_features, negative_features, val_features, val_sources, c, quantile)
    det.threshold = gate_threshold(det.score(np.asarray(val_features)), val_sources, quantile)
    return det


def gate_threshold(scores: np.ndarray, sources, quantile: float = 0.995) -> float:
    """The highest of the per-source ``quantile`` of validation scores: then no source of the validation
    images has more than 1 - ``quantile`` of its lesions refused, however small its share of the pool."""
    scores, sources = np.asarray(scores, float), np.asarray(sources, object)
    return max(float(np.quantile(scores[sources == name], quantile)) for name in dict.fromkeys(sources.tolist()))
