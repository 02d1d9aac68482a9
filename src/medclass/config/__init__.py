"""The params.yaml schema (one pydantic model per stage group) and ``load_params``.

Split by topic: ``data`` (sources, split), ``train`` (train, head, finetune), ``schema`` (the
other stage groups, the whole file, validation and loading).
"""

from medclass.config.data import (
    CsvParams,
    DataParams,
    KaggleParams,
    MedMNISTParams,
    SplitParams,
    SyntheticParams,
)
from medclass.config.repro import ReproParams
from medclass.config.schema import (
    PARAMS_FILE,
    EvaluateParams,
    ExportFormat,
    ExportParams,
    KFoldParams,
    Params,
    VerifyParams,
    load_params,
    parse_params,
)
from medclass.config.train import (
    AugmentParams,
    FinetuneParams,
    HeadParams,
    MixupParams,
    SwaParams,
    TrainParams,
)

__all__ = [
    "PARAMS_FILE", "AugmentParams", "CsvParams", "DataParams", "EvaluateParams", "ExportFormat",
    "ExportParams", "FinetuneParams", "HeadParams", "KFoldParams", "KaggleParams",
    "MedMNISTParams", "MixupParams", "Params", "ReproParams", "SplitParams", "SwaParams",
    "SyntheticParams", "TrainParams", "VerifyParams", "load_params", "parse_params",
]
