"""Predictive uncertainty: MC dropout, entropy/mutual information, selective prediction.

* :func:`mc_dropout_probs` runs ``passes`` stochastic forward passes with only the dropout-type
  modules in train mode: every ``torch.nn`` dropout (``Dropout``, ``Dropout1d/2d/3d``,
  ``AlphaDropout``, ``FeatureAlphaDropout``) and timm's ``DropPath`` (stochastic depth, used by
  this project's backbones) and ``DropBlock2d``. Everything else — BatchNorm above all — stays in
  eval mode, so running statistics are neither used from the batch nor updated. Dropout applied
  functionally by a module that checks its own ``self.training`` (e.g. attention dropout passed
  as ``dropout_p`` to ``scaled_dot_product_attention``) stays off, because that module is in eval
  mode. Each module's mode is restored afterwards, even on error.
* Entropy and mutual information (nats) are those of :mod:`medclass.evaluate.ensemble`: a stack
  of MC passes is an ensemble of ``passes`` members.
* Selective prediction: samples are kept in order of decreasing confidence; ``risk`` is the
  error rate among the kept samples, ``coverage`` the kept fraction. Pass a confidence (higher
  = keep first); for an uncertainty score pass its negation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from timm.layers import DropBlock2d, DropPath
from torch import nn

from medclass.evaluate import ensemble

DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
STOCHASTIC_MODULES: tuple[type[nn.Module], ...] = (*DROPOUTS, DropPath, DropBlock2d)

Batch = torch.Tensor | Sequence[torch.Tensor]


def _images(batch: Batch) -> torch.Tensor:
    """The image tensor of a batch: the batch itself or the first item of ``(images, ...)``."""
    return batch if isinstance(batch, torch.Tensor) else batch[0]


@torch.no_grad()
def mc_dropout_probs(
    model: nn.Module,
    batches: Iterable[Batch],
    passes: int,
    device: torch.device | str,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int | None = 0,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Softmax probabilities of ``passes`` MC-dropout passes: float64 ``(passes, N, C)``.

    ``batches`` yields image tensors or ``(images, labels)`` pairs (a DataLoader); each batch is
    moved to ``device``, passed through ``transform`` (e.g.
    ``functools.partial(batch_transform, train=False)``) and run ``passes`` times, so the data
    are read once. ``seed`` seeds torch's global RNG inside a forked RNG state (the caller's
    state is untouched); ``None`` leaves it unseeded. Sample order follows ``batches``.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    device = torch.device(device)
    modes = {m: m.training for m in model.modules()}
    fork_devices = [device] if device.type != "cpu" else []
    chunks: list[torch.Tensor] = []
    try:
        model.eval()
        for m in model.modules():
            if isinstance(m, STOCHASTIC_MODULES):
                m.train()
        with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
            if seed is not None:
                torch.manual_seed(seed)
            for batch in batches:
                x = _images(batch).to(device, non_blocking=True)
                if transform is not None:
                    x = transform(x)
                outs = []
                for _ in range(passes):
                    with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
                        logits = model(x)
                    outs.append(torch.softmax(logits.double(), dim=1))
                chunks.append(torch.stack(outs).cpu())
    finally:
        for m, training in modes.items():
            m.train(training)
    if not chunks:
        raise ValueError("mc_dropout_probs got no batches")
    return torch.cat(chunks, dim=1).numpy()


def predictive_entropy(mean_probs: np.ndarray) -> np.ndarray:
    """``(N,)`` entropy (nats) of the mean predictive distribution; total uncertainty."""
    return ensemble.entropy(mean_probs)


def mutual_information(probs_stack: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """``(N,)`` H(mean p) − mean H(p_pass) in nats for a ``(passes, N, C)`` stack.

    The epistemic part of the predictive entropy; 0 when all passes agree.
    """
    return ensemble.mutual_information(probs_stack)


def _as_pair(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct).astype(bool)
    if c.ndim != 1 or c.shape != ok.shape or c.size == 0:
        raise ValueError(f"need two non-empty (N,) arrays, got {c.shape} and {ok.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("confidence contains NaN/inf")
    return c, ok


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and selective risk when keeping samples of confidence ≥ each threshold.

    Thresholds are the distinct confidence values in descending order, so tied samples are
    kept or rejected together and the curve does not depend on their order. Without ties this
    is one point per sample: coverage ``i / N`` and the error rate of the ``i`` most confident.
    """
    c, ok = _as_pair(confidence, correct)
    order = np.argsort(-c, kind="stable")
    c, errors = c[order], np.cumsum(~ok[order])
    last_of_tie = np.append(c[1:] != c[:-1], True)  # end of each run of equal confidence
    kept = np.flatnonzero(last_of_tie) + 1
    return kept / c.size, errors[last_of_tie] / kept


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk–coverage curve (step integral; lower is better).

    Without ties it equals the mean over ``i = 1..N`` of the error rate among the ``i`` most
    confident samples. Its minimum, for a ranking that puts all errors last, is
    ``(1/N) · Σ_{i=N−E+1..N} (i − (N − E)) / i`` with ``E`` errors.
    """
    coverage, risk = risk_coverage(confidence, correct)
    return float(np.sum(risk * np.diff(coverage, prepend=0.0)))


def error_detection_auroc(uncertainty: np.ndarray, correct: np.ndarray) -> float | None:
    """ROC AUC of ``uncertainty`` for detecting misclassified samples (errors are positive).

    1.0: every error is more uncertain than every correct sample; 0.5: chance. ``None`` when
    all samples are correct or all are wrong (the AUC is undefined).
    """
    u, ok = _as_pair(uncertainty, correct)
    if ok.all() or not ok.any():
        return None
    return float(roc_auc_score(~ok, u))
