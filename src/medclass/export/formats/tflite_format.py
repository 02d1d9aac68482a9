"""TFLite (LiteRT): converted with litert-torch (Google's PyTorch → LiteRT converter).

The graph is converted at batch 1: litert-torch's dynamic batch dimension fails for several of
our backbones (symbolic sizes in window/token code), so ``runtime`` runs larger batches one
row at a time. Known converter gaps are worked around in ``fixes``. Metadata is in
``metadata.json`` beside the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medclass.export.formats.base import (
    ExportContext,
    Exporter,
    quiet_converters,
    register,
    require,
)
from medclass.io import atomic_path


def export_tflite(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """Convert with ``litert_torch.convert`` at batch 1 and write the flatbuffer."""
    litert_torch = require("litert_torch", "tflite")
    with quiet_converters():
        edge_model = litert_torch.convert(ctx.model, (ctx.example[:1],))
        with atomic_path(dest) as tmp:
            edge_model.export(str(tmp))
    return {"batch": 1}


register(Exporter("tflite", "model.tflite", export_tflite))
