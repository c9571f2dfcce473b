"""030's ship rule (NOTES.md, written before the run: 028's six clauses, its own distance gate since 029 did not
adopt the head), clause by clause, from what eval.sh wrote:

    python experiments/030-five-epochs/decide.py
"""

import json
from pathlib import Path

from melanoma.bench.rules import diagnosis_clauses, refused_at_most, verdict

here = Path(__file__).parent
stress = json.loads((here / "stress.json").read_text())
verdict([*diagnosis_clauses(json.loads((here / "diagnoses.json").read_text())),
         refused_at_most(stress, {"zoom_out": 0.10, "grid": 0.10, "blur": 0.10, "ruler": 0.331, "bubbles": 0.052},
                         "6 site shift: zoom-out, grid, blur refused <= 10%; held-out ruler <= 33.1%, "
                         "bubbles <= 5.2%")])
