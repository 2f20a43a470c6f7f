"""The runtime layer (edge/) never imports torch, and imports flow train -> calibration -> edge only."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _edge_modules() -> list[str]:
    return sorted(
        "edge." + ".".join(p.relative_to(ROOT / "edge").with_suffix("").parts)
        for p in (ROOT / "edge").rglob("*.py")
        if p.name != "__init__.py" and p.name != "run.py"
    )


def test_edge_imports_no_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {_edge_modules()!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'train', 'calibration'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_edge_sources_do_not_reference_upper_layers() -> None:
    for path in (ROOT / "edge").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("torch", "train", "calibration", "transformers"), (
                    f"{path.relative_to(ROOT)} imports {name}"
                )


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at top level) of every absolute import in a source file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def test_calibration_imports_train_openly_and_never_torch() -> None:
    """calibration/ may use train's torch-free modules (release format, metrics, generator) at top level only."""
    for path in (ROOT / "calibration").rglob("*.py"):
        for name, top_level in _imports(path):
            if name.split(".")[0] == "train":
                assert top_level, f"{path.relative_to(ROOT)} imports {name} inside a function"
    code = (
        "import importlib, pkgutil, sys, calibration\n"
        "for m in pkgutil.iter_modules(calibration.__path__): importlib.import_module('calibration.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_train_has_no_import_cycle() -> None:
    """The modules of train/ import each other as a DAG (top-level and function-level imports alike)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "train").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {name for name, _ in _imports(path) if name.startswith("train.")}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import cycle: " + " -> ".join(trail + [module])
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if dep in graph:
                visit(dep, trail + [module])
        state[module] = 2

    for module in sorted(graph):
        visit(module, [])
