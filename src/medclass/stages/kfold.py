"""kfold: stratified k-fold cross-validation over train+val and fold ensembles on test."""

from __future__ import annotations

from medclass.config import Params
from medclass.stages._common import (
    METRICS_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    SPLIT_DIR,
    run_stage,
)
from medclass.stages._dist import dist_session
from medclass.train.kfold import KFoldPaths, run_kfold

PATHS = KFoldPaths(MODELS_DIR / "kfold", PLOTS_DIR / "kfold", METRICS_DIR / "kfold.json")


def main(params: Params) -> None:
    with dist_session(params):
        run_kfold(params, SPLIT_DIR, PATHS)


if __name__ == "__main__":
    run_stage("kfold", main)
