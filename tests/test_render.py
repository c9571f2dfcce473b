import csv
import io
import json
from pathlib import Path

from rich.console import Console

from melanoma import render

ROWS = [
    {"path": "/data/a/x.jpg", "status": "ok", "p_malignant": 0.91, "label": "malignant", "error": None,
     "diagnoses": [{"name": "melanoma", "p": 0.8}, {"name": "melanocytic nevus", "p": 0.15}]},
    {"path": "/data/b/y.jpg", "status": "out_of_distribution", "p_malignant": None, "label": None,
     "error": "cannot assess: the picture is out of focus", "diagnoses": None},
]


def text_of(renderable) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_rows_as_json_and_csv_keep_every_row_and_put_the_differential_in_one_cell():
    assert json.loads(render.rows_text(ROWS, "json")) == ROWS
    cells = list(csv.DictReader(io.StringIO(render.rows_text(ROWS, "csv"))))
    assert [c["path"] for c in cells] == ["/data/a/x.jpg", "/data/b/y.jpg"]
    assert cells[0]["diagnoses"] == "melanoma 0.80, melanocytic nevus 0.15" and cells[1]["diagnoses"] == ""
    assert cells[1]["error"] == "cannot assess: the picture is out of focus"


def test_the_predict_table_names_files_under_their_common_folder_and_says_why_a_row_was_refused():
    shown = text_of(render.predict_table(ROWS, 0.242))
    assert "threshold 0.242; files under /data" in shown
    assert "a/x.jpg" in shown and "/data/a/x.jpg" not in shown and "0.910" in shown and "malignant" in shown
    assert "out of focus" in shown


def test_the_metrics_and_shortcut_tables_show_values_with_their_intervals():
    m = {"n": 10, "n_benign": 6, "n_malignant": 4, "threshold": 0.5, "roc_auc": 0.8125, "roc_auc_ci": [0.6, 0.95],
         "confusion_matrix": [[5, 1], [1, 3]]}
    shown = text_of(render.metrics_table(m, "test split"))
    assert "n=10 (6 benign, 4 malignant)" in shown and "0.8125" in shown and "0.6000 - 0.9500" in shown
    assert "[[5, 1], [1, 3]]" in shown
    shortcuts = text_of(render.shortcut_table({"brightness": {"benign_mean": 0.5, "malignant_mean": None,
                                                              "auc": 0.61}}, Path("data")))
    assert "brightness" in shortcuts and "n/a" in shortcuts and "0.6100" in shortcuts
