"""head: stage 1, train the classifier head (frozen pretrained backbone; see README)."""

from __future__ import annotations

from medclass.config import Params
from medclass.data.bundle import load_data
from medclass.io import write_json
from medclass.models.pretrained import pretrained_provenance
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
    check_image_size,
    fingerprint,
    model_meta,
    seed_everything,
)
from medclass.train.loop import Outputs, fit
from medclass.train.phases import head_phase
from medclass.train.phases import resolve_head_mode as resolve_mode

# the params groups this stage declares in dvc.yaml, recorded in its checkpoint's meta
PARAMS_GROUPS = ("repro", "model", "seed", "train", "head")

def main(params: Params) -> None:
    with dist_session(params) as dist:
        _run(params, dist.is_main)


def _run(params: Params, write_metrics: bool) -> None:
    check_image_size(params.model, params.data.image_size)
    seed_everything(params.seed, params.train.deterministic)
    data = load_data(SPLIT_DIR)
    model = build_model(params, len(data.classes), data.in_chans)
    weights = pretrained_provenance(model, params.train.pretrained)
    mode = resolve_mode(params)
    phase = head_phase(params, mode)
    fp = fingerprint(phase, params.model, params.seed, params.train.model_dump(mode="json"),
                     weights, files=(SPLIT_DIR / "stats.json", SPLIT_DIR / "manifest.csv"))
    summary = fit(model, phase, data, params.train, seed=params.seed,
                  meta=model_meta(params, data, weights, PARAMS_GROUPS),
                  outputs=Outputs(MODELS_DIR / "head.pt", CKPT_DIR / "head_last.pt",
                                  PLOTS_DIR / "head"),
                  fingerprint=fp)
    summary.pop("phase")
    if write_metrics:
        write_json(METRICS_DIR / "head.json",
                   {"mode": mode, **summary, "repro": repro_tag(params)})


if __name__ == "__main__":
    run_stage("head", main)
