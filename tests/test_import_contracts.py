"""The import contracts in pyproject.toml hold, and a change that breaks one is caught."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(LINT, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    for package in ("ikol_engine", "ikol_blender"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.npz", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "ikol_engine" / "skeleton" / "tree.py").open("a") as tree:
        tree.write("\nfrom ..track import solve  # the bottom reaching up\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "Engine stages import only the stages below them BROKEN" in result.stdout
    assert "No import cycles between sibling modules anywhere BROKEN" in result.stdout
