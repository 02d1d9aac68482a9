"""Every stage's ``deps`` in dvc.yaml cover the medclass code the stage executes.

For each stage the module its ``cmd`` runs (``python -m medclass.stages.X``, or
``medclass.launch … medclass.stages.X``, which also executes ``medclass.launch``) is the root;
grimp's import graph (lazy imports inside functions included) gives what it imports, closed
over the packages whose ``__init__`` Python executes on the way and over ``medclass.models``,
whose ``__init__`` imports every family by name (invisible to grimp). A dep covers a module's
file when it is that file or a folder above it (``src/medclass/config``).

Checking, not generating: dvc.yaml stays hand-ordered and commented, folders stay folders where
a stage uses most of a package, and a missing dep fails here with the file to add. A ``src/``
dep the stage no longer imports fails too (it would rerun the stage for nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STAGE_MODULE = re.compile(r"\bmedclass\.stages\.\w+")
LAUNCH = "medclass.launch"
PLUGIN_PACKAGES = ("medclass.models",)  # __init__ imports all submodules via pkgutil


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("medclass", cache_dir=None)


def entry_modules(cmd: str) -> set[str]:
    """The medclass modules a stage command runs directly."""
    found = set(STAGE_MODULE.findall(cmd))
    if re.search(rf"-m\s+{re.escape(LAUNCH)}\b", cmd):
        found.add(LAUNCH)
    return found


def executed_modules(graph: grimp.ImportGraph, roots: Iterable[str]) -> set[str]:
    """``roots`` plus everything they import, their parent packages and plugin packages."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(graph.find_modules_directly_imported_by(module))
        if "." in module:
            todo.append(module.rsplit(".", 1)[0])
        if module in PLUGIN_PACKAGES:
            todo.extend(graph.find_descendants(module))
    return seen


def module_file(module: str) -> str:
    """The file of ``module`` relative to the repository root (``src/medclass/…``)."""
    base = SRC.joinpath(*module.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    assert path.is_file(), f"{module}: no source file at {path}"
    return path.relative_to(ROOT).as_posix()


def covered(path: str, deps: Iterable[str]) -> bool:
    """Whether a dep is ``path`` itself or a folder above it."""
    return any(path == d.rstrip("/") or path.startswith(d.rstrip("/") + "/") for d in deps)


def _deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def _files(graph: grimp.ImportGraph, stage: dict) -> set[str]:
    return {module_file(m) for m in executed_modules(graph, entry_modules(stage["cmd"]))}


def missing_deps(graph: grimp.ImportGraph, stage: dict) -> list[str]:
    """Files of the modules ``stage`` executes that its ``deps`` do not cover."""
    deps = _deps(stage)
    return sorted(f for f in _files(graph, stage) if not covered(f, deps))


def stale_deps(graph: grimp.ImportGraph, stage: dict) -> list[str]:
    """Package-code deps (``src/``) that cover no file the stage executes (needless reruns)."""
    files = _files(graph, stage)
    return [d for d in _deps(stage)
            if d.startswith("src/") and not any(covered(f, [d]) for f in files)]


def test_every_stage_runs_a_medclass_stage_module() -> None:
    for name, stage in _stages().items():
        assert f"medclass.stages.{name}" in entry_modules(stage["cmd"]), name


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_cover_imported_modules(name: str) -> None:
    missing = missing_deps(_graph(), _stages()[name])
    assert not missing, f"dvc.yaml stage {name!r}: add to deps: {missing}"


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_list_no_unused_code(name: str) -> None:
    stale = stale_deps(_graph(), _stages()[name])
    assert not stale, f"dvc.yaml stage {name!r}: the stage does not import {stale}"


def test_uncovered_import_is_reported() -> None:
    """A stage listing only itself misses its imports; a planted import adds its files."""
    graph = _graph()
    stage = {"cmd": "python -m medclass.stages.evaluate",
             "deps": ["src/medclass/stages/evaluate.py"]}
    missing = missing_deps(graph, stage)
    assert {"src/medclass/models/rebuild.py", "src/medclass/io.py"} <= set(missing)
    assert "src/medclass/export/status.py" not in missing
    stage["deps"] += missing
    assert stale_deps(graph, {**stage, "deps": [*stage["deps"], "src/medclass/export"]}) == [
        "src/medclass/export"]
    graph.add_import(importer="medclass.paths", imported="medclass.export.status")
    assert missing_deps(graph, stage) == ["src/medclass/export/__init__.py",
                                          "src/medclass/export/status.py"]


def test_folder_dep_covers_its_files() -> None:
    assert covered("src/medclass/config/schema.py", ["src/medclass/config"])
    assert covered("src/medclass/config/schema.py", ["src/medclass/config/"])
    assert not covered("src/medclass/configs.py", ["src/medclass/config"])
    assert entry_modules("python -m medclass.launch --nnodes 1 medclass.stages.head") == {
        LAUNCH, "medclass.stages.head"}
