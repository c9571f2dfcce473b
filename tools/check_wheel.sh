#!/usr/bin/env bash
# A wheel that works alone: build it, install it with the core dependencies only into a fresh venv (no torch),
# and run `melanoma predict` and `melanoma evaluate` on the sample images it carries as package data.
# Usage: tools/check_wheel.sh [PYTHON]   (CI runs it after the tests; prints the core install's size)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$work/dist" . 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$work/venv/bin/python" -m pip install -q "$work"/dist/melanoma_classifier-*.whl 2>&1 | grep -v "^WARNING: Location" || true
cd "$work"  # away from the source tree: only the installed wheel can be imported
samples="$("$work/venv/bin/python" -c 'import melanoma, pathlib; print(pathlib.Path(melanoma.__file__).parent / "samples")')"
"$work/venv/bin/python" - <<'PY'
import importlib.util, sys
heavy = [m for m in ("torch", "torchvision", "lightning", "timm", "gradio") if importlib.util.find_spec(m)]
sys.exit(f"the core install pulled in {heavy}" if heavy else 0)
PY
"$work/venv/bin/melanoma" --version
"$work/venv/bin/melanoma" predict "$samples" --format csv -o "$work/pred.csv"
test "$(wc -l < "$work/pred.csv")" -eq 25  # a header and 24 rows
"$work/venv/bin/melanoma" evaluate "$samples" --out "$work/eval" > /dev/null
"$work/venv/bin/python" -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['n'] == 24, m['n']" "$work/eval/metrics.json"
if "$work/venv/bin/melanoma" train "$samples" --out "$work/run" 2> "$work/err"; then exit 1; fi
grep -q "\[train\] extra" "$work/err"
echo "wheel OK: core install $(du -sm "$work/venv" | cut -f1) MB (venv, no torch); predict, evaluate and the missing-extra message checked"
