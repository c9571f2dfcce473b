"""023's ship rule (NOTES.md), clause by clause, from the files eval.sh writes in this folder:
compare_bundled.json (benchmarks/compare_models.py: bundled -> candidate), sources_table.json, gate_sources.json
(benchmarks/gate_sources.py --blocks 4), speed.json and speed_bundled.json (benchmarks/inference_speed.py).
Prints each clause and exits 1 if any fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from melanoma.bench.rules import one_logit_clauses, verdict

HERE = Path(__file__).parent


def onnx_batch1_ms(speed: dict) -> float:
    return next(r["ms_per_call"] for r in speed["network"] if r["engine"] == "onnx runtime" and r["batch"] == 1)


def main() -> None:
    read = lambda name: json.loads((HERE / name).read_text())  # noqa: E731
    compare, table, gate = read("compare_bundled.json"), read("sources_table.json"), read("gate_sources.json")
    if not compare["b"]["model_sha256"] == table["model_sha256"]:
        raise SystemExit("compare_bundled.json and sources_table.json are of different models")
    clauses = one_logit_clauses(compare, gate, onnx_batch1_ms(read("speed.json")),
                                onnx_batch1_ms(read("speed_bundled.json")))
    sys.exit(0 if verdict(clauses) else 1)


if __name__ == "__main__":
    main()
