"""026's ship rule (NOTES.md) from the files eval.sh writes in this folder: 023's clauses 1-4 on seed 43
(compare_bundled.json, sources_table.json, gate_sources.json; 023's fifth, latency, cannot differ for the same
network) and, once seed 42 has run, its paired external ROC-AUC change above 0 (compare_bundled_s42.json).
Prints each clause and exits 1 if any fails."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).parent
# One rule, one text: 023's clauses are imported, not copied (its folder name is not a module name).
_spec = importlib.util.spec_from_file_location("decide023", HERE.parent / "023-lite2" / "decide.py")
decide023 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decide023)


def main() -> None:
    read = lambda name: json.loads((HERE / name).read_text())  # noqa: E731
    compare, table, gate = read("compare_bundled.json"), read("sources_table.json"), read("gate_sources.json")
    if not compare["b"]["model_sha256"] == table["model_sha256"]:
        raise SystemExit("compare_bundled.json and sources_table.json are of different models")
    results = decide023.clauses(compare, gate, 0.0, 0.0)[:4]
    if (HERE / "compare_bundled_s42.json").is_file():
        auc = read("compare_bundled_s42.json")["sets"][decide023.EXT]["roc_auc"]
        lo, hi = auc["difference_ci"]
        results.append(("seed 42: external ROC-AUC, paired change above 0", auc["difference"] > 0,
                        f"{auc['a']:.3f} -> {auc['b']:.3f}, {auc['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"))
    else:
        results.append(("seed 42: external ROC-AUC, paired change above 0", False, "not run yet"))
    decide023.verdict(results)


if __name__ == "__main__":
    main()
