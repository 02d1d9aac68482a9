"""PyTorch formats: a weights-only state dict with metadata, and TorchScript."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medclass.export.formats.base import ExportContext, Exporter, one_line, quiet_jit, register
from medclass.export.metadata import METADATA_FILE
from medclass.io import atomic_path, save_checkpoint

TS_EXTRA_FILE = METADATA_FILE  # name of the metadata entry inside TorchScript archives


def export_pytorch(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """``{"model": state_dict, "meta": metadata}``, loadable with ``weights_only=True``."""
    state = {k: v.detach().cpu().clone() for k, v in ctx.model.state_dict().items()}
    save_checkpoint(dest, {"model": state, "meta": ctx.meta})
    return {}


def _script_or_trace(ctx: ExportContext) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """``torch.jit.script`` when it compiles and matches eager outputs, else ``torch.jit.trace``."""
    model, x = ctx.model, ctx.example
    with torch.no_grad(), quiet_jit():
        expected = model(x)
        try:
            scripted = torch.jit.script(model)
            if torch.allclose(scripted(x), expected, atol=ctx.params.tolerance, rtol=0.0):
                return scripted, {"method": "script"}
            reason = "scripted outputs differ from eager"
        except Exception as exc:  # scripting fails on dynamic Python; tracing is the fallback
            reason = one_line(exc)
        traced = torch.jit.trace(model, x, check_trace=False)
    return traced, {"method": "trace", "script_error": reason}


def export_torchscript(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """TorchScript archive with the metadata as an extra file (``metadata.json``)."""
    module, info = _script_or_trace(ctx)
    # through a file handle: a path would put the random temp name into the archive (as in
    # ``save_checkpoint``), so the same model would give a different file each time
    with atomic_path(dest) as tmp, quiet_jit(), open(tmp, "wb") as fh:
        torch.jit.save(module, fh, _extra_files={TS_EXTRA_FILE: json.dumps(ctx.meta)})
    return info


register(Exporter("pytorch", "model.pt", export_pytorch))
register(Exporter("torchscript", "model.ts", export_torchscript))
