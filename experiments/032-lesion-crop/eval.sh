#!/usr/bin/env bash
# 032's measurements of one candidate model folder against the bundled model (from the repository root; .venv from
# `make setup`; the pictures from `bash tools/nonlesion_pictures.sh $PICTURES`):
#     MODEL=runs/e032-I/model NAME=I SPLIT=runs/e030s43/split.csv PICTURES=/path/to/nonlesions \
#         bash experiments/032-lesion-crop/eval.sh
# Candidate I is the bundled folder with the segmenter added:
#     cp -r src/melanoma/weights/default runs/e032-I/model
#     melanoma crop-to-lesion runs/e032-I/model runs/segmenter/segmenter.onnx --margin 0.25
# OUT: where the measurements go (default: this folder), for a later experiment's candidate under the same rule.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/032-lesion-crop
MODEL=${MODEL:?a model folder}
NAME=${NAME:?I, T or C}
SPLIT=${SPLIT:?the run's split.csv (the bundled model's for I)}
PICTURES=${PICTURES:?the folder tools/nonlesion_pictures.sh made}
OUT=${OUT:-$HERE}
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
.venv/bin/python benchmarks/diagnoses.py $MODEL --split $SPLIT --against src/melanoma/weights/default \
    --nonlesion-pictures $PICTURES/held_out --out $OUT/diagnoses-$NAME.json
.venv/bin/python benchmarks/stress.py $MODEL --limit 400 --against src/melanoma/weights/default \
    --out $OUT/stress-$NAME.json
.venv/bin/python $HERE/speed.py $MODEL --out $OUT/speed-$NAME.json
.venv/bin/python $HERE/decide.py $NAME $OUT
