"""The index of experiments at the top of docs/results.md, made from each experiments/*/NOTES.md header.

    python tools/results_index.py            # rewrite the index in docs/results.md
    python tools/results_index.py --check    # exit 1 when the index is not what the headers say (a test runs this)

A header is the YAML front matter of NOTES.md: id, question, recipe, seeds, decision, headline (KEYS).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results.md"
KEYS = ("id", "question", "recipe", "seeds", "decision", "headline")
START, END = "<!-- index: made by tools/results_index.py from experiments/*/NOTES.md -->", "<!-- end of index -->"


def header(notes: Path) -> dict:
    """The front matter of one NOTES.md, checked: every key of KEYS, nothing else."""
    text = notes.read_text()
    if not text.startswith("---\n"):
        raise ValueError(f"{notes} has no header (a YAML front matter: {', '.join(KEYS)})")
    head = yaml.safe_load(text[4:text.index("\n---\n", 4)])
    if set(head) != set(KEYS):
        raise ValueError(f"{notes}: the header's keys are {sorted(head)}, not {list(KEYS)}")
    if head["id"] != notes.parent.name[:3]:
        raise ValueError(f"{notes}: id {head['id']!r} is not the folder's number")
    return head


def index(root: Path = REPO) -> str:
    rows = ["| experiment | question | seeds | decision | headline |", "| --- | --- | --- | --- | --- |"]
    for notes in sorted(root.glob("experiments/*/NOTES.md")):
        h = header(notes)
        name = notes.parent.name
        rows.append(f"| [{name}](../experiments/{name}/NOTES.md) | {h['question']} | "
                    f"{', '.join(map(str, h['seeds'])) or '-'} | {h['decision']} | {h['headline']} |")
    return "\n".join([START, *rows, END])


def with_index(text: str, table: str) -> str:
    """``text`` (docs/results.md) with its index replaced by ``table``."""
    if START not in text or END not in text:
        raise ValueError(f"{RESULTS} has no index markers ({START} ... {END})")
    return text[:text.index(START)] + table + text[text.index(END) + len(END):]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/results.md's index is stale")
    args = ap.parse_args()
    text = RESULTS.read_text()
    new = with_index(text, index())
    if args.check:
        if new != text:
            sys.exit(f"{RESULTS} has a stale index: run python tools/results_index.py")
        return
    RESULTS.write_text(new)
    print(f"index written into {RESULTS}")


if __name__ == "__main__":
    main()
