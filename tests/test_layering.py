"""The package's layering: a torch-free core (predict, explain, evaluate, audit, eda, report on ONNX Runtime)
beside the torch side (models, data transforms, train, the PyTorch engine, export)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SAMPLES

CORE = ("config", "imaging", "datasets", "sources", "calibrate", "ood", "inference", "evaluate", "audit", "eda",
        "report", "explain", "api", "cli")
TORCH_SIDE = ("torch", "torchvision", "lightning", "timm", "torchmetrics", "pytorch_grad_cam")


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_every_core_module_imports_without_torch():
    code = ("import importlib, sys\n"
            f"for name in {CORE!r}:\n"
            "    importlib.import_module('melanoma.' + name)\n"
            f"    heavy = [m for m in {TORCH_SIDE!r} if m in sys.modules]\n"
            "    assert not heavy, f'melanoma.{name} imported {heavy}'\n"
            "print('ok')\n")
    assert run_python(code).strip() == "ok"


def test_core_commands_run_without_torch(tmp_path: Path):
    code = ("import sys\nfrom melanoma.cli import app\n"
            "def run(*args):\n"
            "    try:\n        app(list(args), standalone_mode=False)\n"
            "    except SystemExit as e:\n        assert not e.code, (args, e.code)\n"
            f"run('evaluate', {str(SAMPLES)!r}, '--out', {str(tmp_path / 'eval')!r})\n"
            f"run('audit', {str(SAMPLES)!r}, '--out', {str(tmp_path / 'audit')!r})\n"
            f"run('eda', {str(SAMPLES)!r}, '--out', {str(tmp_path / 'eda')!r})\n"
            f"run('report', {str(tmp_path / 'eval')!r})\n"
            f"run('explain', {str(SAMPLES / 'malignant')!r}, '--out', {str(tmp_path / 'explain')!r})\n"
            f"print('HEAVY', [m for m in {TORCH_SIDE!r} if m in sys.modules])\n")
    out = run_python(code)
    assert "HEAVY []" in out, out
    assert (tmp_path / "eval" / "metrics.json").is_file() and (tmp_path / "eda" / "eda.json").is_file()
    assert len(list((tmp_path / "explain").glob("*.png"))) == 12


def test_a_command_whose_extra_is_missing_says_which_to_install(tmp_path: Path):
    # Hide torch as an install without the [train] extra would: an import hook that refuses it.
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'lightning', 'timm'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            f"sys.argv = ['melanoma', 'train', {str(SAMPLES)!r}, '--out', {str(tmp_path / 'run')!r}]\n"
            "from melanoma.cli import main\nmain()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"GLIBC_TUNABLES": "x", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "[train] extra" in out.stderr and "pip install" in out.stderr and "Traceback" not in out.stderr


def test_the_code_is_ruff_clean():
    import shutil

    import pytest

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).is_file():
        pytest.skip("ruff is not installed (it is in the [dev] extra)")
    out = subprocess.run([ruff, "check", "--output-format", "concise", "."], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]
