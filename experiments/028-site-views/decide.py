"""028's ship rule (NOTES.md, written before the run), clause by clause, from what eval.sh wrote:

    python experiments/028-site-views/decide.py
"""

import json
from pathlib import Path

from melanoma.bench.rules import diagnosis_clauses, site_shift_clause, verdict

here = Path(__file__).parent
stress = json.loads((here / "stress.json").read_text())
verdict([*diagnosis_clauses(json.loads((here / "diagnoses.json").read_text())),
         site_shift_clause(stress)])
