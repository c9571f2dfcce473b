#!/usr/bin/env bash
# 031's measurements (from the repository root; .venv from `make setup`; the pictures from
# `bash tools/nonlesion_pictures.sh $PICTURES`): a network's model folder copied, its gate refitted with the head
# and the fourth kind of negative (C = ood.HEAD_C, as choose.py chose), then 028's benchmarks and the wider
# non-lesion set:
#     RUN=runs/e028s43 NAME=028 PICTURES=/path/to/nonlesions bash experiments/031-broad-negatives/eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/031-broad-negatives
RUN=${RUN:-runs/e028s43}
NAME=${NAME:-028}
OUT=${OUT:-runs/e031-$NAME}
PICTURES=${PICTURES:?the folder tools/nonlesion_pictures.sh made}
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
mkdir -p $OUT && rm -rf $OUT/model && cp -r $RUN/model $OUT/model
.venv/bin/melanoma calibrate $OUT/model $RUN/split.csv --gate --no-threshold --gate-negatives 1600 \
    --gate-negative-pictures $PICTURES/fit > $HERE/gate-$NAME.json
.venv/bin/python benchmarks/diagnoses.py $OUT/model --split $RUN/split.csv --against src/melanoma/weights/default \
    --nonlesion-pictures $PICTURES/held_out --out $HERE/diagnoses-$NAME.json
.venv/bin/python benchmarks/stress.py $OUT/model --limit 400 --out $HERE/stress-$NAME.json
.venv/bin/python $HERE/decide.py $NAME
