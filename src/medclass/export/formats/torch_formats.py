"""PyTorch formats: a weights-only state dict with metadata, and TorchScript."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
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


def portable_archive(archive: bytes) -> bytes:
    """The TorchScript zip without its ``*.debug_pkl`` entries, with a content-derived
    ``serialization_id`` and fixed entry dates.

    ``torch.jit.save`` writes the absolute path of every compiled source file into the debug
    pickles (and the archive id follows them), so the same model exported from two clones in
    different folders gave different bytes (``repro.mode: exact``). torch has no public switch
    for this; the entries are optional (``torch.jit.load`` reads the archive without them and
    only loses source lines in error messages)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        items = [(i.filename, zf.read(i.filename)) for i in zf.infolist()
                 if not i.filename.endswith(".debug_pkl")]
    digest = hashlib.sha256()
    for name, data in items:
        if not name.endswith("serialization_id"):
            digest.update(name.encode() + data)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in items:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(entry, digest.hexdigest()[:20].encode()
                        if name.endswith("serialization_id") else data)
    return out.getvalue()


def export_torchscript(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """TorchScript archive with the metadata as an extra file (``metadata.json``), made
    independent of the folder it was exported from (``portable_archive``)."""
    module, info = _script_or_trace(ctx)
    buf = io.BytesIO()
    with quiet_jit():
        torch.jit.save(module, buf, _extra_files={TS_EXTRA_FILE: json.dumps(ctx.meta)})
    with atomic_path(dest) as tmp:
        tmp.write_bytes(portable_archive(buf.getvalue()))
    return info


register(Exporter("pytorch", "model.pt", export_pytorch))
register(Exporter("torchscript", "model.ts", export_torchscript))
