#!/usr/bin/env bash
# 030's measurements (from the repository root; .venv from `make setup`), as 028's: by diagnosis against the
# bundled model, the stress suite, the rule.
#     RUN=runs/e030s43 bash experiments/030-five-epochs/eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/030-five-epochs
RUN=${RUN:-runs/e030s43}
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
.venv/bin/python benchmarks/diagnoses.py $RUN/model --split $RUN/split.csv --against src/melanoma/weights/default \
    --out $HERE/diagnoses.json
.venv/bin/python benchmarks/stress.py $RUN/model --limit 400 --out $HERE/stress.json
cp $RUN/model/training_log.csv $HERE/training_log.csv
.venv/bin/python $HERE/decide.py
