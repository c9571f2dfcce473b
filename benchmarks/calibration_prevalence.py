"""How much of a model's calibration error on a test subset is only its prevalence? A diagnostic.

    python benchmarks/calibration_prevalence.py runs/EVAL [--data ../shared/data/melanoma_cancer_dataset] [--model DIR]

Reads ``melanoma evaluate``'s predictions.csv (test split) and, for the full and the clean test, prints the ECE
of the model's probabilities as they are and after the standard prior-shift correction (Saerens et al. 2002):
logit + log odds(subset prevalence) - log odds(validation prevalence). The corrected row uses the subset's own
label prevalence, i.e. test labels: it says what the error is made of, it is not a calibration to report as
the model's, and nothing is chosen with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from melanoma.audit import cached_audit
from melanoma.bench import data_root
from melanoma.calibrate import expected_calibration_error, log_odds, sigmoid
from melanoma.config import DEFAULT_MODEL_DIR, load_config
from melanoma.evaluate import read_predictions

DATA = data_root() / "melanoma_cancer_dataset"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", type=Path, default=None, help="the evaluated model folder (default: bundled)")
    args = ap.parse_args()
    cal = load_config(args.model or DEFAULT_MODEL_DIR, "model.safetensors").training["calibration"]
    val_prevalence = cal["val_n_malignant"] / cal["val_n"]
    paths, y, p = read_predictions(args.eval_dir)  # evaluate writes only images it could score
    clean = cached_audit(args.data).clean_test_paths()
    out = {"validation_prevalence": round(val_prevalence, 3)}
    subsets = (("full test", np.ones(len(y), bool)), ("clean test", np.array([path in clean for path in paths])))
    for name, keep in subsets:
        prevalence = float(y[keep].mean())
        shifted = sigmoid(log_odds(p[keep]) + log_odds(prevalence) - log_odds(val_prevalence))
        out[name] = {"n": int(keep.sum()), "prevalence": round(prevalence, 3),
                     "ece": round(expected_calibration_error(p[keep], y[keep]), 4),
                     "ece_after_prior_shift_to_own_prevalence": round(expected_calibration_error(shifted, y[keep]), 4)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
