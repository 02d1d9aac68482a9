"""Backbone sanity checks shared by the verify stage and the tests."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from medclass.errors import exception_line
from medclass.models.registry import create_model


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass (``torch.utils.flop_counter``; a multiply-add counts as 2)."""
    model.eval()
    # The counter cannot see inside fused attention kernels: force the plain math path.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def cpu_latency_ms(model: torch.nn.Module, x: torch.Tensor, runs: int = 5) -> float:
    """Median wall time of ``runs`` eval-mode forwards after one warm-up, in milliseconds."""
    model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def verify_model(
    name: str,
    *,
    image_size: int,
    in_chans: int = 3,
    num_classes: int = 3,
    batch_size: int = 2,
    device: str | torch.device = "cpu",
    latency_runs: int = 5,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build ``name``, run forward/backward and report problems (``ok`` False with ``error``).

    Checks: output shape, finite outputs, outputs depend on the input, every trainable parameter
    receives a gradient, train/eval switch, parameter count, FLOPs and batch-1 CPU latency.
    """
    result: dict[str, Any] = {"model": name, "image_size": image_size, "ok": False}
    try:
        torch.manual_seed(0)
        model = create_model(name, num_classes=num_classes, in_chans=in_chans,
                             image_size=image_size, **(model_kwargs or {})).to(device)
        result["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 4)
        x = torch.randn(batch_size, in_chans, image_size, image_size, device=device)
        model.train()
        out = model(x)
        _expect(tuple(out.shape) == (batch_size, num_classes),
                f"output shape {tuple(out.shape)} != {(batch_size, num_classes)}")
        _expect(bool(torch.isfinite(out).all()), "non-finite outputs")
        loss = out.float().logsumexp(1).sum()
        aux = getattr(model, "aux_logits", None)  # auxiliary heads train through their own loss
        if aux is not None:
            loss = loss + aux.float().logsumexp(1).sum()
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        _expect(not missing, f"no gradient for {len(missing)} parameters, e.g. {missing[:3]}")
        model.eval()
        _expect(not model.training, "eval() did not switch mode")
        with torch.no_grad():
            a, b = model(x), model(torch.randn_like(x))
        _expect(not torch.allclose(a, b), "eval outputs do not depend on the input")
        one = x[:1]
        result["gflops"] = round(count_flops(model, one) / 1e9, 4)
        result["latency_ms_b1"] = round(cpu_latency_ms(model.cpu(), one.cpu(), latency_runs), 2)
        result["ok"] = True
    except Exception as exc:  # report every failure per model; the stage decides what is fatal
        result["error"] = exception_line(exc, with_type=True, limit=300)
    return result


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


#: Tiny-width constructor options per backbone, for smoke tests and CI-sized runs
#: (pass them as ``train.model_kwargs``). Names not listed are already small.
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "simple_cnn": {"widths": (8, 16), "depths": (1, 1)},
    "convnext": {"dims": (8, 16, 16, 32), "depths": (1, 1, 1, 1)},
    "efficientnet": {"width_mult": 0.1, "depth_mult": 0.25, "head_chs": 32},
    "ghostnet": {"width": 0.05, "head_chs": 32},
    "resnet_mish": {"width": 4, "depths": (1, 1, 1, 1)},
    "cspdarknet": {"width": 4, "depths": (1, 1, 1, 1, 1)},
    "inception": {"width": 1, "depths": (1, 1, 1)},
    "regnet": {"depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8, "stem_width": 8},
    "densenet_hybrid": {"growth_rate": 4, "depths": (1, 1, 1, 1), "bn_size": 2,
                        "embed_dim": 16, "num_heads": 2},
    "mobileone": {"widths": (8, 8, 16, 16, 32), "depths": (1, 1, 1, 1), "num_branches": 2},
    "dynamic_conv": {"width": 0.1, "depths": (1,) * 7, "head_width": 32},
    "vit_hybrid": {"width": 16, "depth": 2, "heads": 2},
    "deit": {"width": 16, "depth": 2, "heads": 2},
    "swin": {"dims": (8, 16), "depths": (2, 2), "head_dim": 8},
    "coatnet": {"dims": (8, 8, 16, 16, 32), "depths": (1, 1, 1, 1), "head_dim": 8},
    "maxvit": {"stem_dim": 8, "dims": (8, 16), "depths": (1, 1), "head_dim": 8},
    "densenet7x7": {"growth_rate": 4, "block_config": (1, 2)},
    "small_resnet": {"width": 8},
    "resnet18_cifar": {"width": 8},
    "resnet50_cifar": {"width": 8},
    "dual_branch": {"width": 8},
    "inception_fsd": {"width": 4, "fuse_dim": 16, "hidden_dim": 16},
    "dilated_groupconv": {"width": 8},
}
