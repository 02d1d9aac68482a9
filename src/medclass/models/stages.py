"""The one stage builder of the zoo, and the shared constructor of the small-image families."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medclass.models.base import ClassifierModel
from medclass.models.layers import init_weights


@dataclass(frozen=True)
class BlockSpec:
    """Where a block sits: stage and index in it, its channels, stride and drop-path rate."""

    stage: int
    index: int
    cin: int
    cout: int
    stride: int
    drop_path: float


class StageSpecError(TypeError, ValueError):
    """Invalid stage widths/depths: a ``TypeError`` (``create_model`` reports it as a bad
    ``model_kwargs`` option) that is also a ``ValueError`` (an invalid value)."""


BlockFn = Callable[[BlockSpec], nn.Module]
#: ``(stage, cin, cout) -> (module, channels out)`` put ahead of a stage's blocks, or None.
TransitionFn = Callable[[int, int, int], "tuple[nn.Module, int] | None"]


def drop_path_rates(n_blocks: int, rate: float) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``n_blocks`` blocks."""
    return torch.linspace(0, rate, n_blocks).tolist()


def build_stages(
    dims: Sequence[int],
    depths: Sequence[int],
    block: BlockFn,
    *,
    cin: int | None = None,
    strides: Sequence[int] | None = None,
    transition: TransitionFn | None = None,
    drop_path_rate: float = 0.0,
    nested: bool = False,
) -> tuple[list[nn.Module], int]:
    """Stages of ``block``s: ``(modules, channels out)``.

    ``cin`` is the input width (default ``dims[0]``). Stage ``i`` has ``depths[i]`` blocks of
    width ``dims[i]``; its first block strides by ``strides[i]`` (default 1 for the first stage,
    2 after) and an optional ``transition`` module comes before it. ``nested`` gives one
    ``nn.Sequential`` per stage (a stage is one layer group), else the blocks are returned flat
    (a block is one layer group).
    """
    if not dims or len(dims) != len(depths) or min(depths) < 1:
        raise StageSpecError(f"dims {tuple(dims)} and depths {tuple(depths)} must be "
                             "non-empty, of equal length, every depth ≥ 1")
    cin = dims[0] if cin is None else cin
    strides = strides if strides is not None else [1] + [2] * (len(dims) - 1)
    rates = drop_path_rates(sum(depths), drop_path_rate)
    out: list[nn.Module] = []
    k = 0
    for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
        stage: list[nn.Module] = []
        made = transition(i, cin, dim) if transition is not None else None
        if made is not None:
            stage.append(made[0])
            cin = made[1]
        for j in range(depth):
            stage.append(block(BlockSpec(i, j, cin, dim, strides[i] if j == 0 else 1, rates[k])))
            cin, k = dim, k + 1
        out.extend([nn.Sequential(*stage)] if nested else stage)
    return out, cin


def widths(dims: Sequence[int] | None, width: int | None, default: int,
           mults: Sequence[int]) -> tuple[int, ...]:
    """Stage widths: ``dims`` as given, or ``width`` (``default`` if None) times ``mults``."""
    if dims is not None and width is not None:
        raise TypeError("give either width or dims, not both")
    if dims is not None:
        return tuple(dims)
    w = default if width is None else width
    return tuple(m * w for m in mults)


class SmallImageNet(ClassifierModel):
    """Small-image backbone configured by stage ``dims`` or by one base ``width``.

    Shared options: ``dims`` or ``width`` (``width`` or ``base_width`` times ``width_mults``),
    ``depths`` (None: the family's default), ``kernel_size`` (odd), ``drop_rate`` and
    ``drop_path_rate``. Subclasses create their layers in ``build`` and return the feature width.
    """

    base_width = 16
    width_mults: tuple[int, ...] = (1, 2, 4, 8)

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        dims: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        width: int | None = None,
        kernel_size: int = 7,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        dims = widths(dims, width, self.base_width, self.width_mults)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        num_features = self.build(in_chans, dims, depths, kernel_size, drop_path_rate)
        self._init_head(num_features, num_classes, drop_rate)
        self.apply(init_weights)

    def build(self, in_chans: int, dims: tuple[int, ...], depths: Sequence[int] | None,
              kernel_size: int, drop_path_rate: float) -> int:
        """Create the layers; return the number of output features."""
        raise NotImplementedError
