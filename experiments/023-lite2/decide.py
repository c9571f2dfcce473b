"""023's ship rule (NOTES.md), clause by clause, from the files eval.sh writes in this folder:
compare_bundled.json (benchmarks/compare_models.py: bundled -> candidate), sources_table.json, gate_sources.json
(benchmarks/gate_sources.py --blocks 4), speed.json and speed_bundled.json (benchmarks/inference_speed.py).
Prints each clause and exits 1 if any fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
EXT, CLEAN = "ISIC 2018 test (external)", "Kaggle clean test"


def onnx_batch1_ms(speed: dict) -> float:
    return next(r["ms_per_call"] for r in speed["network"] if r["engine"] == "onnx runtime" and r["batch"] == 1)


def clauses(compare: dict, gate: dict, ms: float, ms_bundled: float) -> list[tuple[str, bool, str]]:
    ext, clean = compare["sets"][EXT], compare["sets"][CLEAN]
    auc, nb = ext["roc_auc"], ext["net_benefit"]
    shipped, held_out = gate["shipped_gate"], {s: r["refused"] for s, r in gate["held_out"].items()}

    def ci(d: dict) -> str:
        lo, hi = d["difference_ci"]
        return f"{d['a']:.3f} -> {d['b']:.3f}, {d['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"

    return [
        ("1 external ROC-AUC, paired change >= +0.020 with its interval above 0",
         auc["difference"] >= 0.020 and auc["difference_ci"][0] > 0, ci(auc)),
        ("2 external sensitivity >= 0.85; net benefit at risk 0.10 >= the bundled model's",
         ext["recall"]["b"] >= 0.85 and nb["b"] >= nb["a"],
         f"sensitivity {ext['recall']['b']:.3f}, specificity {ext['specificity']['b']:.3f}; net benefit {ci(nb)}"),
        ("3 Kaggle clean ROC-AUC >= 0.970; paired sensitivity interval's low end > -0.05",
         clean["roc_auc"]["b"] >= 0.970 and clean["recall"]["difference_ci"][0] > -0.05,
         f"ROC-AUC {clean['roc_auc']['b']:.3f}; sensitivity {ci(clean['recall'])}"),
        ("4 gate: external <= 2%, non-lesions >= 95%, each source held out <= 2.7%",
         shipped["external_refused"] <= 0.02 and shipped["nonlesions_refused"] >= 0.95
         and max(held_out.values()) <= 0.027,
         f"external {shipped['external_refused']:.1%}, non-lesions {shipped['nonlesions_refused']:.1%}, held out "
         + ", ".join(f"{s} {r:.1%}" for s, r in held_out.items())),
        ("5 ONNX Runtime batch-1 latency <= 2x the bundled model's", ms <= 2 * ms_bundled,
         f"{ms:.1f} ms against {ms_bundled:.1f} ms"),
    ]


def main() -> None:
    read = lambda name: json.loads((HERE / name).read_text())  # noqa: E731
    compare, table, gate = read("compare_bundled.json"), read("sources_table.json"), read("gate_sources.json")
    if not compare["b"]["model_sha256"] == table["model_sha256"]:
        raise SystemExit("compare_bundled.json and sources_table.json are of different models")
    verdict(clauses(compare, gate, onnx_batch1_ms(read("speed.json")), onnx_batch1_ms(read("speed_bundled.json"))))


def verdict(results: list[tuple[str, bool, str]]) -> None:
    """Print each clause and the decision; exit 1 unless every clause passed."""
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    ships = all(ok for _, ok, _ in results)
    print("ship" if ships else "do not ship")
    sys.exit(0 if ships else 1)


if __name__ == "__main__":
    main()
