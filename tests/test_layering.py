"""The package's layering: a torch-free core (``melanoma.*``: predict, explain, evaluate, audit, eda, report, the app,
on ONNX Runtime) beside the torch side (``melanoma.nn``: data transforms, models, train, fit, export, the PyTorch
engine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SAMPLES

SRC = Path(__file__).resolve().parents[1] / "src" / "melanoma"
# the core is every module outside melanoma.nn: the layout is the layering (no list here to fall out of date)
OUTSIDE_CORE = ("nn", "__init__.py", "__main__.py")
CORE = tuple(sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                    for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in OUTSIDE_CORE))
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
    assert out.returncode == 3, out.stdout + out.stderr
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


def import_graph() -> dict[str, set[str]]:
    """melanoma module -> the melanoma modules it imports anywhere in its body (lazy imports included)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "src" / "melanoma"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                if target.startswith("melanoma"):
                    deps.add(target)
                    deps |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` may name a module
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("melanoma")}
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"melanoma.engines.onnx_engine", "melanoma.nn.torch_engine", "melanoma.nn.fit"} <= graph.keys()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
