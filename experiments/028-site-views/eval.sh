#!/usr/bin/env bash
# 028's measurements, after its run has finished (from the repository root; .venv from `make setup`):
#     bash experiments/028-site-views/eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/028-site-views}  # where the results and decide.py are (030 uses this script too)
RUN=${RUN:-runs/e028s43}
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
.venv/bin/python benchmarks/diagnoses.py $RUN/model --split $RUN/split.csv --against src/melanoma/weights/default \
    --out $HERE/diagnoses.json
.venv/bin/python benchmarks/stress.py $RUN/model --limit 400 --out $HERE/stress.json
cp $RUN/model/training_log.csv $HERE/training_log.csv
.venv/bin/python $HERE/decide.py
