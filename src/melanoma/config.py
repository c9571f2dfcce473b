"""The one configuration object that travels with a saved model (``config.json``)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CLASS_NAMES = ("benign", "malignant")
DEFAULT_MODEL_DIR = Path(__file__).parent / "weights" / "default"  # the bundled model
CHECKSUMS = "SHA256SUMS"  # `sha256sum -c` format, one line per file of the model folder
CHECKED_FILES = ("config.json", "model.safetensors", "model.onnx", "ood.safetensors", "segmenter.onnx")


class ModelError(RuntimeError):
    """A model folder that is missing, incomplete, altered, or does not match its config."""


HUB_PREFIX = "hf-hub:"  # timm's spelling; a bare ``owner/name`` that is not a folder means the same


def resolve_model_dir(model: str | Path | None) -> Path:
    """The folder behind ``--model``: the bundled model (None), a folder, or a Hugging Face Hub model id
    (``owner/name`` or ``hf-hub:owner/name``) read from the local Hub cache only: nothing is fetched at run time."""
    if model is None:
        return DEFAULT_MODEL_DIR
    text = str(model)
    if Path(text).exists() or not (text.startswith(HUB_PREFIX) or _looks_like_repo_id(text)):
        return Path(text)
    repo_id = text.removeprefix(HUB_PREFIX)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ModelError(f"{text} is not a folder; a Hub model id needs the hub extra: "
                         "pip install 'melanoma-classifier[hub]'") from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ModelError(f"{text}: no such folder and no copy of {repo_id} in the local Hugging Face cache "
                         f"(fetch it once with `hf download {repo_id}`; this tool never downloads)") from None


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


TIMM_KEYS = {"architecture", "num_classes", "label_names", "pretrained_cfg"}  # written for timm, read by it


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and turn its output into a decision.

    The network emits one logit; ``p_malignant = sigmoid(logit / temperature)`` and an image is
    called malignant when ``p_malignant >= threshold``. A seven-class model (``diagnoses`` set) emits one logit per
    diagnosis; its probabilities are ``softmax(logits / temperature + class_bias)`` (:mod:`melanoma.diagnoses`) and
    ``p_malignant`` is p(skin cancer), the sum over the cancers, compared with ``threshold`` as above.
    """

    arch: str = "tf_efficientnet_lite0"
    img_size: int = 224  # pixels, square model input
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel, on [0, 1] pixel values
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    class_names: tuple[str, str] = CLASS_NAMES  # index 0 = label 0, index 1 = label 1 (malignant)
    threshold: float = 0.5
    temperature: float = 1.0
    pretrained: str = "imagenet"  # provenance of the initial weights: "imagenet" or "none"
    color_constancy: str | None = None  # "shades_of_grey": applied to every image after the resize
    downscale_to: int | None = None  # px: shorter side shrunk to at most this before the resize (cap_shorter_side)
    diagnoses: tuple[str, ...] | None = None  # a seven-class model: its outputs' diagnoses, in order
    class_bias: tuple[float, ...] | None = None  # added to logits / temperature (calibration); one per diagnosis
    lesion_crop: dict | None = None  # lesion-centred framing (lesion_crop.CropSpec) by the folder's segmenter.onnx
    training: dict[str, Any] = field(default_factory=dict)  # recipe, data, split hash, versions, val metrics

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("mean", "std", "class_names", "diagnoses", "class_bias"):
            d[key] = None if d[key] is None else list(d[key])
        for key in ("diagnoses", "class_bias", "lesion_crop"):  # configs without them stay as older versions wrote
            if d[key] is None:
                del d[key]
        if self.arch != "small_cnn":  # timm's keys too: timm.create_model("local-dir:FOLDER") loads the folder
            d |= {"architecture": self.arch, "num_classes": self.num_outputs,
                  "label_names": list(self.diagnoses or self.class_names),
                  "pretrained_cfg": {"input_size": [3, self.img_size, self.img_size], "interpolation": "bilinear",
                                     "mean": list(self.mean), "std": list(self.std), "crop_pct": 1.0,
                                     "crop_mode": "center", "num_classes": self.num_outputs}}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        missing = {"arch", "img_size"} - d.keys()
        if missing:
            raise ValueError(f"config.json lacks required keys: {sorted(missing)}")
        unknown = d.keys() - known - TIMM_KEYS
        if unknown:  # e.g. a preprocessing step a newer version applies: ignoring it would judge other pixels
            raise ValueError(f"config.json has settings this version of melanoma-classifier does not know: "
                             f"{sorted(unknown)}; a newer version wrote it: upgrade the package")
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "class_names", "diagnoses", "class_bias"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @property
    def num_outputs(self) -> int:
        """The network's outputs: one logit, or one per diagnosis."""
        return len(self.diagnoses) if self.diagnoses else 1

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(model_dir: str | Path) -> None:
    """(Re)write ``SHA256SUMS`` for the model files present; every writer of a model folder calls it."""
    model_dir = Path(model_dir)
    lines = [f"{sha256_file(model_dir / n)}  {n}" for n in CHECKED_FILES if (model_dir / n).is_file()]
    atomic_write_text(model_dir / CHECKSUMS, "\n".join(lines) + "\n")


def verify_checksums(model_dir: Path, names: tuple[str, ...]) -> None:
    """Raise ModelError when one of ``names`` differs from its line in ``SHA256SUMS``.

    Folders without the file (older ones, hand-made ones) are accepted as they are; the bundled
    model has one, so a damaged install or an edited weight file is caught before it predicts.
    """
    listing = model_dir / CHECKSUMS
    if not listing.is_file():
        return
    expected = dict(reversed(line.split(maxsplit=1)) for line in listing.read_text().splitlines() if line.strip())
    for name in names:
        if name in expected and not (model_dir / name).is_file():
            raise ModelError(f"{model_dir / name} is listed in {CHECKSUMS} but missing")
        if name in expected and sha256_file(model_dir / name) != expected[name]:
            raise ModelError(f"{model_dir / name} does not match its checksum in {CHECKSUMS}: the file is "
                             "damaged or was changed (reinstall the package; after a deliberate edit, delete "
                             f"{CHECKSUMS} or refit with `melanoma calibrate`)")


def load_config(model_dir: Path, weights: str) -> ModelConfig:
    """The verified config of a model folder that must hold ``weights`` (e.g. model.onnx)."""
    for name in ("config.json", weights):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir} is not a model folder: {name} is missing")
    verify_checksums(model_dir, ("config.json", weights, "ood.safetensors"))
    try:
        return ModelConfig.load(model_dir / "config.json")
    except (ValueError, TypeError) as e:
        raise ModelError(f"{model_dir}/config.json is invalid: {e}") from e
