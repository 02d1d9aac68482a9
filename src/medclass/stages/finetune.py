"""finetune: stage 2, all parameters with separate backbone/head LRs, early stopping."""

from __future__ import annotations

from typing import Any

from medclass.config import Params
from medclass.data.bundle import load_data
from medclass.errors import MedclassError
from medclass.io import load_checkpoint, write_json
from medclass.models.pretrained import Provenance, pretrained_provenance
from medclass.stages._common import (
    CKPT_DIR,
    METRICS_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    SPLIT_DIR,
    repro_tag,
    run_stage,
)
from medclass.stages._dist import dist_session
from medclass.train.context import (
    build_model,
    fingerprint,
    model_meta,
    seed_everything,
)
from medclass.train.loop import Outputs, fit
from medclass.train.phases import finetune_phase

HEAD_CKPT = MODELS_DIR / "head.pt"


# the params groups this stage declares in dvc.yaml, recorded in its checkpoint's meta
PARAMS_GROUPS = ("repro", "model", "seed", "train", "finetune")

def main(params: Params) -> None:
    with dist_session(params) as dist:
        _run(params, dist.is_main)


def _run(params: Params, write_metrics: bool) -> None:
    seed_everything(params.seed, params.train.deterministic)
    data = load_data(SPLIT_DIR)
    ckpt = load_checkpoint(HEAD_CKPT)
    if ckpt["meta"]["model"] != params.model:
        raise MedclassError(
            f"{HEAD_CKPT} holds {ckpt['meta']['model']!r} but params say {params.model!r}; "
            "run `dvc repro` so the head stage reruns"
        )
    model = build_model(params, len(data.classes), data.in_chans)
    weights = pretrained_provenance(model, params.train.pretrained)
    _check_head_weights(ckpt["meta"], weights)
    model.load_state_dict(ckpt["model"])
    phase = finetune_phase(params)
    fp = fingerprint(phase, params.model, params.seed, params.train.model_dump(mode="json"),
                     files=(HEAD_CKPT, SPLIT_DIR / "stats.json"))
    summary = fit(model, phase, data, params.train, seed=params.seed,
                  meta=model_meta(params, data, weights, PARAMS_GROUPS),
                  outputs=Outputs(MODELS_DIR / "model.pt", CKPT_DIR / "finetune_last.pt",
                                  PLOTS_DIR / "finetune"),
                  fingerprint=fp)
    summary.pop("phase")
    if write_metrics:
        write_json(METRICS_DIR / "finetune.json", {**summary, "repro": repro_tag(params)})


def _check_head_weights(meta: dict[str, Any], weights: Provenance) -> None:
    """Refuse a head checkpoint trained from other pretrained weights than are loaded now."""
    if meta.get("pretrained_sha256") != weights["pretrained_sha256"]:
        raise MedclassError(
            f"{HEAD_CKPT} was trained from other pretrained weights than train.pretrained "
            f"({weights['pretrained_file']}) holds now; run `dvc repro` so the head stage reruns"
        )


if __name__ == "__main__":
    run_stage("finetune", main)
