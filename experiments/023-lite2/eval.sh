#!/usr/bin/env bash
# 023's measurements, written into this folder for decide.py, after the run in NOTES.md has finished:
#     bash experiments/023-lite2/eval.sh            (from the repository root; .venv from `make setup`)
# Everything is paired with the bundled model on the same images; the two speed runs are back to back on one machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/023-lite2
RUN=runs/e023s43
PY=.venv/bin/python
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

$PY benchmarks/sources_table.py --model $RUN/model --split $RUN/split.csv --out $HERE/sources_table.json
$PY benchmarks/compare_models.py src/melanoma/weights/default $RUN/model --out $HERE/compare_bundled.json
$PY benchmarks/gate_sources.py $RUN/model $RUN/split.csv --blocks 4 --out $HERE/gate_sources.json
$PY benchmarks/inference_speed.py --model $RUN/model --data samples --out runs/e023speed
$PY benchmarks/inference_speed.py --data samples --out runs/bundledspeed
cp runs/e023speed/speed.json $HERE/speed.json
cp runs/bundledspeed/speed.json $HERE/speed_bundled.json
cp $RUN/model/training_log.csv $HERE/training_log.csv
$PY $HERE/decide.py
