"""022's ship rule (NOTES.md), clause by clause, from the three files the run script writes in this folder:
compare_bundled.json (benchmarks/compare_models.py: bundled -> candidate), sources_table.json and
gate_sources.json (benchmarks/gate_sources.py --blocks 4). Prints each clause and exits 1 if any fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
EXT, CLEAN, KAGGLE = "ISIC 2018 test (external)", "Kaggle clean test", "melanoma_cancer_dataset"


def clauses(compare: dict, gate: dict) -> list[tuple[str, bool, str]]:
    ext, clean = compare["sets"][EXT], compare["sets"][CLEAN]
    auc, sens, nb = ext["roc_auc"], ext["recall"], ext["net_benefit"]
    spec = ext["specificity"]["b"]
    shipped, kaggle_out = gate["shipped_gate"], gate["held_out"][KAGGLE]["refused"]

    def ci(d: dict) -> str:
        lo, hi = d["difference_ci"]
        return f"{d['a']:.3f} -> {d['b']:.3f}, {d['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"

    return [
        ("1 external ROC-AUC, paired interval above 0", auc["difference_ci"][0] > 0, ci(auc)),
        ("2 external sensitivity, paired interval above 0; specificity >= 0.40",
         sens["difference_ci"][0] > 0 and spec >= 0.40, f"{ci(sens)}; specificity {spec:.3f}"),
        ("3 external net benefit at risk 0.10 >= the bundled model's", nb["b"] >= nb["a"], ci(nb)),
        ("4 Kaggle clean ROC-AUC >= 0.970; paired sensitivity interval's low end > -0.05",
         clean["roc_auc"]["b"] >= 0.970 and clean["recall"]["difference_ci"][0] > -0.05,
         f"ROC-AUC {clean['roc_auc']['b']:.3f}; sensitivity {ci(clean['recall'])}"),
        ("5 gate: external <= 2%, non-lesions >= 93.9%, Kaggle held out <= 5.1%",
         shipped["external_refused"] <= 0.02 and shipped["nonlesions_refused"] >= 0.939 and kaggle_out <= 0.051,
         f"external {shipped['external_refused']:.1%}, non-lesions {shipped['nonlesions_refused']:.1%}, "
         f"Kaggle held out {kaggle_out:.1%}"),
    ]


def main() -> None:
    read = lambda name: json.loads((HERE / name).read_text())  # noqa: E731
    compare, table, gate = read("compare_bundled.json"), read("sources_table.json"), read("gate_sources.json")
    if not compare["b"]["model_sha256"] == table["model_sha256"]:
        raise SystemExit("compare_bundled.json and sources_table.json are of different models")
    results = clauses(compare, gate)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    ships = all(ok for _, ok, _ in results)
    print("ship" if ships else "do not ship")
    sys.exit(0 if ships else 1)


if __name__ == "__main__":
    main()
