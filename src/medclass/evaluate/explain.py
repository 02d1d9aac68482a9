"""Grad-CAM heatmaps (captum's ``LayerGradCam``) and penultimate-feature embeddings.

Target layer rule (every backbone exposes timm's ``forward_features`` / ``forward_head``):

* ``forward_features`` returns an NCHW map with at least 2×2 cells (``simple_cnn``, the
  small-image nets, ``regnet``, ``swin``, ``maxvit``, ``coatnet``, … at their usual sizes):
  the target is that map, the last one before global pooling. The model is wrapped as
  ``forward_head(tap(forward_features(x)))`` with ``tap`` an ``nn.Identity`` that captum hooks
  (channels-last maps of timm models with ``output_fmt == "NHWC"`` are permuted around it).
* NCHW but smaller than 2×2 (deep CNNs such as ``convnext``, ``efficientnet`` or
  ``resnet_mish`` on 28–32 px inputs reduce to 1×1, which carries no "where"): the last layer
  group (:func:`medclass.models.groups.default_group_modules` or the model's
  ``group_modules()``) whose output is NCHW with at least 2×2 cells.
* Tokens ``(B, N, C)`` (``deit``, ``vit_hybrid``, timm ViTs): the tokens *entering* the last
  block of ``model.blocks``, prefix tokens (class/distillation) dropped and the remaining patch
  tokens reshaped to their square ``h×w`` grid. The last block's attention is the only place
  where patch tokens still reach the class token, so its input is the last layer whose gradient
  is informative. The number of prefix tokens is ``model.num_prefix_tokens`` when present
  (timm), else ``N − ⌊√N⌋²`` (square inputs, fewer than ``2⌊√N⌋ + 1`` prefix tokens).

Heatmaps are ReLU(Grad-CAM) for the predicted class, upsampled bilinearly to the input size and
scaled to [0, 1] per image (an all-zero map stays 0).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medclass.models.groups import default_group_modules

MIN_CELLS = 2  # a target map needs at least this many cells per side


class _Tapped(nn.Module):
    """``forward_head(tap(forward_features(x)))``: exposes the final feature map to captum.

    timm models that return channels-last maps (``output_fmt == "NHWC"``, e.g. timm's Swin) are
    permuted to NCHW around ``tap``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.tap = nn.Identity()
        self.nhwc = str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.forward_features(x)
        if self.nhwc and f.ndim == 4:
            f = self.tap(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            f = self.tap(f)
        return self.model.forward_head(f)


class _TokenGrid(nn.Module):
    """Runs ``block`` on tokens whose patch part passes through ``tap`` as an NCHW grid."""

    def __init__(self, block: nn.Module, prefix: int) -> None:
        super().__init__()
        self.block, self.prefix = block, prefix
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        side = math.isqrt(n - self.prefix)
        patches = x[:, self.prefix:].transpose(1, 2).reshape(b, c, side, side)
        patches = self.tap(patches).flatten(2).transpose(1, 2)
        return self.block(torch.cat([x[:, : self.prefix], patches], dim=1))


@dataclass
class CamTarget:
    """How Grad-CAM reaches a model: the module to call and the layer to attribute."""

    forward: nn.Module
    layer: nn.Module
    description: str


def prefix_tokens(model: nn.Module, n_tokens: int) -> int:
    """Class/distillation tokens ahead of the patch tokens (see the module docstring)."""
    known = getattr(model, "num_prefix_tokens", None)
    if isinstance(known, int):
        return known
    return n_tokens - math.isqrt(n_tokens) ** 2


def _output_shapes(model: nn.Module, modules: list[nn.Module], x: torch.Tensor
                   ) -> dict[int, torch.Size]:
    """Output shape of each module in ``modules`` during one forward pass of ``x``."""
    shapes: dict[int, torch.Size] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, _inp, out: shapes.__setitem__(id(mod), out.shape)
            if isinstance(out, torch.Tensor) else None)
        for m in modules
    ]
    try:
        with torch.no_grad():
            model.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _is_map(shape: torch.Size | None) -> bool:
    return shape is not None and len(shape) == 4 and min(shape[-2:]) >= MIN_CELLS


@contextlib.contextmanager
def cam_target(model: nn.Module, x: torch.Tensor) -> Iterator[CamTarget]:
    """Pick the Grad-CAM layer of ``model`` for inputs like ``x`` (module docstring rule).

    Token models get their last block wrapped for the duration of the ``with`` block.
    """
    with torch.no_grad():
        feats = model.forward_features(x[:1])
    if feats.ndim == 3:
        blocks = model.blocks
        last = blocks[-1]
        adapter = _TokenGrid(last, prefix_tokens(model, feats.shape[1]))
        blocks[-1] = adapter
        try:
            yield CamTarget(_Tapped(model), adapter.tap,
                            f"patch tokens entering blocks[{len(blocks) - 1}]")
        finally:
            blocks[-1] = last
        return
    wrapped = _Tapped(model)
    if wrapped.nhwc and feats.ndim == 4:
        feats = feats.permute(0, 3, 1, 2)
    if _is_map(feats.shape):
        yield CamTarget(wrapped, wrapped.tap, "forward_features output")
        return
    groups = (model.group_modules() if hasattr(model, "group_modules")
              else default_group_modules(model))
    shapes = _output_shapes(model, groups, x[:1])
    for i in range(len(groups) - 1, -1, -1):
        if _is_map(shapes.get(id(groups[i]))):
            yield CamTarget(wrapped, groups[i], f"layer group {i} ({type(groups[i]).__name__})")
            return
    yield CamTarget(wrapped, wrapped.tap, "forward_features output (no map of 2x2 or more)")


def gradcam(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Grad-CAM heatmaps ``(N, H, W)`` in [0, 1], the explained class of each image, the layer.

    ``x`` is a normalised input batch; ``targets`` default to the predicted classes. The model is
    put in eval mode (dropout off, BatchNorm frozen) and restored afterwards.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    was_training = model.training
    model.eval()
    try:
        with cam_target(model, x) as target:
            if targets is None:
                with torch.no_grad():
                    targets = target.forward(x).argmax(dim=1)
            cam = LayerGradCam(target.forward, target.layer)
            with torch.enable_grad():
                attr = cam.attribute(x, target=targets, relu_attributions=True)
            attr = LayerAttribution.interpolate(attr.detach().float(), tuple(x.shape[-2:]),
                                                interpolate_mode="bilinear")
    finally:
        model.train(was_training)
    maps = attr[:, 0].clamp(min=0).cpu().numpy().astype(np.float64)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    maps = maps / np.where(peak > 0, peak, 1.0)[:, None, None]
    return maps, targets.cpu().numpy(), target.description


@torch.no_grad()
def penultimate_features(
    model: nn.Module,
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> np.ndarray:
    """``forward_head(forward_features(x), pre_logits=True)`` of every batch: ``(N, D)``."""
    model.eval()
    out = []
    for xb, _ in batches():
        f = model.forward_features(transform(xb.to(device)))
        out.append(model.forward_head(f, pre_logits=True).float().flatten(1).cpu())
    return torch.cat(out).numpy()


def project_2d(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """2-D projection of ``(N, D)`` features: ``pca`` or ``tsne`` (scikit-learn), float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.shape[0] < 3:
        raise ValueError(f"need at least 3 samples to project, got {f.shape[0]}")
    if f.shape[1] < 2:
        f = np.pad(f, ((0, 0), (0, 2 - f.shape[1])))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(f)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (f.shape[0] - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca",
                    random_state=seed).fit_transform(f)
    raise ValueError(f"unknown projection {method!r}; use pca or tsne")


def sample_per_class(labels: np.ndarray, per_class: int, n_classes: int) -> np.ndarray:
    """Indices of the first ``per_class`` samples of each class, class by class (fixed sample)."""
    y = np.asarray(labels)
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)]
                          ).astype(np.int64)
