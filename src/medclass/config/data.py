"""Params of the data sources and the split (``data``, ``split``)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from medclass.config.base import _Strict


class SyntheticParams(_Strict):
    """Built-in procedurally generated chest-film-like dataset."""

    classes: list[str] = Field(
        default=["normal", "nodule", "opacity", "effusion"], min_length=2
    )
    images_per_class: int = Field(default=150, ge=3, le=100_000)
    size: int = Field(default=64, ge=16, le=1024)
    imbalance: float = Field(default=1.0, ge=1.0, le=100.0)
    difficulty: float = Field(default=0.5, ge=0.0, le=1.0)


MEDMNIST_2D_NAMES: tuple[str, ...] = (
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)
MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
_SLUG = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_KAGGLE_HANDLE = re.compile(rf"{_SLUG}/{_SLUG}(/versions/[0-9]+)?")


class MedMNISTParams(_Strict):
    """``data.source: medmnist``: which official MedMNIST 2-D file (name, image side in px)."""

    name: str = "pneumoniamnist"
    size: int = 28

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in MEDMNIST_2D_NAMES:
            close = difflib.get_close_matches(name, MEDMNIST_2D_NAMES, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(
                f"unknown MedMNIST dataset {value!r}; {hint}use one of: "
                + ", ".join(MEDMNIST_2D_NAMES)
            )
        return name

    @field_validator("size")
    @classmethod
    def _official_size(cls, value: int) -> int:
        if value not in MEDMNIST_SIZES:
            raise ValueError(
                f"size {value} is not an official MedMNIST size; use one of: "
                + ", ".join(map(str, MEDMNIST_SIZES))
            )
        return value


def _relative_inside(value: str, key: str) -> str:
    """``value`` must be a relative path that stays inside its base folder."""
    if Path(value).is_absolute() or value.startswith(("/", "\\")) or ".." in Path(value).parts:
        raise ValueError(f"{key} must be a relative path inside its folder (got {value!r})")
    return value


class KaggleParams(_Strict):
    """``data.source: kaggle``: a Kaggle dataset downloaded with kagglehub, then read as a
    class-per-subfolder tree (credentials come only from the environment)."""

    handle: str | None = None
    subdir: str | None = Field(default=None, min_length=1)

    @field_validator("handle")
    @classmethod
    def _handle_format(cls, value: str | None) -> str | None:
        if value is not None and not _KAGGLE_HANDLE.fullmatch(value):
            raise ValueError(
                f"handle {value!r} is not a Kaggle dataset handle; use owner/dataset or "
                "owner/dataset/versions/N (pin a version for reproducible runs)"
            )
        return value

    @field_validator("subdir")
    @classmethod
    def _subdir_inside(cls, value: str | None) -> str | None:
        return None if value is None else _relative_inside(value, "subdir")


class CsvParams(_Strict):
    """``data.source: csv``: an image folder (``data.path``) plus a CSV/TSV of labels.

    ``image_column`` holds a path relative to ``image_dir`` (``img/001.png``), or an id: with
    ``extension`` the file is ``<id><extension>``; without it an id that has no suffix is
    looked up by file stem anywhere under ``image_dir`` (e.g. HAM10000's two part folders)."""

    file: str = "labels.csv"
    image_dir: str = "."
    image_column: str = Field(default="image", min_length=1)
    label_column: str = Field(default="label", min_length=1)
    extension: str | None = Field(default=None, pattern=r"^\.[A-Za-z0-9]+$")
    group_column: str | None = Field(default=None, min_length=1)
    split_column: str | None = Field(default=None, min_length=1)
    delimiter: Literal["auto", ",", ";", "\t", "|"] = "auto"

    @field_validator("image_dir")
    @classmethod
    def _dir_inside(cls, value: str) -> str:
        return _relative_inside(value, "csv.image_dir")


class DataParams(_Strict):
    """Where images come from and how they are decoded for training."""

    source: Literal["synthetic", "folder", "csv", "npz", "medmnist", "kaggle"] = "synthetic"
    path: str = "data/external"
    layout: Literal["auto", "classes", "splits"] = "auto"
    class_names: list[str] | None = None
    image_size: int = Field(default=32, ge=8, le=2048)
    channels: Literal["auto", 1, 3] = "auto"
    metadata: str | None = Field(default="metadata.csv", min_length=1)
    synthetic: SyntheticParams = SyntheticParams()
    medmnist: MedMNISTParams = MedMNISTParams()
    kaggle: KaggleParams = KaggleParams()
    csv: CsvParams = CsvParams()

    @model_validator(mode="after")
    def _kaggle_has_handle(self) -> DataParams:
        if self.source == "kaggle" and self.kaggle.handle is None:
            raise ValueError(
                "kaggle.handle is required with source: kaggle (e.g. owner/dataset/versions/1)"
            )
        return self

    @model_validator(mode="after")
    def _metadata_inside_data_path(self) -> DataParams:
        meta = self.metadata
        if meta is not None and (
            Path(meta).is_absolute() or meta.startswith(("/", "\\")) or ".." in Path(meta).parts
        ):
            raise ValueError(
                f"metadata must be a path relative to data.path, inside it (got {meta!r})"
            )
        return self


class SplitParams(_Strict):
    """Stratified train/val/test split; duplicates and ``group_by`` groups stay in one split."""

    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    use_predefined: bool = True
    near_duplicate_distance: int | None = Field(default=8, ge=0, le=64)
    group_by: str | None = Field(default=None, min_length=1)
    group_pattern: str | None = Field(default=None, min_length=1)

    @field_validator("group_pattern")
    @classmethod
    def _one_capture_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"group_pattern {value!r} is not a valid regular expression ({exc}); fix it, "
                r"e.g. '(person\d+)_'"
            ) from None
        if compiled.groups < 1:
            raise ValueError(
                f"group_pattern {value!r} has no capture group; wrap the patient id in "
                r"parentheses, e.g. '(person\d+)_'"
            )
        return value

    @model_validator(mode="after")
    def _fractions_leave_train(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1 to leave a train split")
        return self
