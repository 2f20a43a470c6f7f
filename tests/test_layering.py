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
