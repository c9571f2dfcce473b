"""Assemble the Hugging Face Space folder (``make space``): build/space/ with the app, its requirements, the
package source and the bundled model as the ONNX app loads it (no model.safetensors: the Space never runs torch).

    python tools/build_space.py [--out build/space] [--model-id USER/REPO]

README.md's front matter pins ``sdk_version`` to the gradio this environment runs (the one the tests ran),
and ``python_version`` to this interpreter's; ``--model-id`` lists the model repository under ``models``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from melanoma.card import HUB_GITATTRIBUTES  # noqa: E402  (the package's source, not an installed copy)

SPACE_ONLY_SKIPS = ("model.safetensors", "training_log.csv", "__pycache__")  # what the ONNX app never opens


def front_matter(model_id: str | None) -> str:
    import gradio

    lines = ["---", "title: melanoma-classifier", "emoji: 🔬", "colorFrom: blue", "colorTo: red", "sdk: gradio",
             f"sdk_version: {gradio.__version__}",
             f'python_version: "{sys.version_info.major}.{sys.version_info.minor}"',
             "app_file: app.py", "pinned: false", "license: apache-2.0",
             "short_description: Dermoscopy melanoma check, Grad-CAM; not a diagnosis"]
    if model_id:
        lines += ["models:", f"  - {model_id}"]
    return "\n".join(lines + ["---", ""])


def build(out: Path, model_id: str | None = None) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    (out / "src").mkdir(parents=True)
    for name in ("app.py", "requirements.txt"):
        shutil.copyfile(REPO / "space" / name, out / name)
    body = (REPO / "space" / "README.md").read_text().split("---\n", 2)[-1]
    (out / "README.md").write_text(front_matter(model_id) + body)
    shutil.copytree(REPO / "src" / "melanoma", out / "src" / "melanoma",
                    ignore=shutil.ignore_patterns(*SPACE_ONLY_SKIPS))
    (out / ".gitattributes").write_text(HUB_GITATTRIBUTES)  # model.onnx is over the Hub's 10 MB limit for plain git
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "build" / "space")
    ap.add_argument("--model-id", default=None, help="the model's Hub repository, listed under models")
    args = ap.parse_args()
    out = build(args.out, args.model_id)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"Space folder: {out} ({size / 2**20:.1f} MiB); "
          f"push it with `hf upload USER/SPACE {out} . --repo-type space` (or git, with git-lfs installed)")


if __name__ == "__main__":
    main()
