"""Real DVC in a git+DVC copy of the repository: a ``train.pretrained`` file under ``weights/``
is a dependency of head, finetune and kfold, so replacing it (and ``dvc add``-ing the new
version, as weights/README.md says) makes ``dvc status`` report those stages changed.

Fast: no stage runs. Stand-in outputs are recorded with ``dvc commit``, which writes the
stages' lock entries (dependency hashes included) exactly as a finished ``dvc repro`` would."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_tools import copy_repo, run

WEIGHTS = "weights/tiny.safetensors"
STAGES = ("head", "finetune", "kfold")
STAND_INS = (  # the stages' deps from upstream stages and their outs (files; folders with a file)
    "data/split/stats.json", "models/head.pt", "models/ckpt/head_last.pt", "plots/head/x",
    "metrics/head.json", "models/model.pt", "models/ckpt/finetune_last.pt",
    "plots/finetune/x", "metrics/finetune.json", "models/kfold/x", "plots/kfold/x",
    "metrics/kfold.json",
)


def _status(proj: Path) -> dict:
    return json.loads(run(proj, "dvc", "status", "--json", *STAGES).stdout or "{}")


def test_replacing_the_weights_file_makes_training_stages_stale(tmp_path: Path) -> None:
    proj = copy_repo(tmp_path / "proj", {"model": "timm/test_resnet.r160_in1k",
                                         "train": {"pretrained": WEIGHTS}})
    (proj / WEIGHTS).write_bytes(b"first weights")
    run(proj, "dvc", "add", WEIGHTS)
    for rel in STAND_INS:
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(rel)
    run(proj, "dvc", "commit", "-f", *STAGES)
    assert _status(proj) == {}

    (proj / WEIGHTS).write_bytes(b"other weights, same name")
    run(proj, "dvc", "add", WEIGHTS)
    status = _status(proj)
    assert set(status) == set(STAGES)
    for stage in STAGES:
        assert {"changed deps": {"weights": "modified"}} in status[stage], status
