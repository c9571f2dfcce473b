#!/usr/bin/env bash
# 026's measurements of one seed's run, written into this folder for decide.py, after that run has finished:
#     bash experiments/026-diagnosis-head/eval.sh 43     (then 42; from the repository root; .venv from `make setup`)
# Seed 43 gets every file the rule reads; seed 42 (NOTES.md: only its paired external ROC-AUC decides) its table
# and its comparison. Everything is paired with the bundled model on the same images.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED=${1:?seed: 43 or 42}
HERE=experiments/026-diagnosis-head
RUN=runs/e026s$SEED
SUFFIX=$([ "$SEED" = 43 ] && echo "" || echo "_s$SEED")
PY=.venv/bin/python
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

$PY benchmarks/sources_table.py --model $RUN/model --split $RUN/split.csv --out $HERE/sources_table$SUFFIX.json
$PY benchmarks/compare_models.py src/melanoma/weights/default $RUN/model --out $HERE/compare_bundled$SUFFIX.json
cp $RUN/model/training_log.csv $HERE/training_log$SUFFIX.csv
if [ "$SEED" = 43 ]; then
    $PY benchmarks/gate_sources.py $RUN/model $RUN/split.csv --blocks 4 --out $HERE/gate_sources.json
fi
$PY $HERE/decide.py
