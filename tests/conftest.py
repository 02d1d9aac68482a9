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


@pytest.fixture(scope="session")
def untrained_model() -> Callable[[Path], None]:
    """Factory: save an untrained ``models/model.pt`` (seed 0, with its checkpoint metadata)
    into a project that prepare and split have run in, as finetune would write it."""

    def save(root: Path) -> None:
        import torch

        from medclass.config import load_params
        from medclass.data.bundle import load_data
        from medclass.io import save_checkpoint
        from medclass.models.pretrained import pretrained_provenance
        from medclass.train.context import build_model, model_meta

        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            params = load_params()
            data = load_data(Path("data/split"), ("train",))
            torch.manual_seed(0)
            model = build_model(params, len(data.classes), data.in_chans)
            meta = model_meta(params, data, pretrained_provenance(model, params.train.pretrained))
            save_checkpoint("models/model.pt", {"model": model.state_dict(),
                                                "meta": {**meta, "epoch": 0}})

    return save
