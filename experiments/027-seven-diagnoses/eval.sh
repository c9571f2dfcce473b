#!/usr/bin/env bash
# 027's measurements, after its run has finished (from the repository root; .venv from `make setup`):
#     bash experiments/027-seven-diagnoses/eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/027-seven-diagnoses
RUN=${RUN:-runs/e027s43}
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
.venv/bin/python benchmarks/diagnoses.py $RUN/model --split $RUN/split.csv --against src/melanoma/weights/default \
    --out $HERE/diagnoses.json
cp $RUN/model/training_log.csv $HERE/training_log.csv
.venv/bin/python $HERE/decide.py
