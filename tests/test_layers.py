"""The layer contracts of pyproject's ``[tool.importlinter]`` (shared DESIGN "Layers") hold.

``lint-imports`` (import-linter, the venv's binary) builds the import graph with grimp, lazy
imports inside functions included, and checks each forbidden contract for direct and indirect
chains. A planted violation in a copy of the package proves the check can fail.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import medclass

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(medclass.__file__).parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
STAGES_CONTRACT = "stages-on-top"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - py3.10
    tomllib = pytest.importorskip("tomli")


def _lint(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.is_file():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_layer_contracts_are_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_stage_contract_covers_every_top_level_module() -> None:
    """A new top-level module must join ``stages-on-top`` (or it could import a stage)."""
    tops = {f"medclass.{m.name}" for m in pkgutil.iter_modules([str(PACKAGE)])}
    listed = set(_contracts()[STAGES_CONTRACT]["source_modules"])
    assert listed == tops - {"medclass.stages"}


def test_planted_violation_breaks_a_contract(tmp_path: Path) -> None:
    """evaluate importing train lazily, in a copy of the package, fails ``lint-imports``."""
    shutil.copytree(PACKAGE, tmp_path / "medclass",
                    ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "medclass" / "evaluate" / "metrics.py"
    planted.write_text(planted.read_text()
                       + "\n\ndef _planted() -> None:\n    import medclass.train.loop  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _lint(tmp_path, env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "evaluate and export do not import train or stages BROKEN" in result.stdout
    assert "medclass.evaluate.metrics -> medclass.train.loop" in result.stdout
