"""027's ship rule (NOTES.md, written before the run), clause by clause, from what eval.sh wrote:

    python experiments/027-seven-diagnoses/decide.py
"""

import json
from pathlib import Path

from melanoma.bench.rules import diagnosis_clauses, verdict

verdict(diagnosis_clauses(json.loads((Path(__file__).parent / "diagnoses.json").read_text())))
