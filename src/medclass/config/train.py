"""Params of training (``train``, ``head``, ``finetune``)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from medclass.config.base import _Strict

WEIGHTS_ROOT = "weights"
"""Local pretrained weights must live here: the training stages' DVC deps track this folder."""


class AugmentParams(_Strict):
    """Per-knob overrides of the ``train.augment`` preset (None: the preset's value)."""

    rotate: float | None = Field(default=None, ge=0.0, le=180.0)
    scale: float | None = Field(default=None, ge=0.0, lt=1.0)
    shift: float | None = Field(default=None, ge=0.0, le=0.5)
    brightness: float | None = Field(default=None, ge=0.0, le=1.0)
    contrast: float | None = Field(default=None, ge=0.0, lt=1.0)
    hflip: float | None = Field(default=None, ge=0.0, le=1.0)
    vflip: float | None = Field(default=None, ge=0.0, le=1.0)
    blur: float | None = Field(default=None, ge=0.0, le=1.0)
    erase: float | None = Field(default=None, ge=0.0, le=1.0)
    clahe: float | None = Field(default=None, ge=0.0, le=1.0)
    policy: Literal["none", "randaugment", "trivialaugment"] | None = None
    policy_ops: int | None = Field(default=None, ge=1, le=10)
    policy_magnitude: int | None = Field(default=None, ge=0, le=30)
    saturation: float | None = Field(default=None, ge=0.0, lt=1.0)
    hue: float | None = Field(default=None, ge=0.0, le=0.5)
    multiscale: list[Annotated[int, Field(ge=8)]] | None = Field(default=None, min_length=1)


class MixupParams(_Strict):
    """Batch mixing (timm ``Mixup``): off while both alphas are 0."""

    mixup_alpha: float = Field(default=0.0, ge=0.0)
    cutmix_alpha: float = Field(default=0.0, ge=0.0)
    prob: float = Field(default=1.0, ge=0.0, le=1.0)
    switch_prob: float = Field(default=0.5, ge=0.0, le=1.0)

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0.0 or self.cutmix_alpha > 0.0


class SwaParams(_Strict):
    """Stochastic weight averaging of the finetune phase's last epochs; off while start_frac
    is null."""

    start_frac: float | None = Field(default=None, gt=0.0, lt=1.0)
    lr: float | None = Field(default=None, gt=0.0)


class TrainParams(_Strict):
    """Settings shared by the head and finetune stages."""

    batch_size: int = Field(default=64, ge=1)
    eval_batch_size: int = Field(default=256, ge=1)
    num_workers: int = Field(default=0, ge=0)
    augment: Literal["none", "light", "medical", "strong"] = "light"
    aug: AugmentParams = AugmentParams()
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0)
    class_weights: Literal["none", "balanced"] | list[float] = "none"
    loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = Field(default=2.0, ge=0.0, le=10.0)
    focal_alpha: float | None = Field(default=None, gt=0.0, le=1.0)
    aux_loss_weight: float | None = Field(default=None, ge=0.0)
    mixup: MixupParams = MixupParams()
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    accum_steps: int = Field(default=1, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto"] | bool = "auto"
    compile: bool = False
    pin_memory: Literal["auto"] | bool = "auto"
    data_on_device: Literal["auto"] | bool = "auto"
    log_every: int = Field(default=50, ge=1)
    nonfinite_skip: int = Field(default=0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    nproc_per_node: int = Field(default=1, ge=1, le=1024)
    nnodes: int = Field(default=1, ge=1, le=4096)
    rdzv_endpoint: str = Field(default="localhost:0", pattern=r"^[^\s:]+:\d+$")
    pretrained: str = "none"
    drop_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0)
    model_kwargs: dict[str, Any] = {}
    ema_decay: float | None = Field(default=None, gt=0.0, lt=1.0)
    swa: SwaParams = SwaParams()
    progress: bool = True

    @model_validator(mode="after")
    def _batches_split_over_processes(self) -> TrainParams:
        world = self.nproc_per_node * self.nnodes
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) % world:
                raise ValueError(
                    f"{key}={getattr(self, key)} is the global batch and must divide evenly over "
                    f"nproc_per_node x nnodes = {world} processes"
                )
        return self

    @field_validator("pretrained")
    @classmethod
    def _weights_inside_repo(cls, value: str) -> str:
        """A local file must sit under ``weights/`` (a DVC dep), so replacing it reruns."""
        if value in ("none", "hub"):
            return value
        path = PurePosixPath(value.replace("\\", "/"))
        if len(path.parts) < 2 or path.parts[0] != WEIGHTS_ROOT or ".." in path.parts:
            local = f"{WEIGHTS_ROOT}/{path.name or 'file.safetensors'}"
            raise ValueError(
                f"{value!r} is outside {WEIGHTS_ROOT}/, which the training stages' DVC deps "
                f"track; copy it to {local}, run `dvc add {local}` and set train.pretrained: "
                f"{local} (or none | hub)")
        return value

    @field_validator("class_weights", mode="before")
    @classmethod
    def _positive_weights(cls, value: Any) -> Any:
        if isinstance(value, list) and (len(value) < 2 or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in value)):
            raise ValueError(f"give none, balanced or one positive weight per class, e.g. "
                             f"[1.0, 2.5] (got {value})")
        return value

    @model_validator(mode="after")
    def _knobs_compatible(self) -> TrainParams:
        if self.swa.start_frac is not None and self.ema_decay is not None:
            raise ValueError("swa and ema_decay are both weight averages; set train.ema_decay "
                             "or train.swa.start_frac to null")
        if self.mixup.active and self.batch_size % 2:
            raise ValueError(f"mixup (an alpha > 0) pairs each image with the reversed batch "
                             f"and needs an even batch_size (got {self.batch_size})")
        if self.drop_path and "drop_path_rate" in self.model_kwargs:
            raise ValueError("drop_path and model_kwargs.drop_path_rate both set the stochastic "
                             "depth; keep train.drop_path only")
        return self


class HeadParams(_Strict):
    """Stage 1: train the classifier head (see README for from-scratch backbones)."""

    mode: Literal["auto", "frozen", "full", "skip"] = "auto"
    epochs: int = Field(default=3, ge=0)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)


class FinetuneParams(_Strict):
    """Stage 2: all parameters, AdamW with separate backbone/head learning rates."""

    epochs: int = Field(default=12, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    backbone_lr_mult: Literal["auto"] | Annotated[float, Field(gt=0.0, le=10.0)] = "auto"
    strategy: Literal["full", "layer_decay", "gradual", "partial"] = "full"
    layer_decay: float = Field(default=0.75, gt=0.0, le=1.0)
    unfreeze_epochs: list[Annotated[int, Field(ge=0)]] = Field(default=[1, 2, 3], min_length=1)
    freeze_stages: int = Field(default=1, ge=1)
    weight_decay: float = Field(default=0.05, ge=0.0)
    scheduler: Literal["auto", "cosine", "onecycle", "constant", "multistep"] = "auto"
    milestones: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = [0.5, 0.75]
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)
    warmup_epochs: int = Field(default=1, ge=0)
    min_lr_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    monitor: Literal["val_loss", "val_acc", "val_auc", "val_f1"] = "val_loss"
    patience: int = Field(default=5, ge=1)
    min_epochs: int = Field(default=3, ge=0)
    min_delta: float = Field(default=0.0, ge=0.0)

    @field_validator("unfreeze_epochs")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"unfreeze_epochs must be strictly increasing (got {value})")
        return value
