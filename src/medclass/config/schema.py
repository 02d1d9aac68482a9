"""The whole params.yaml (``Params``), the remaining stage groups, ``load_params``."""

from __future__ import annotations

import difflib
import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from medclass.config.base import _Strict
from medclass.config.data import CsvParams, DataParams, SplitParams
from medclass.config.repro import ReproParams, exact_conflicts
from medclass.config.train import FinetuneParams, HeadParams, TrainParams
from medclass.errors import MedclassError

PARAMS_FILE = "params.yaml"


class VerifyParams(_Strict):
    """Backbone checks before training (the selected ``model`` is always included)."""

    models: Literal["all", "selected"] | list[str] = "all"
    image_size: int | None = Field(default=None, ge=8, le=2048)
    batch_size: int = Field(default=2, ge=1)
    latency_runs: int = Field(default=3, ge=1)


class KFoldParams(_Strict):
    """Stratified k-fold cross-validation over train+val (the ``kfold`` stage) and ensembles."""

    folds: int = Field(default=5, ge=2, le=100)
    head_epochs: int = Field(default=1, ge=0)
    epochs: int = Field(default=3, ge=1)
    patience: int = Field(default=2, ge=1)
    ensemble: list[Literal["mean", "vote"]] = Field(default=["mean", "vote"], min_length=1)


EXTERNAL_ROOT = "data/external"
"""External test sets must live here: the evaluate stage's DVC deps track this folder."""


class ExternalSet(_Strict):
    """One labelled set scored next to the test split (``evaluate.external``): a
    class-folder tree or a CSV source under ``data/external/``."""

    name: str
    path: str
    source: Literal["folder", "csv"] = "folder"
    csv: CsvParams = CsvParams()

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not (value.isascii() and value.isidentifier()):
            raise ValueError(f"name {value!r} is not identifier-like; use letters, digits and _ "
                             "(e.g. site_b)")
        return value

    @field_validator("path")
    @classmethod
    def _inside_external(cls, value: str) -> str:
        parts = PurePosixPath(value.replace("\\", "/")).parts
        if ".." in parts or parts[:2] != ("data", "external") or len(parts) < 3:
            raise ValueError(
                f"path {value!r} must be a folder inside {EXTERNAL_ROOT}/ (e.g. "
                f"{EXTERNAL_ROOT}/site_b, no '..'): evaluate's DVC deps track {EXTERNAL_ROOT}, "
                "so only sets there rerun evaluate when they change")
        return value

    @model_validator(mode="after")
    def _csv_fits(self) -> ExternalSet:
        if self.source == "folder" and "csv" in self.model_fields_set:
            raise ValueError(f"external set {self.name!r} has csv settings but source: folder; "
                             "set source: csv or remove csv")
        if self.csv.split_column is not None:
            raise ValueError(f"external set {self.name!r}: csv.split_column is set, but a set "
                             "is scored whole; remove split_column")
        file = PurePosixPath(self.csv.file.replace("\\", "/"))
        if file.is_absolute() or ".." in file.parts:
            raise ValueError(f"external set {self.name!r}: csv.file must be a relative path "
                             f"inside the set's folder (got {self.csv.file!r})")
        return self


class EvaluateParams(_Strict):
    """Test-split evaluation: metrics, calibration, uncertainty, CIs, figures, model card."""

    batch_size: int = Field(default=256, ge=1)
    n_bins: int = Field(default=15, ge=2, le=100)
    temperature_scaling: bool = True
    mc_dropout_passes: int = Field(default=0, ge=0, le=1000)
    bootstrap: int = Field(default=1000, ge=0, le=100_000)
    ci: float = Field(default=0.95, gt=0.0, lt=1.0)
    gradcam_per_class: int = Field(default=2, ge=0, le=32)
    embedding: Literal["pca", "tsne", "none"] = "pca"
    gallery: int = Field(default=16, ge=0, le=100)
    report: bool = True
    tta: Literal["none", "flip", "flip_rot"] = "none"
    external: list[ExternalSet] = Field(default_factory=list)

    @model_validator(mode="after")
    def _mc_passes_off_or_several(self) -> EvaluateParams:
        if self.mc_dropout_passes == 1:
            raise ValueError("mc_dropout_passes: use 0 (off) or at least 2 passes")
        return self

    @model_validator(mode="after")
    def _external_names_unique(self) -> EvaluateParams:
        names = [s.name for s in self.external]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ValueError(f"external lists the name {twice!r} twice; give each set its own "
                             "name")
        return self


ExportFormat = Literal["pytorch", "torchscript", "onnx", "tflite", "coreml", "tensorrt"]


class ExportParams(_Strict):
    """The export stage: deployment formats of the best checkpoint and their parity checks."""

    formats: Literal["all"] | list[ExportFormat] = "all"
    parity_batch: int = Field(default=32, ge=1, le=1024)
    latency_runs: int = Field(default=10, ge=1, le=1000)
    tolerance: float = Field(default=1e-4, gt=0.0)
    fp16_tolerance: float = Field(default=5e-2, gt=0.0)
    onnx_opset: int = Field(default=18, ge=13, le=21)
    onnxslim: bool = False
    tensorrt_fp16: bool = True

    @field_validator("formats", mode="before")
    @classmethod
    def _known_formats(cls, value: Any) -> Any:
        """Name the unknown format, its close matches and the valid choices in one line."""
        known = get_args(ExportFormat)
        if isinstance(value, str) and value in known:
            raise ValueError(f"a single format must be a list: [{value}] (or all)")
        names = [value] if isinstance(value, str) and value != "all" else value
        if not isinstance(names, list):
            return value  # "all" or not a list: pydantic's own checks
        for name in names:
            if isinstance(name, str) and name not in known:
                close = difflib.get_close_matches(name.lower(), known, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ValueError(
                    f"unknown format {name!r}; {hint}use all or a list of: " + ", ".join(known)
                )
        return value

    @model_validator(mode="after")
    def _formats_listed_once(self) -> ExportParams:
        if isinstance(self.formats, list):
            if not self.formats:
                raise ValueError("formats is empty; list at least one format or use all")
            if len(set(self.formats)) != len(self.formats):
                raise ValueError(f"formats lists a format twice: {self.formats}")
        return self


class PlanMeasured(_Strict):
    """The planner's inputs measured on the machine it ran on, and its prediction."""

    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    train_img_s: float | None = None
    eval_img_s: float | None = None
    machine: str | None = None
    predicted_min: float | None = None


class PlanParams(_Strict):
    """Written by ``medclass recipe plan`` (``medclass.plan``); all null: not planned."""

    budget_min: float | None = Field(default=None, gt=0)
    slowdown: float | None = Field(default=None, ge=1)
    measured: PlanMeasured = PlanMeasured()


class Params(_Strict):
    """The whole params.yaml."""

    model: str = "simple_cnn"
    seed: int = Field(default=42, ge=0)
    repro: ReproParams = ReproParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    verify: VerifyParams = VerifyParams()
    head: HeadParams = HeadParams()
    finetune: FinetuneParams = FinetuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    kfold: KFoldParams = KFoldParams()
    export: ExportParams = ExportParams()
    plan: PlanParams = PlanParams()

    @model_validator(mode="before")
    @classmethod
    def _exact_is_fp32(cls, raw: Any) -> Any:
        """In exact mode ``train.precision: auto`` means fp32, on CUDA too."""
        if not isinstance(raw, dict):
            return raw
        repro, train = raw.get("repro") or {}, raw.get("train") or {}
        exact = not isinstance(repro, dict) or repro.get("mode", "exact") == "exact"
        if exact and isinstance(train, dict) and train.get("precision", "auto") == "auto":
            raw = {**raw, "train": {**train, "precision": "fp32"}}
        return raw

    @model_validator(mode="after")
    def _exact_mode(self) -> Params:
        problems = exact_conflicts(self.repro, self.train)
        if problems:
            raise ValueError(f"repro.mode exact: {problems[0]}")
        return self


def _clean_loc(loc: tuple[Any, ...]) -> str:
    """Dotted key path without pydantic's union-member tags (``literal['auto']``, ``float``)."""
    keys = [str(p) for p in loc if not (isinstance(p, str) and (
        "[" in p or p in {"float", "int", "str", "bool", "constrained-float", "constrained-int"}))]
    return ".".join(keys) or "<root>"


def _format_error(err: ValidationError, source: str) -> str:
    errors = err.errors()
    key = _clean_loc(errors[0]["loc"])
    same = [e for e in errors if _clean_loc(e["loc"]) == key]  # one per union member
    first = same[0]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check spelling; see README 'Params')"
    elif first["type"] == "value_error":  # our validators' own message already names the fix
        msg = first["msg"].removeprefix("Value error, ")
    else:
        msgs = list(dict.fromkeys(e["msg"].removeprefix("Input ") for e in same))
        msg = "Input " + ", or ".join(msgs)
        if "input" in first and not isinstance(first["input"], dict):
            msg = f"{msg} (got {first['input']!r})"
    rest = len(errors) - len(same)
    more = f" (+{rest} more)" if rest else ""
    return f"{source}: {key}: {msg}{more}"


def _overlaps(a: str, b: str) -> bool:
    """``a`` and ``b`` are one folder, or one holds the other (resolved from the cwd)."""
    pa, pb = Path(a).resolve(), Path(b).resolve()
    return pa == pb or pa in pb.parents or pb in pa.parents


def _check_external_sets(params: Params, source: str) -> None:
    """An external set must not share a folder with the training images (it would be
    trained on, or be read as a class folder)."""
    data = params.data
    if data.source not in ("folder", "csv"):
        return  # the other sources do not read training images from data.path's tree
    for ext in params.evaluate.external:
        if _overlaps(ext.path, data.path):
            raise MedclassError(
                f"{source}: evaluate.external: set {ext.name!r} ({ext.path}) overlaps data.path "
                f"'{data.path}', the training images; give each its own folder, e.g. data.path: "
                f"{EXTERNAL_ROOT}/train and the set in {EXTERNAL_ROOT}/{ext.name}")


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping; raise one-line ``MedclassError`` naming the bad key."""
    if not isinstance(raw, dict):
        raise MedclassError(f"{source}: expected a mapping of param groups at the top level")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise MedclassError(_format_error(err, source)) from None
    from medclass.models.registry import check_model_name, get_spec

    t = params.train
    if params.finetune.strategy == "gradual" and t.nproc_per_node * t.nnodes > 1:
        raise MedclassError(
            f"{source}: finetune.strategy: gradual changes the trained parameters between "
            "epochs, which DDP cannot follow; use partial or train.nproc_per_node: 1"
        )
    _check_external_sets(params, source)
    check_model_name(params.model)
    min_size = get_spec(params.model).min_size
    if params.data.image_size < min_size:
        raise MedclassError(
            f"{source}: data.image_size: {params.data.image_size} px is below {params.model}'s "
            f"minimum of {min_size} px; set data.image_size >= {min_size} or pick another model"
        )
    return params


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedclassError(f"{p} not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise MedclassError(f"{p}:{where} malformed YAML; fix the syntax") from None
    return parse_params(raw, str(p))
