"""tools/results_index.py: every experiment has a header, and docs/results.md's index is what the headers say."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture
def results_index(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))  # a tool, not a package module
    import results_index

    return results_index


def test_the_index_in_docs_is_made_from_every_experiments_header(results_index):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "results_index.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    table = results_index.index()
    for notes in (REPO / "experiments").glob("*/NOTES.md"):
        assert f"[{notes.parent.name}]" in table


def test_a_header_has_exactly_its_keys_and_the_folders_number(results_index, tmp_path: Path):
    notes = tmp_path / "experiments" / "007-x" / "NOTES.md"
    notes.parent.mkdir(parents=True)
    notes.write_text("---\nid: '007'\nquestion: q?\nrecipe: null\nseeds: [1, 2]\ndecision: dropped\nheadline: h\n"
                     "---\n# x\n")
    assert "| [007-x](../experiments/007-x/NOTES.md) | q? | 1, 2 | dropped | h |" in results_index.index(tmp_path)
    for text, message in (("# no header\n", "no header"), ("---\nid: '007'\n---\n", "keys"),
                          ("---\nid: '008'\nquestion: q\nrecipe: null\nseeds: []\ndecision: d\nheadline: h\n---\n",
                           "folder's number")):
        notes.write_text(text)
        with pytest.raises(ValueError, match=message):
            results_index.header(notes)
    with pytest.raises(ValueError, match="markers"):
        results_index.with_index("# results without an index\n", "table")
