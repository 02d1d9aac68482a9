"""Fixtures shared across test packages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml


@pytest.fixture(scope="session")
def stage_project(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, dict[str, Any], Sequence[ModuleType]], Path]:
    """Factory: a tmp project holding ``params``, after running each stage module's ``main``
    in it (e.g. prepare, split, head), as DVC would in the repository root."""

    def make(name: str, params: dict[str, Any], stages: Sequence[ModuleType]) -> Path:
        from medclass.config import load_params

        root = tmp_path_factory.mktemp(name)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            loaded = load_params()
            for stage in stages:
                stage.main(loaded)
        return root

    return make
