#!/usr/bin/env bash
# 029's measurements (from the repository root; .venv from `make setup`): 028's model folder copied, its gate refitted
# with the head (the C head_choice.json chose is ood.HEAD_C), then 028's benchmarks:
#     RUN=runs/e028s43 bash experiments/029-lesion-gate/eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/029-lesion-gate
RUN=${RUN:-runs/e028s43}
OUT=${OUT:-runs/e029}
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
mkdir -p $OUT && rm -rf $OUT/model && cp -r $RUN/model $OUT/model
.venv/bin/melanoma calibrate $OUT/model $RUN/split.csv --gate --no-threshold --gate-negatives 1200 > $OUT/gate.json
.venv/bin/python benchmarks/diagnoses.py $OUT/model --split $RUN/split.csv --against src/melanoma/weights/default \
    --out $HERE/diagnoses.json
.venv/bin/python benchmarks/stress.py $OUT/model --limit 400 --out $HERE/stress.json
.venv/bin/python $HERE/decide.py
