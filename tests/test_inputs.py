"""What the user points the commands at: files, folders and globs, and the one output row."""

from pathlib import Path

from melanoma.inputs import expand_paths, row, skipped_row


def test_every_row_has_the_same_keys_whatever_happened():
    keys = list(row("a.jpg"))
    assert keys == ["path", "status", "verdict", "p_malignant", "p_melanoma", "p_skin_cancer", "diagnoses", "label",
                    "error", "ood_score"]
    assert list(skipped_row(Path("notes.txt"))) == keys
    assert skipped_row(Path("notes.txt"))["error"] == "not an image file (.txt)"
    assert skipped_row(Path(".DS_Store"))["error"] == "hidden file"
    assert row("b.jpg", "error", "no such file") | {"path": "a.jpg"} == {**row("a.jpg"), "status": "error",
                                                                          "error": "no such file"}


def test_folders_are_searched_and_what_is_not_an_image_is_listed(tmp_path: Path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.jpg", "d/sub/b.PNG", "d/notes.txt", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    skipped: list = []
    found = expand_paths([tmp_path / "d", str(tmp_path / "*.jpg"), tmp_path / "absent.jpg"], skipped)
    assert [p.name for p in found] == ["a.jpg", "b.PNG", "c.jpg", "absent.jpg"]  # a missing name is kept: its row
    assert [Path(r["path"]).name for r in skipped] == ["notes.txt"]
