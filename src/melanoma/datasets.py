"""Dataset discovery and splits, torch-free (predict, evaluate, audit and eda use it without torch).

Layouts (label 1 = malignant, i.e. melanoma):
  * ``ROOT/{train,val,test}/{benign,malignant}/*`` (Kaggle "Melanoma Cancer Dataset"; any letter case)
  * ``ROOT/{benign,malignant}/*`` (all of it is one split, called ``all``)
  * ISIC ground-truth CSVs (``image_id,melanoma,...``) with images ``<image_id>.jpg`` under ROOT; ROOT may
    be the CSV itself. The split is taken from the CSV's name (``Training`` -> train, ``Validation`` -> val,
    ``Test`` -> test), e.g. ISIC 2017 and the ISIC 2018 Task 3 test set.
  * one-hot ground truth (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``, the ISIC 2018 Task 3 layout): every image
    names its diagnosis; label 1 = melanoma. A folder holding it and a melanoma-only CSV of the same images reads
    each image once, with its diagnosis.
  * HAM10000: a metadata CSV (``lesion_id,image_id,dx,...``) with images under ROOT; one split ``all``. The
    diagnosis decides the label by :data:`DX_LABELS`; see :func:`dx_label` for ``bcc`` and ``akiec``.

Every :class:`Sample` knows its ``source`` (the dataset folder's name) and, where the data says so, the lesion
it shows (``group``), so splits keep a lesion's images together and evaluation can report per source.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

from PIL import Image

from .config import CLASS_NAMES, atomic_write_text
from .diagnoses import DIAGNOSES
from .imaging import Sample, find_images, open_rgb

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}

# HAM10000's diagnoses: melanoma is the positive class; nevi, benign keratoses, dermatofibromas and vascular
# lesions are benign. Basal cell carcinoma and actinic keratosis / Bowen's disease are neither melanoma nor
# harmless: by default they are left out of training and of HAM10000's own validation numbers (the card says so).
DX_LABELS = {"mel": 1, "nv": 0, "bkl": 0, "df": 0, "vasc": 0}
OTHER_DX = ("bcc", "akiec")
OTHER_DX_RULES = ("exclude", "benign", "malignant")
ONE_HOT_ID = "image"  # the one-hot layout's image column; its diagnosis columns are DIAGNOSES in capitals


class DatasetError(ValueError):
    """A dataset folder or CSV that cannot be read as one of the supported layouts."""


def source_name(root: str | Path) -> str:
    """The name a dataset's images carry as their ``source``: its folder's name (a CSV's parent folder)."""
    root = Path(root)
    return (root.parent if root.suffix.lower() == ".csv" else root).resolve().name.lower()


def dx_label(dx: str, other_dx: str = "exclude") -> int | None:
    """Label of a HAM10000 diagnosis; ``None``: left out. ``other_dx`` decides bcc/akiec: "exclude" (default),
    "benign" (melanoma-or-not, as the ISIC 2018 Task 3 labels count them) or "malignant"."""
    if other_dx not in OTHER_DX_RULES:
        raise DatasetError(f"other_dx must be one of {', '.join(OTHER_DX_RULES)} (got {other_dx!r})")
    if dx in DX_LABELS:
        return DX_LABELS[dx]
    if dx in OTHER_DX:
        return None if other_dx == "exclude" else int(other_dx == "malignant")
    raise DatasetError(f"unknown HAM10000 diagnosis {dx!r} (known: {', '.join([*DX_LABELS, *OTHER_DX])})")


def _class_dirs(folder: Path) -> dict[int, Path]:
    found = {}
    for d in folder.iterdir():
        if d.is_dir() and d.name.lower() in CLASS_NAMES:
            found[CLASS_NAMES.index(d.name.lower())] = d
    return found


def _samples_from_class_dirs(dirs: dict[int, Path], source: str) -> list[Sample]:
    return [Sample(p, label, source) for label, d in sorted(dirs.items()) for p in find_images(d)]


def _split_from_name(name: str) -> str:
    lowered = name.lower()
    for alias in ("validation", "valid", "training", "train", "testing", "test"):
        if alias in lowered:
            return SPLIT_ALIASES[alias]
    return "all"


def _csv_rows(csv_path: Path, image_root: Path, label_of, source: str) -> list[Sample]:
    """Samples for the rows of a CSV; ``label_of(row)`` -> (label or None to leave out, group, diagnosis)."""
    index = {p.stem: p for p in find_images(image_root)}
    samples, missing = [], []
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            label, group, dx = label_of(row)
            if label is None:
                continue
            image_id = row.get("image_id") or row[ONE_HOT_ID]
            path = index.get(image_id)
            if path is None:
                missing.append(image_id)
                continue
            samples.append(Sample(path, label, source, group, dx))
    if missing:
        warnings.warn(f"{csv_path.name}: {len(missing)} listed images not found under {image_root} "
                      f"(first: {missing[0]}); they are left out", stacklevel=3)
    return samples


def _samples_from_csv(csv_path: Path, image_root: Path, source: str, other_dx: str = "exclude") -> list[Sample]:
    header = _csv_header(csv_path)
    if _is_ham_csv(header):
        return _csv_rows(csv_path, image_root,
                         lambda r: (dx_label(r["dx"], other_dx), r["lesion_id"], r["dx"]), source)
    if _is_one_hot_csv(header):
        return _csv_rows(csv_path, image_root, _one_hot_label, source)
    if not {"image_id", "melanoma"} <= header:
        raise DatasetError(f"{csv_path}: expected columns image_id,melanoma, lesion_id,image_id,dx or "
                           f"image,{','.join(d.upper() for d in DIAGNOSES)} (got {sorted(header)})")
    return _csv_rows(csv_path, image_root, lambda r: _isic_label(r, header), source)


def _isic_label(row: dict, header: set[str]) -> tuple[int, str, str]:
    """(label, group, diagnosis) of an ISIC ground-truth row. With a ``seborrheic_keratosis`` column (ISIC 2017's
    three classes) every row has a diagnosis; with ``melanoma`` alone only the melanomas do."""
    melanoma = float(row["melanoma"]) >= 0.5
    if melanoma:
        return 1, "", "mel"
    if "seborrheic_keratosis" in header:
        return 0, "", "bkl" if float(row["seborrheic_keratosis"]) >= 0.5 else "nv"
    return 0, "", ""


def _one_hot_label(row: dict) -> tuple[int, str, str]:
    named = [d for d in DIAGNOSES if float(row[d.upper()]) >= 0.5]
    if len(named) != 1:
        raise DatasetError(f"image {row[ONE_HOT_ID]}: a one-hot row names {len(named)} diagnoses, not one")
    return int(named[0] == "mel"), "", named[0]


def _is_one_hot_csv(header: set[str]) -> bool:
    return {ONE_HOT_ID, *(d.upper() for d in DIAGNOSES)} <= header


def _csv_header(path: Path) -> set[str]:
    with path.open(newline="") as f:
        return set(next(csv.reader(f), []))


def _is_ham_csv(header: set[str]) -> bool:
    return {"lesion_id", "image_id", "dx"} <= header


def _is_label_csv(path: Path) -> bool:
    header = _csv_header(path)
    return {"image_id", "melanoma"} <= header or _is_ham_csv(header) or _is_one_hot_csv(header)


def discover(root: str | Path, other_dx: str = "exclude") -> dict[str, list[Sample]]:
    """Find the labelled images under ``root``; returns ``{split: [Sample, ...]}``.

    ``root`` may also be a run's ``split.csv`` (its train and val lists, see :func:`write_split`), so a
    run's validation images can be evaluated, calibrated on or audited by name. ``other_dx``: HAM10000's
    bcc/akiec rule (:func:`dx_label`). Raises DatasetError with the reason when ``root`` matches no layout.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    source = source_name(root)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root}: a dataset is a folder, a ground-truth CSV or a run's split.csv")
        if {"split", "label", "path"} <= _csv_header(root):
            return read_split(root)
        return {_split_from_name(root.stem): _samples_from_csv(root, root.parent, source, other_dx)}

    splits: dict[str, list[Sample]] = {}
    for d in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(d.name.lower())
        if d.is_dir() and split and (dirs := _class_dirs(d)):
            splits[split] = splits.get(split, []) + _samples_from_class_dirs(dirs, source)
    if not splits and (dirs := _class_dirs(root)):
        splits["all"] = _samples_from_class_dirs(dirs, source)
    if not splits:
        for csv_path in sorted(root.glob("*.csv")):
            if _is_label_csv(csv_path):
                split = "all" if _is_ham_csv(_csv_header(csv_path)) else _split_from_name(csv_path.stem)
                splits[split] = splits.get(split, []) + _samples_from_csv(csv_path, root, source, other_dx)
        splits = {name: _one_per_image(samples) for name, samples in splits.items()}
    if not splits:
        entries = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "nothing"
        raise DatasetError(
            f"{root}: no dataset found. Expected train/ and test/ with Benign/ and Malignant/ folders, "
            f"Benign/ and Malignant/ folders directly, an ISIC ground-truth CSV or a HAM10000 metadata CSV. "
            f"Found: {entries}")
    for split, samples in splits.items():
        if not samples:
            raise DatasetError(f"{root}: split '{split}' has no images")
    return splits


def _one_per_image(samples: list[Sample]) -> list[Sample]:
    """Each image once, the row naming its diagnosis first (two CSVs may label the same images: the ISIC 2018 test's
    melanoma-only and one-hot files). Rows that disagree on the label are an error, not a silent choice."""
    by_path: dict[Path, Sample] = {}
    for s in samples:
        seen = by_path.get(s.path)
        if seen is not None and seen.label != s.label:
            raise DatasetError(f"{s.path.name}: labelled {seen.label} and {s.label} by two ground-truth files")
        if seen is None or (s.dx and not seen.dx):
            by_path[s.path] = s
    return list(by_path.values())


def select_split(splits: dict[str, list[Sample]], split: str) -> list[Sample]:
    """One split by name; a dataset with a single split ``all`` serves every name."""
    if split in splits:
        return splits[split]
    if list(splits) == ["all"]:
        return splits["all"]
    raise DatasetError(f"split '{split}' not found; the dataset has: {', '.join(splits)}")


def make_train_val(splits: dict[str, list[Sample]], val_fraction: float = 0.1, seed: int = 42,
                   groups: dict[str, int] | None = None) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples: the dataset's own ``val`` split when it has one, else a
    stratified, seeded ``val_fraction`` of ``train`` (or of ``all``). Test images are never used.

    With ``groups`` (path -> duplicate-cluster id, from the audit) whole clusters go to one side, so
    no near-duplicate of a validation image is trained on.
    """
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    pool = splits.get("train") or splits.get("all")
    if not pool:
        raise DatasetError(f"no training split; the dataset has: {', '.join(splits)}")
    if "val" in splits:
        return pool, splits["val"]
    labels = [s.label for s in pool]
    if min(labels.count(0), labels.count(1)) < 2:
        raise DatasetError("training data needs at least 2 images of each class")
    if groups is None:
        n_val = max(2, round(val_fraction * len(pool)))
        train, val = train_test_split(pool, test_size=n_val, stratify=labels, random_state=seed)
    else:
        ids = [groups.get(str(s.path), -1 - i) for i, s in enumerate(pool)]  # unaudited: own group
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / val_fraction)), shuffle=True, random_state=seed)
        train_idx, val_idx = next(folds.split(pool, labels, ids))
        train, val = [pool[i] for i in train_idx], [pool[i] for i in val_idx]
    return sorted(train, key=lambda s: str(s.path)), sorted(val, key=lambda s: str(s.path))


SPLIT_COLUMNS = ("split", "label", "path", "source", "group", "dx")


def write_split(path: Path, parts: dict[str, list[Sample]]) -> str:
    """Write ``split,label,path,source,group,dx`` rows to ``path``; returns the sha256 of that file's content."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SPLIT_COLUMNS)
    w.writerows([name, s.label, s.path, s.source, s.group, s.dx] for name, samples in parts.items() for s in samples)
    text = buf.getvalue()
    atomic_write_text(path, text)
    return hashlib.sha256(text.encode()).hexdigest()


def read_split(path: str | Path) -> dict[str, list[Sample]]:
    """The file written by :func:`write_split`, back as ``{split: samples}`` (older files lack source/group/dx)."""
    out: dict[str, list[Sample]] = {}
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["split"], []).append(
                Sample(Path(row["path"]), int(row["label"]), row.get("source") or "", row.get("group") or "",
                       row.get("dx") or ""))
    return out


def load_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Any supported image file as RGB (see :mod:`melanoma.imaging`); raises ImageError (a ValueError)."""
    return open_rgb(path, draft_size)
