"""Cold start of the core commands: ``melanoma predict`` on one image and ``melanoma evaluate`` on a few, each as a
fresh process (wall time, median of ``--repeats`` after one cache-warming run), and whether torch was imported.

    python benchmarks/cold_start.py [--repeats 5] [--out docs/results/cold_start.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "melanoma" / "samples"


def wall(args: list[str], repeats: int) -> tuple[float, bool]:
    code = f"import sys; sys.argv = {['melanoma', *args]!r}\nfrom melanoma.cli import app\ntry:\n    app()\n" \
           f"except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)"
    times, torch_loaded = [], False
    for k in range(repeats + 1):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        if k:
            times.append(time.perf_counter() - t)
        torch_loaded = "TORCH True" in out.stdout
    return statistics.median(times), torch_loaded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "cold_start.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for cls in ("benign", "malignant"):  # two images of each class: the "few images" of the issue
        (tmp / "few" / cls).mkdir(parents=True)
        for p in sorted((SAMPLES / cls).iterdir())[:2]:
            shutil.copy(p, tmp / "few" / cls / p.name)
    one = sorted((SAMPLES / "benign").iterdir())[0]
    rows = {}
    for name, cmd in (("predict one image", ["predict", str(one)]),
                      ("evaluate four images", ["evaluate", str(tmp / "few"), "--out", str(tmp / "eval")]),
                      ("evaluate four images, --plots", ["evaluate", str(tmp / "few"), "--out", str(tmp / "e2"),
                                                         "--plots"])):
        s, torch_loaded = wall(cmd, args.repeats)
        rows[name] = {"median_wall_s": round(s, 3), "torch_imported": torch_loaded}
        print(f"| {name} | {s:.2f} s | torch imported: {torch_loaded} |", flush=True)
    for name in ("evaluate four images", "evaluate four images, --plots"):
        rows[f"ratio {name} to predict"] = round(rows[name]["median_wall_s"]
                                                 / rows["predict one image"]["median_wall_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
