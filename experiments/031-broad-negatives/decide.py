"""031's ship rule (NOTES.md, written before the gate was fitted), clause by clause, for one network's refit:

    python experiments/031-broad-negatives/decide.py 028      # or 030
"""

import json
import sys
from pathlib import Path

from melanoma.bench.rules import Clause, diagnosis_clauses, site_shift_clause, verdict

here, name = Path(__file__).parent, sys.argv[1]
diag = json.loads((here / f"diagnoses-{name}.json").read_text())
stress = json.loads((here / f"stress-{name}.json").read_text())
choice = json.loads((here / f"head_choice-{name}.json").read_text())
held = choice["by_c"][str(choice["chosen_c"])]["held_out_source_refused"]
wider = diag["nonlesion_pictures"]
verdict([*diagnosis_clauses(diag),
         site_shift_clause(stress),
         Clause("7 each lesion source held out of the gate's fit: its validation lesions refused <= 2%",
                ", ".join(f"{s} {100 * r:.1f}%" for s, r in held.items()), all(r <= 0.02 for r in held.values())),
         Clause("8 the wider non-lesion set refused >= 95%", f"{100 * wider['refused']:.1f}% of {wider['n']} ("
                + ", ".join(f"{s.removeprefix('nonlesion:')} {100 * r:.0f}%" for s, r in wider["by_source"].items())
                + ")", wider["refused"] >= 0.95)])
