"""Shared fixtures: tiny synthetic datasets built on the fly, and the location of the real data."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per worker: workers of two threads each oversubscribe
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the cores (docs/usage.md, "The test suite"); set before any
    # test imports torch, and inherited by every subprocess a test starts

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KAGGLE = SHARED_DATA / "melanoma_cancer_dataset"
SAMPLES = REPO / "samples"


def files_git_would_refuse(folder: Path, limit: int = 10 * 2**20) -> list[str]:
    """Files over the Hub's plain-git limit that the folder's .gitattributes does not send through LFS."""
    from fnmatch import fnmatch

    attributes = folder / ".gitattributes"
    lfs = [line.split()[0] for line in (attributes.read_text().splitlines() if attributes.is_file() else [])
           if "filter=lfs" in line]
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.stat().st_size > limit
            and not any(fnmatch(p.name, pattern) for pattern in lfs)]


def lesion_image(label: int, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A skin-coloured square with a dark blob; malignant blobs are larger and irregular, so a
    tiny network can tell the classes apart."""
    img = np.full((size, size, 3), (205, 160, 140), dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size / 2 + rng.uniform(-3, 3, 2)
    r = size * (0.32 if label else 0.16) * (1 + (0.3 * np.sin(5 * np.arctan2(yy - cy, xx - cx)) if label else 0))
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    img[mask] = (90, 55, 40) if label else (140, 95, 75)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_class_folders(root: Path, n_per_class: int, seed: int = 0, names=("benign", "malignant"),
                        ext: str = ".png") -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(names):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            lesion_image(label, rng).save(d / f"{name.lower()}_{i}{ext}")
    return root


@pytest.fixture
def kaggle_like(tmp_path: Path) -> Path:
    """train/ and test/ with mixed-case class folders, 12 + 6 images per class."""
    root = tmp_path / "kaggle"
    write_class_folders(root / "train", 12, seed=1, names=("Benign", "Malignant"), ext=".jpg")
    write_class_folders(root / "test", 6, seed=2, names=("BENIGN", "malignant"), ext=".jpg")
    return root


@pytest.fixture
def real_kaggle() -> Path:
    if not KAGGLE.is_dir():
        pytest.skip("../shared/data/melanoma_cancer_dataset is not available")
    return KAGGLE


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """An untrained small_cnn model folder (48 px input): fast, and enough for contract tests."""
    from melanoma.config import ModelConfig
    from melanoma.nn.models import create_model, save_model_folder

    return save_model_folder(create_model("small_cnn", pretrained="none"),
                             ModelConfig(arch="small_cnn", img_size=48), tmp_path / "model")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Audit caches go to a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("MELANOMA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def textured_lesion(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A lesion-like image with its own random texture: distinct draws are distinct images."""
    from scipy.ndimage import gaussian_filter

    base = np.full((size, size, 3), (200, 150, 130), np.float32)
    texture = gaussian_filter(rng.normal(0, 40, (size, size, 3)), sigma=(3, 3, 0))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    blob = np.exp(-(((yy - cy) / (0.2 * size)) ** 2 + ((xx - cx) / (0.25 * size)) ** 2))[..., None]
    img = base + texture * 0.7 - blob * np.array([110, 95, 90]) + gaussian_filter(texture, 1) * blob
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_ham_like(root: Path, rng, lesions: list[tuple[str, int]]) -> Path:
    """A HAM10000-style folder: images/ISIC_*.jpg and a metadata CSV; (dx, images of that lesion) per lesion."""
    (root / "images").mkdir(parents=True)
    rows, k = [], 0
    for n, (dx, n_images) in enumerate(lesions):
        for _ in range(n_images):
            image_id = f"ISIC_{k:07d}"
            textured_lesion(rng).save(root / "images" / f"{image_id}.jpg", quality=95)
            rows.append({"lesion_id": f"HAM_{n:07d}", "image_id": image_id, "dx": dx})
            k += 1
    with (root / "HAM10000_metadata.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
                           restval="")
        w.writeheader()
        w.writerows(rows)
    return root


def write_one_hot(root: Path, diagnoses: list[str], seed: int = 0, melanoma_csv: bool = True) -> Path:
    """An ISIC 2018 Task 3-style folder: images/ISIC_*.jpg, the one-hot ground truth and (optionally) the
    melanoma-only CSV of the same images."""
    from melanoma.diagnoses import DIAGNOSES

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    ids = [f"ISIC_{k:07d}" for k in range(len(diagnoses))]
    for image_id in ids:
        textured_lesion(rng).save(root / "images" / f"{image_id}.jpg", quality=95)
    with (root / "Task3_Test_GroundTruth.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *(d.upper() for d in DIAGNOSES)])
        w.writerows([i, *(float(d == dx) for d in DIAGNOSES)] for i, dx in zip(ids, diagnoses))
    if melanoma_csv:
        with (root / "Task3_Test_melanoma.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "melanoma"])
            w.writerows([i, float(dx == "mel")] for i, dx in zip(ids, diagnoses))
    return root


def write_dark_segmenter(folder: Path, size: int = 64) -> Path:
    """A hand-made segmenter.onnx (and its segmenter.json): a map cell is lesion where the picture is dark, as a
    threshold would say. Its input and output are those of melanoma.nn.segment's graphs: (N, 3, S, S) normalised
    -> (N, 1, S/8, S/8) logits."""
    import json

    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["grey"], keepdims=1),
             helper.make_node("AveragePool", ["grey"], ["cells"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Mul", ["cells", "gain"], ["scaled"]),
             helper.make_node("Add", ["scaled", "bias"], ["lesion_logits"])]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("gain", TensorProto.FLOAT, [], [-20.0]),  # darker than mid-grey: lesion
             helper.make_tensor("bias", TensorProto.FLOAT, [], [-4.0])]
    graph = helper.make_graph(nodes, "dark", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["n", 3, size, size])],
                              [helper.make_tensor_value_info("lesion_logits", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "segmenter.onnx")
    (folder / "segmenter.json").write_text(json.dumps({"settings": {"size": size}}))
    return folder / "segmenter.onnx"
