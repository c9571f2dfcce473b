"""Hugging Face Spaces entry point: `make space` assembles build/space/ (this file, requirements.txt,
README.md with the Space's metadata, the package source and the sample images); push that folder to a
Gradio Space. Locally: `melanoma serve`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))

from melanoma.app import MAX_FILE_SIZE, build_app  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    # Spaces sets GRADIO_SERVER_NAME/PORT; a public share link is never requested.
    demo.queue(default_concurrency_limit=2).launch(max_file_size=MAX_FILE_SIZE)
