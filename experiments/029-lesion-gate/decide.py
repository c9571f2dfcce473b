"""029's ship rule (NOTES.md, written before the head was fitted), clause by clause, from what eval.sh and
choose.py wrote:

    python experiments/029-lesion-gate/decide.py
"""

import json
from pathlib import Path

from melanoma.bench.rules import Clause, diagnosis_clauses, site_shift_clause, verdict

here = Path(__file__).parent
stress = json.loads((here / "stress.json").read_text())
held = json.loads((here / "head_choice.json").read_text())["held_out_source"]
verdict([*diagnosis_clauses(json.loads((here / "diagnoses.json").read_text())),
         site_shift_clause(stress),
         Clause("7 each lesion source held out of the gate's fit: its validation lesions refused <= 2%",
                ", ".join(f"{s} {100 * r['refused']:.1f}%" for s, r in held.items()),
                all(r["refused"] <= 0.02 for r in held.values()))])
