"""Probe of ``repro_vendors.py``: hashes of two training steps and single operations under
exact mode's torch switches (``PROBE_ONEDNN=1`` keeps oneDNN on). Prints one JSON line."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def train_steps() -> str:
    from medclass.models import create_model

    torch.manual_seed(0)
    net = create_model("simple_cnn_tiny", num_classes=3, in_chans=1, image_size=32)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, fused=True)  # as build_optimizer
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 32, 32, generator=g), torch.randint(0, 3, (16,), generator=g)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return digest(*(p.detach().numpy() for p in net.parameters()))


def operations() -> dict[str, str]:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(200, 300, generator=g), torch.randn(300, 150, generator=g)
    x = torch.randn(8, 3, 20, 20, generator=g, requires_grad=True)
    w = torch.randn(16, 3, 3, 3, generator=g, requires_grad=True)
    out = torch.nn.functional.conv2d(x, w, padding=1)
    out.sum().backward()
    rng = np.random.default_rng(0)
    m = rng.standard_normal((96, 300), dtype=np.float32)
    return {"matmul": digest((a @ b).numpy()), "sum": digest(torch.randn(
                1_000_003, generator=g).sum().numpy()),
            "conv2d": digest(out.detach().numpy()), "conv2d_grad_w": digest(w.grad.numpy()),
            "conv2d_grad_x": digest(x.grad.numpy()), "exp": digest(torch.exp(a).numpy()),
            "log_softmax": digest(torch.log_softmax(a, 1).numpy()),
            "batch_norm": digest(torch.nn.functional.batch_norm(
                x.detach(), None, None, training=True).numpy()),
            "numpy_matmul": digest(m @ m.T), **training_operations()}


def training_operations() -> dict[str, str]:
    """The other operations of a training step, one by one (to find the one that differs)."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(64, 300, generator=g, requires_grad=True)
    lin = torch.nn.Linear(300, 10)
    torch.nn.functional.cross_entropy(lin(a), torch.arange(64) % 10).backward()
    x = torch.randn(8, 16, 12, 12, generator=g, requires_grad=True)
    bn = torch.nn.functional.batch_norm(x, None, None, training=True)
    bn.square().sum().backward()
    p = torch.randn(1000, generator=g)
    p.grad = torch.randn(1000, generator=g)
    q = p.detach().clone().requires_grad_(True)
    q.grad = p.grad.clone()
    torch.optim.AdamW([p], lr=1e-2).step()  # foreach: torch.sqrt
    torch.optim.AdamW([q], lr=1e-2, fused=True).step()
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.nn.functional.max_pool2d(
        x.detach(), 2), 1)
    torch.manual_seed(4)
    drop = torch.nn.functional.dropout(torch.ones(4096), 0.1)
    return {"linear_ce_grad": digest(a.grad.numpy(), lin.weight.grad.numpy()),
            "batch_norm_grad": digest(x.grad.numpy()),
            "adamw_foreach": digest(p.detach().numpy()),
            "adamw_fused": digest(q.detach().numpy()),
            "pooling": digest(pooled.numpy()), "dropout": digest(drop.numpy()),
            "sqrt": digest(torch.randn(1000, generator=g).abs().sqrt().numpy()),
            "rsqrt": digest(torch.randn(1000, generator=g).abs().rsqrt().numpy()),
            "numpy_exp": digest(np.exp(np.linspace(-5, 5, 1001))),
            "log_softmax_grad": digest(torch.log_softmax(a.detach() * 2, 1).numpy())}


if __name__ == "__main__":
    torch.backends.mkldnn.enabled = os.environ.get("PROBE_ONEDNN") == "1"
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.use_deterministic_algorithms(True)
    print(json.dumps({"train_steps": train_steps(), **operations(),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability()}))
