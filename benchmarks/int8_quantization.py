"""What int8 would buy and cost: ONNX Runtime static quantisation of a model's model.onnx, measured, not shipped.

    python benchmarks/int8_quantization.py [--model DIR] --split-file runs/NAME/split.csv [--out runs/int8]

Quantises the graph (QDQ, per-channel int8 weights, uint8 activations) with 128 random *training* images of the
run's split.csv for the activation ranges, then on its *validation* images compares fp32 and int8: ROC-AUC,
probability differences and labels that flip at the model's threshold; and the network's images/s at batch 32,
both graphs alternated in one process. The bundled model stays fp32: its card's numbers are the fp32 graph's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from sklearn.metrics import roc_auc_score

from melanoma.config import DEFAULT_MODEL_DIR
from melanoma.datasets import read_split
from melanoma.engines.base import preprocess
from melanoma.engines.onnx_engine import OnnxPredictor, session_options
from melanoma.imaging import open_rgb


class Batches(CalibrationDataReader):
    def __init__(self, x: np.ndarray, batch: int = 16):
        self.it = iter([{"image": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.it, None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("--calibration-images", type=int, default=128, help="training images that set the ranges")
    ap.add_argument("--out", type=Path, default=Path("runs/int8"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = OnnxPredictor(args.model)
    split = read_split(args.split_file)

    def load(samples: list) -> np.ndarray:
        return np.stack([preprocess(open_rgb(s.path, draft_size=predictor.cfg.img_size), predictor.cfg)
                         for s in samples])

    rng = np.random.default_rng(0)
    calib = load([split["train"][i] for i in rng.choice(len(split["train"]), args.calibration_images, replace=False)])
    quant_pre_process(str(args.model / "model.onnx"), str(args.out / "pre.onnx"))
    quantize_static(str(args.out / "pre.onnx"), str(args.out / "int8.onnx"), Batches(calib),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    int8 = ort.InferenceSession(str(args.out / "int8.onnx"), session_options(), providers=["CPUExecutionProvider"])
    graphs = {"fp32": predictor.session, "int8": int8}

    val = split["val"]
    x = load(val)
    out = "diagnosis_logits" if predictor.cfg.diagnoses else "logit"  # a seven-class graph's, or the one logit
    shape = (-1, len(predictor.cfg.diagnoses)) if predictor.cfg.diagnoses else (-1,)
    y = np.array([s.label for s in val])
    probs = {name: predictor.proba_from_logits(np.concatenate(
        [s.run([out], {"image": x[i:i + 32]})[0].reshape(shape) for i in range(0, len(x), 32)]))
        for name, s in graphs.items()}
    diff = np.abs(probs["fp32"] - probs["int8"])
    t = predictor.cfg.threshold
    speed: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(2):  # alternated, so both see the same machine
        for name, s in graphs.items():
            for _ in range(3):
                s.run([out], {"image": x[:32]})
            times = []
            for _ in range(8):
                start = time.perf_counter()
                s.run([out], {"image": x[:32]})
                times.append(time.perf_counter() - start)
            speed[name].append(round(32 / statistics.median(times), 1))
    result = {"model": str(args.model), "validation_n": len(y), "calibration_images": len(calib),
              "val_roc_auc": {k: round(float(roc_auc_score(y, p)), 4) for k, p in probs.items()},
              "abs_prob_diff_mean": round(float(diff.mean()), 4), "abs_prob_diff_max": round(float(diff.max()), 4),
              "labels_flipped_at_threshold": int(((probs["fp32"] >= t) != (probs["int8"] >= t)).sum()),
              "batch32_images_per_s": speed}
    (args.out / "int8.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
