"""026's ship rule (NOTES.md) from the files eval.sh writes in this folder: 023's clauses 1-4 on seed 43
(compare_bundled.json, sources_table.json, gate_sources.json; 023's fifth, latency, cannot differ for the same
network) and, once seed 42 has run, its paired external ROC-AUC change above 0 (compare_bundled_s42.json).
Prints each clause and exits 1 if any fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from melanoma.bench import EXTERNAL_TITLE
from melanoma.bench.rules import Clause, change, one_logit_clauses, verdict

HERE = Path(__file__).parent


def main() -> None:
    read = lambda name: json.loads((HERE / name).read_text())  # noqa: E731
    compare, table, gate = read("compare_bundled.json"), read("sources_table.json"), read("gate_sources.json")
    if not compare["b"]["model_sha256"] == table["model_sha256"]:
        raise SystemExit("compare_bundled.json and sources_table.json are of different models")
    clauses = one_logit_clauses(compare, gate)
    name = "seed 42: external ROC-AUC, paired change above 0"
    if (HERE / "compare_bundled_s42.json").is_file():
        auc = read("compare_bundled_s42.json")["sets"][EXTERNAL_TITLE]["roc_auc"]
        clauses.append(Clause(name, change(auc), auc["difference"] > 0))
    else:
        clauses.append(Clause(name, "not run yet", False))
    sys.exit(0 if verdict(clauses) else 1)


if __name__ == "__main__":
    main()
