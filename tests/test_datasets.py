"""Dataset layouts read by discovery, and the split file that keeps each image's labels."""

import csv
from pathlib import Path

import pytest

from melanoma.datasets import DatasetError, discover, read_split, write_split

from conftest import write_one_hot


def test_a_one_hot_ground_truth_names_each_images_diagnosis_once_beside_a_melanoma_csv(tmp_path: Path):
    dx = ["mel", "nv", "bkl", "df", "vasc", "bcc", "akiec"]
    splits = discover(write_one_hot(tmp_path / "isic2018", dx))
    assert list(splits) == ["test"]
    samples = sorted(splits["test"], key=lambda s: s.path.name)
    assert [s.dx for s in samples] == dx  # each image once, from the CSV that names its diagnosis
    assert [s.label for s in samples] == [1, 0, 0, 0, 0, 0, 0]  # label 1: melanoma, as the melanoma CSV says
    alone = discover(write_one_hot(tmp_path / "alone", dx, melanoma_csv=False))["test"]
    assert sorted(s.dx for s in alone) == sorted(dx)


def test_ground_truth_files_that_disagree_or_name_two_diagnoses_are_errors(tmp_path: Path):
    root = write_one_hot(tmp_path / "isic", ["mel", "nv"])
    rows = list(csv.reader((root / "Task3_Test_melanoma.csv").open()))
    rows[1][1] = "0.0"  # the melanoma CSV now calls the melanoma benign
    with (root / "Task3_Test_melanoma.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DatasetError, match="labelled 1 and 0"):
        discover(root)
    two = write_one_hot(tmp_path / "two", ["mel"], melanoma_csv=False)
    text = (two / "Task3_Test_GroundTruth.csv").read_text().replace("1.0,0.0", "1.0,1.0", 1)
    (two / "Task3_Test_GroundTruth.csv").write_text(text)
    with pytest.raises(DatasetError, match="names 2 diagnoses"):
        discover(two)


def test_the_split_file_keeps_source_group_and_diagnosis(tmp_path: Path):
    samples = discover(write_one_hot(tmp_path / "isic", ["bcc", "nv"], melanoma_csv=False))["test"]
    write_split(tmp_path / "split.csv", {"val": samples})
    back = read_split(tmp_path / "split.csv")["val"]
    assert [(s.path, s.label, s.source, s.dx) for s in back] == [(s.path, s.label, s.source, s.dx) for s in samples]
    old = tmp_path / "old.csv"  # a split file from before the dx column: read, without diagnoses
    old.write_text("split,label,path\nval,1,/x.jpg\n")
    assert read_split(old)["val"][0].dx == ""
