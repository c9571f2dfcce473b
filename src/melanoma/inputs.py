"""What the user points the commands at: files, folders and globs -> image files, and a reason for each that is not."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from .imaging import find_images, open_rgb


def expand_paths(inputs: Iterable[str | Path], skipped: list[dict] | None = None) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted unique files.

    A name that matches nothing is kept, so that the caller reports it as an error row. Files inside a
    folder that are not images by their name (``notes.txt``, ``.DS_Store``) are not returned; with ``skipped``,
    a row for each (status ``skipped``, the reason in ``error``) is appended to it, so none goes unmentioned.
    """
    import os

    found: list[Path] = []
    for item in map(str, inputs):
        matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        for p in matches:
            if not p.is_dir():
                found.append(p)
                continue
            images = find_images(p)
            found += images
            if skipped is not None:
                wanted = set(images)
                others = sorted(f for d, _, names in os.walk(p, followlinks=True) for n in names
                                if (f := Path(d) / n) not in wanted)
                skipped += [skipped_row(f) for f in others]
    return list(dict.fromkeys(found))


def row(path, status: str = "ok", error: str | None = None) -> dict:
    """The one output row of ``predict`` (table, JSON, CSV), the Python API and the app, before a verdict is filled
    in. ``verdict`` ("see a dermatologist" / "looks benign") and ``label`` (malignant / benign) follow
    ``p_malignant >= threshold``; ``p_malignant`` is p(skin cancer) for a seven-class model, p(melanoma) for a
    one-logit one; ``diagnoses``: a seven-class model's most probable diagnoses. None where not given."""
    return {"path": str(path), "status": status, "verdict": None, "p_malignant": None, "p_melanoma": None,
            "p_skin_cancer": None, "diagnoses": None, "label": None, "error": error, "ood_score": None}


def skipped_row(path: Path) -> dict:
    """The output row of a file in a folder that was not looked at, and why."""
    reason = "hidden file" if path.name.startswith(".") else f"not an image file ({path.suffix or 'no extension'})"
    return row(path, "skipped", reason)


def unreadable_reason(path: Path) -> str:
    """Why ``path`` cannot be used, in one line (re-opens it: only called for failures)."""
    try:
        open_rgb(path)
    except ValueError as e:  # ImageError carries the user-facing reason
        return str(e)
    return "unreadable image"
