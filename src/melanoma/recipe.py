"""A training recipe: TrainConfig (with its augmentation, AugConfig), the one schema of every recipe file, command
line and Python call; checked before anything runs, read from YAML with ``base:`` chains.

Torch-free, so that a recipe can be loaded, validated and recorded where torch is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .ood import GATE_BLOCKS, GATE_VIEWS, HEAD_C, VIEWS
from .views import FAMILIES


@dataclass
class AugConfig:
    """Training augmentation; angles in degrees, zoom as a +/- fraction of size, colour as jitter strength."""

    rotation: float = 30.0
    hflip: bool = True
    vflip: bool = True
    zoom: float = 0.1
    shear: float = 5.0
    fill_mode: str = "reflect"  # "constant" (black), "reflect" or "nearest", as Keras' fill_mode
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    vignette: float = 0.0  # probability of a random dark circular frame, given to both classes alike
    vignette_min_darkness: float = 1.0  # darkness of that frame drawn from [this, 1]; 1: always black
    jpeg: float = 0.0  # probability of a JPEG re-compression at a random quality in [jpeg_quality_min, 95]
    jpeg_quality_min: int = 50
    # Probability of one site view (melanoma.views: zoom_out, grid, film, blur...), drawn from site_families, so a
    # lesion photographed another way reads as the same lesion (issue 34); a family left out stays a held-out test.
    site_views: float = 0.0
    site_families: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """A training recipe. ``lr`` is the peak learning rate of a cosine schedule with warm-up."""

    arch: str = "tf_efficientnet_lite0"
    pretrained: str = "imagenet"
    img_size: int = 224
    color_constancy: str | None = None  # "shades_of_grey", applied in training and at inference
    downscale_to: int | None = None  # px: shorter side shrunk to at most this first, in training and at inference
    freeze_blocks: int = 0  # EfficientNet: keep the stem and this many first blocks at ImageNet weights
    linear_probe: bool = False  # stage 1: fit the classifier on frozen pretrained features (LP-FT)
    ema_decay: float | None = None  # e.g. 0.995: validate, checkpoint and ship an exponential moving average
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # "adam" or "adamw"
    warmup_epochs: float = 0.3
    patience: int = 3  # epochs without a better validation ROC-AUC before stopping
    val_fraction: float = 0.1
    seed: int = 42
    target_sensitivity: float | None = 0.95  # threshold rule on validation data; None = Youden's J
    # Further sources trained on with ``data``: one duplicate graph over all of them, a validation split per
    # source, and no copy of any source's validation or test image trained on (melanoma.sources). A relative path
    # is beside ``data`` (the data root: [isic2017, ham10000] beside ../shared/data/melanoma_cancer_dataset).
    extra_train: list[str] = field(default_factory=list)
    # Train only on these sources' training images (names as in split.csv); validation keeps every source and the
    # split is the one all sources give, so a second stage (``pretrained``: the first stage's model folder, same
    # sources and seed) never trains on the first stage's validation images.
    train_sources: list[str] = field(default_factory=list)
    other_dx: str = "exclude"  # HAM10000's bcc/akiec: "exclude", "benign" or "malignant" (datasets.dx_label)
    balance: str = "none"  # "source_class": draw each source's classes equally often (sources.source_class_weights)
    # Logit adjustment by source (Menon et al. 2021, "Long-tail learning via logit adjustment"): the loss sees
    # logit + the image's source's melanoma log-odds (sources.source_log_odds), so the network need not learn
    # each archive's prevalence from how its images look; the bare logit, used at inference, then reads every
    # source on one scale, even odds, which is what lets one threshold serve them all.
    source_logit_adjustment: bool = False
    # Weight of an auxiliary cross-entropy on the diagnosis (datasets.DIAGNOSES) of the images whose data names one
    # (HAM10000, ISIC 2017): a second linear head on the pooled features, used in training only, so the features
    # learn melanoma against nevi *and* keratoses, dermatofibromas and vascular lesions, not against "benign" alone.
    # The model folder keeps the one melanoma logit. 0 = off.
    diagnosis_loss: float = 0.0
    # "melanoma": one logit, melanoma against benign. "diagnosis": one logit per diagnosis (diagnoses.DIAGNOSES),
    # trained on every image with the labels its data has: a named diagnosis, or a set (benign: any of the four
    # benign diagnoses; malignant: per ``malignant_means``) whose likelihood is the loss. Needs other_dx: malignant
    # (HAM10000's BCC and AK/IEC are trained on as themselves). The verdict is then decided on p(skin cancer).
    task: str = "melanoma"
    malignant_means: str = "cancer"  # a plain "malignant" label in the diagnosis task: "cancer" or "melanoma"
    # Sources pooled for the per-source threshold rule, e.g. [[ham10000, isic2017]]: a small archive's few
    # validation melanomas then count with a like archive's, instead of setting the lowest threshold alone.
    threshold_groups: list[list[str]] = field(default_factory=list)
    gate_blocks: list[int] = field(default_factory=lambda: list(GATE_BLOCKS))  # what the gate reads: ood.stage_columns
    gate_views: list[str] = field(default_factory=lambda: list(GATE_VIEWS))  # its fit images also seen so (ood.VIEWS)
    # non-lesion pictures (melanoma.negatives) the gate's lesion / non-lesion head is fitted on; 0: no head, the gate
    # is the distance alone (every gate before experiments/029-lesion-gate)
    gate_negatives: int = 0
    # the head's inverse L2 penalty (scikit-learn's C) over its standardised inputs: experiments/031's choose.py picks
    # it on a network's fit and validation data (each kind of negative and each source held out in turn)
    gate_head_c: float = HEAD_C
    # a folder of non-lesion pictures, one subfolder per source (tools/nonlesion_pictures.sh's DEST/fit): with
    # gate_negatives, a fourth kind of negative (melanoma.negatives); a relative path is beside ``data``, as
    # extra_train's. null: the three built-in kinds only.
    gate_negative_pictures: str | None = None
    # seven classes: the sources whose validation images fit the calibration's temperature and bias (all: empty), so
    # the differential carries a clinical mix of diagnoses rather than an archive's
    calibration_sources: list[str] = field(default_factory=list)
    # lesion-centred framing (melanoma.lesion_crop): a segmenter.onnx written by `melanoma segmenter` (a relative
    # path is beside ``data``); every training picture is cropped around its lesion after its site view, and the
    # model folder carries the segmenter, so calibration, the gate and every prediction crop the same way
    lesion_crop_segmenter: str | None = None
    lesion_crop_margin: float = 0.25  # the crop's margin each side, a share of the lesion's longer side
    group_duplicates: bool = True  # one source: keep each near-duplicate cluster on one side of train/val
    drop_test_duplicates: bool = False  # one source: leave out training images that have a copy in test
    num_workers: int = 2
    aug: AugConfig = field(default_factory=AugConfig)
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp; one process per device, launched by Lightning, torchrun or SLURM
    precision: str | None = None  # None: bf16-mixed on CUDA, 32 elsewhere
    fast_dev_run: bool = False


# (field, test, what it must be): every recipe, command line and Python call is checked against these before
# anything runs, so a typo'd value fails in a second with its name, not after an hour of training.
_RULES = [
    ("img_size", lambda v: v >= 32, "at least 32"), ("epochs", lambda v: v >= 1, "at least 1"),
    ("batch_size", lambda v: v >= 2, "at least 2"), ("lr", lambda v: 0 < v < 1, "in (0, 1)"),
    ("weight_decay", lambda v: v >= 0, ">= 0"), ("warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("patience", lambda v: v >= 0, ">= 0"), ("val_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("freeze_blocks", lambda v: v >= 0, ">= 0"), ("num_workers", lambda v: v >= 0, ">= 0"),
    ("optimizer", lambda v: v in ("adam", "adamw"), "adam or adamw"),
    ("other_dx", lambda v: v in ("exclude", "benign", "malignant"), "exclude, benign or malignant"),
    ("balance", lambda v: v in ("none", "source_class"), "none or source_class"),
    ("diagnosis_loss", lambda v: v >= 0, ">= 0"),
    ("task", lambda v: v in ("melanoma", "diagnosis"), "melanoma or diagnosis"),
    ("malignant_means", lambda v: v in ("cancer", "melanoma"), "cancer or melanoma"),
    ("ema_decay", lambda v: v is None or 0 < v < 1, "strictly between 0 and 1"),
    ("target_sensitivity", lambda v: v is None or 0 < v <= 1, "in (0, 1], or null for Youden's J"),
    ("color_constancy", lambda v: v in (None, "shades_of_grey"), "shades_of_grey or null"),
    ("downscale_to", lambda v: v is None or v >= 32, "at least 32 (pixels), or null"),
    ("gate_views", lambda v: set(v) <= set(VIEWS), f"some of {', '.join(VIEWS)}"),
    ("gate_negatives", lambda v: v == 0 or v >= 30, "0 (no head) or at least 30"),
    ("gate_head_c", lambda v: v > 0, "a positive number"),
    ("gate_blocks", lambda v: len(v) > 0 and set(v) <= set(GATE_BLOCKS), f"some of the stages {GATE_BLOCKS}"),
    ("pretrained", lambda v: v in ("imagenet", "none") or Path(v).is_dir(), "imagenet, none or a model folder"),
    ("lesion_crop_margin", lambda v: v >= 0, ">= 0"),
]
_AUG_RULES = [
    ("rotation", lambda v: 0 <= v <= 180, "in [0, 180] degrees"), ("zoom", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("shear", lambda v: 0 <= v <= 45, "in [0, 45] degrees"),
    ("fill_mode", lambda v: v in ("constant", "reflect", "nearest"), "constant, reflect or nearest"),
    *[(k, lambda v: 0 <= v <= 1, "in [0, 1]") for k in ("brightness", "contrast", "saturation", "vignette",
                                                          "vignette_min_darkness", "jpeg", "site_views")],
    ("site_families", lambda v: set(v) <= set(FAMILIES), f"some of {', '.join(FAMILIES)}"),
    ("hue", lambda v: 0 <= v <= 0.5, "in [0, 0.5]"), ("jpeg_quality_min", lambda v: 1 <= v <= 95, "in [1, 95]"),
]


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ValueError naming the first field whose value is out of range; returns ``cfg``."""
    for obj, rules, prefix in ((cfg, _RULES, ""), (cfg.aug, _AUG_RULES, "aug.")):
        for name, ok, must in rules:
            value = getattr(obj, name)
            try:
                good = ok(value)
            except TypeError:
                good = False
            if not good:
                raise ValueError(f"{prefix}{name} must be {must} (got {value!r})")
    if cfg.train_sources and not cfg.extra_train:
        raise ValueError("train_sources needs several sources (extra_train)")
    if cfg.source_logit_adjustment and not cfg.extra_train:
        raise ValueError("source_logit_adjustment needs several sources (extra_train)")
    if cfg.threshold_groups and not cfg.extra_train:
        raise ValueError("threshold_groups needs several sources (extra_train)")
    if cfg.aug.site_views > 0 and not cfg.aug.site_families:
        raise ValueError("aug.site_views > 0 needs aug.site_families: which views to draw from")
    if cfg.calibration_sources and cfg.task != "diagnosis":
        raise ValueError("calibration_sources chooses where a seven-class model's bias is fitted: it needs task: "
                         "diagnosis")
    if cfg.task == "diagnosis" and cfg.other_dx != "malignant":
        raise ValueError("task: diagnosis trains BCC and AK/IEC as themselves, so other_dx must be malignant "
                         f"(got {cfg.other_dx!r})")
    if cfg.task == "diagnosis" and (cfg.diagnosis_loss or cfg.linear_probe or cfg.balance != "none"):
        raise ValueError("task: diagnosis replaces diagnosis_loss and handles imbalance by source_logit_adjustment; "
                         "linear_probe and balance are for the melanoma task")
    names = [n for g in cfg.threshold_groups for n in g]
    if any(not isinstance(g, list) or len(g) < 2 for g in cfg.threshold_groups) or len(names) != len(set(names)):
        raise ValueError(f"threshold_groups must be lists of two or more sources, each source in one group at most "
                         f"(got {cfg.threshold_groups!r})")
    return cfg


# Command-line options that set more than the TrainConfig field of their name.
SHORTHANDS = {"flips": ("aug.hflip", "aug.vflip"), "color": ("aug.brightness", "aug.contrast", "aug.saturation"),
              **{k: (f"aug.{k}",) for k in ("rotation", "zoom", "shear", "fill_mode", "vignette")}}


def as_named(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its paths as a recipe names them, wherever the run was: sources by folder name, the gate's
    pictures and the segmenter by their last two path parts (a run may have recorded its sources from the working
    directory; a gate refit records the folder of pictures it was given, absolute). Two runs of one recipe compare
    equal so."""
    pictures = cfg.gate_negative_pictures and "/".join(Path(cfg.gate_negative_pictures).parts[-2:])
    segmenter = cfg.lesion_crop_segmenter and "/".join(Path(cfg.lesion_crop_segmenter).parts[-2:])
    return replace(cfg, extra_train=[Path(p).name for p in cfg.extra_train], gate_negative_pictures=pictures,
                   lesion_crop_segmenter=segmenter)


def beside(data: str | Path, path: str | Path) -> Path:
    """A recipe's path (``extra_train``) as a path: relative ones are in the folder that holds ``data``."""
    return Path(path) if Path(path).is_absolute() else Path(data).parent / path


def read_yaml(text: str):
    """YAML as a recipe means it: PyYAML follows YAML 1.1, which reads ``1e-3`` as a string (it wants ``1.0e-3``);
    this loader also reads an exponent without a dot as a float, as YAML 1.2 does, in a recipe file and in ``--set``."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))
    return yaml.load(text, Loader=Loader)  # a SafeLoader with one resolver more


def parse_overrides(items: list[str]) -> dict:
    """``["epochs=5", "aug.zoom=0.2", "extra_train=[a, b]"]`` -> {name: value}, each value read as YAML (so numbers,
    booleans, null and lists mean what they say); the names are checked by :func:`apply_overrides`."""
    import yaml

    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. epochs=5")
        try:
            out[name.strip()] = read_yaml(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({e.problem})") from e
    return out


def settable_fields() -> dict[str, object]:
    """Every name ``--set`` / :func:`apply_overrides` takes, with TrainConfig's default (``aug.x`` for augmentation)."""
    top, aug = TrainConfig(), AugConfig()
    return {**{f.name: getattr(top, f.name) for f in fields(TrainConfig) if f.name != "aug"},
            **{f"aug.{f.name}": getattr(aug, f.name) for f in fields(AugConfig)}}


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """``cfg`` with ``overrides`` ({field or shorthand: value}; ``aug.x`` for augmentation) applied, validated.
    Unknown names are errors that name themselves."""
    top, aug = {}, {}
    for name, value in overrides.items():
        if name.startswith("aug.") and name.count(".") == 1:
            aug[name.removeprefix("aug.")] = value
            continue
        for target in SHORTHANDS.get(name, (name,)):
            (aug if target.startswith("aug.") else top)[target.removeprefix("aug.")] = value
        if name == "color":
            aug["hue"] = value / 5
    known, aug_known = {f.name for f in fields(TrainConfig)} - {"aug"}, {f.name for f in fields(AugConfig)}
    if bad := sorted(set(top) - known) + sorted(f"aug.{k}" for k in set(aug) - aug_known):
        raise ValueError(f"unknown training option {bad[0]!r}")
    return validate(replace(cfg, **top, aug=replace(cfg.aug, **aug)))


def _read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict:

    path = path.resolve()
    if path in seen:
        raise ValueError(f"recipe {path.name}: its base chain loops back to itself")
    raw = read_yaml(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {path.name}: a recipe is a mapping of TrainConfig fields")
    raw.pop("notes", None)  # free text for the reader
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_recipe(path.parent / base, (*seen, path))
    aug = {**(merged.pop("aug", None) or {}), **(raw.pop("aug", None) or {})}
    return {**merged, **raw, "aug": aug}


def load_recipe(path: str | Path) -> TrainConfig:
    """A YAML file of TrainConfig fields (``aug:`` as a mapping) -> TrainConfig; unknown keys are errors.

    ``base: OTHER.yaml`` (relative to the file) starts from that recipe: the file then lists only what changed,
    as an experiment should; ``aug`` entries override one by one."""
    raw = _read_recipe(Path(path))
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"recipe {Path(path).name}: unknown key {unknown[0]!r} (TrainConfig fields: "
                         f"{', '.join(sorted(known))})")
    aug_raw = raw.pop("aug", None) or {}
    aug_known = {f.name for f in fields(AugConfig)}
    if bad := sorted(set(aug_raw) - aug_known):
        raise ValueError(f"recipe {Path(path).name}: unknown aug key {bad[0]!r} "
                         f"(known: {', '.join(sorted(aug_known))})")
    return validate(TrainConfig(**raw, aug=AugConfig(**aug_raw)))


def resolved_recipe_text(path: str | Path, trained: TrainConfig | None = None) -> str:
    """The recipe at ``path`` with its ``base`` chain merged in: what travels with the model it made, whole.
    With ``trained`` (the config the run used, command-line options applied), every field where that differs from
    the file is written too, and named in the header: the model folder's recipe reproduces the run, not the file."""
    import yaml

    path = Path(path)
    notes = (yaml.safe_load(path.read_text()) or {}).get("notes")
    body = _read_recipe(path)
    changed = []
    if trained is not None:
        as_file = load_recipe(path)
        for name, ours, theirs, into in (
                *((f.name, getattr(trained, f.name), getattr(as_file, f.name), body) for f in fields(TrainConfig)
                  if f.name != "aug"),
                *((f"aug.{f.name}", getattr(trained.aug, f.name), getattr(as_file.aug, f.name),
                   body.setdefault("aug", {})) for f in fields(AugConfig))):
            if ours != theirs:
                into[name.removeprefix("aug.")] = list(ours) if isinstance(ours, tuple) else ours
                changed.append(name)
    head = f"# {path.name}, its base recipes merged in (melanoma.recipe.resolved_recipe_text)\n"
    if changed:
        head += f"# and the command line's {', '.join(changed)}\n"
    return head + yaml.safe_dump({**({"notes": notes} if notes else {}), **body}, sort_keys=False, width=110)
