"""The one configuration object that travels with a saved model (``config.json``)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CLASS_NAMES = ("benign", "malignant")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and turn its output into a decision.

    The network emits one logit; ``p_malignant = sigmoid(logit / temperature)`` and an image is
    called malignant when ``p_malignant >= threshold``.
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
    training: dict[str, Any] = field(default_factory=dict)  # recipe, data, split hash, versions, val metrics

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("mean", "std", "class_names"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        missing = {"arch", "img_size"} - d.keys()
        if missing:
            raise ValueError(f"config.json lacks required keys: {sorted(missing)}")
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "class_names"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
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
