"""dvc.yaml's model-registry `artifacts:` as real DVC reads them: valid GTO names, paths that
are stage outputs (served from the DVC remote), and static meta that matches the default run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from medclass.data.synthetic import render

REPO = Path(__file__).resolve().parents[1]
NAMES = ("medclass-model", "medclass-export")


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    """A DVC repo (no git) holding only this repository's dvc.yaml and params.yaml."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("registry")
    Repo.init(str(root), no_scm=True).close()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, root / name)
    repo = Repo(str(root))
    yield repo
    repo.close()


def test_artifacts_are_valid_and_point_at_stage_outputs(dvc_repo):
    from dvc.repo.artifacts import check_name_format

    artifacts = dvc_repo.artifacts.read()["dvc.yaml"]
    assert set(NAMES) <= set(artifacts)
    outs = {str(o.def_path): stage.name for stage in dvc_repo.index.stages for o in stage.outs
            if o.use_cache}
    assert {n: outs.get(artifacts[n].path) for n in NAMES} == {
        "medclass-model": "finetune", "medclass-export": "export"}
    for name in NAMES:
        check_name_format(name)  # raises for a name GTO cannot tag
        assert artifacts[name].type == "model" and artifacts[name].desc


def test_static_meta_matches_the_default_params(dvc_repo):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    data = params["data"]
    assert data["source"] == "synthetic" and data["channels"] == "auto"
    film = render(data["synthetic"]["classes"][0], 0, 8, 0.5, np.random.default_rng(0))
    channels = 1 if film.ndim == 2 else film.shape[-1]  # auto: grayscale films -> 1 channel
    for name in NAMES:
        meta = dvc_repo.artifacts.read()["dvc.yaml"][name].meta
        assert meta["classes"] == data["synthetic"]["classes"], name
        assert meta["input_size"] == data["image_size"], name
        assert meta["channels"] == channels, name
