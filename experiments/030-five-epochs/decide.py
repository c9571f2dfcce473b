"""030's ship rule (NOTES.md, written before the run: 028's six clauses, its own distance gate since 029 did not
adopt the head), clause by clause, from what 028's eval.sh wrote here:

    HERE=experiments/030-five-epochs RUN=runs/e030s43 bash experiments/028-site-views/eval.sh
    python experiments/030-five-epochs/decide.py
"""

import json
from pathlib import Path

from melanoma.bench.rules import diagnosis_clauses, site_shift_clause, verdict

here = Path(__file__).parent
stress = json.loads((here / "stress.json").read_text())
verdict([*diagnosis_clauses(json.loads((here / "diagnoses.json").read_text())),
         site_shift_clause(stress)])
