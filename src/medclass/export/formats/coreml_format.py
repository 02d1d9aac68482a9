"""Core ML: an ML Program (``.mlpackage``) converted with coremltools from ``torch.export``
(falling back to a ``torch.jit.trace``).

The input is a ``TensorType`` named ``input`` (NCHW float32, batch 1..``MAX_BATCH``) that takes
the *normalised* tensor, exactly like the other formats: ``(pixel / 255 - mean) / std`` per
channel (see the model's input description and ``metadata.json``). Weights and compute stay
FP32. Linux cannot run Core ML, so the pipeline only checks the spec (names and shapes) there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclass.export.formats.base import (
    ExportContext,
    Exporter,
    one_line,
    quiet_converters,
    register,
    require,
)
from medclass.export.metadata import INPUT_NAME, OUTPUT_NAME, PREPROCESSING
from medclass.io import atomic_dir

MAX_BATCH = 256


class _Named(nn.Module):
    """Names the exported program's input ``input`` (Core ML takes the argument's name)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return self.model(input)


def _from_export(ct: Any, model: nn.Module, example: torch.Tensor) -> Any:
    """Via ``torch.export`` (static spatial size, dynamic batch): the preferred path."""
    x = example[:2] if len(example) >= 2 else example.repeat(2, 1, 1, 1)  # batch 1 specialises
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(_Named(model), (x,), dynamic_shapes=({0: batch},))
    return ct.convert(program.run_decompositions({}), outputs=[ct.TensorType(name=OUTPUT_NAME)],
                      convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                      minimum_deployment_target=ct.target.iOS16)


def _from_trace(ct: Any, model: nn.Module, example: torch.Tensor) -> Any:
    """Via ``torch.jit.trace`` (coremltools' classic frontend): the fallback."""
    _, c, h, w = example.shape
    traced = torch.jit.trace(model, example[:1], check_trace=False)
    shape = ct.Shape(shape=(ct.RangeDim(1, MAX_BATCH, default=1), c, h, w))
    return ct.convert(traced, inputs=[ct.TensorType(name=INPUT_NAME, shape=shape)],
                      outputs=[ct.TensorType(name=OUTPUT_NAME)], convert_to="mlprogram",
                      compute_precision=ct.precision.FLOAT32,
                      minimum_deployment_target=ct.target.iOS16)


def export_coreml(ctx: ExportContext, dest: Path) -> dict[str, Any]:
    """Convert to an FP32 ML Program (torch.export first, then tracing) and save ``dest``."""
    ct = require("coremltools", "coreml")
    errors = []
    for frontend, convert in (("torch.export", _from_export), ("trace", _from_trace)):
        try:
            with torch.no_grad(), quiet_converters():
                mlmodel = convert(ct, ctx.model, ctx.example)
            break
        except Exception as exc:  # noqa: BLE001 (try the other frontend, report both)
            errors.append(f"{frontend}: {one_line(exc)}")
    else:
        raise RuntimeError("; ".join(errors))
    mlmodel.short_description = f"medclass {ctx.meta['model']}: {', '.join(ctx.meta['classes'])}"
    mlmodel.input_description[INPUT_NAME] = PREPROCESSING
    mlmodel.output_description[OUTPUT_NAME] = "logits; softmax(logits / temperature)"
    mlmodel.user_defined_metadata["medclass"] = json.dumps(ctx.meta)
    with atomic_dir(dest) as tmp_dir, tempfile.TemporaryDirectory(dir=dest.parent) as work:
        pkg = Path(work) / dest.name  # coremltools wants a path ending in .mlpackage
        mlmodel.save(str(pkg))
        _make_stable(pkg)
        shutil.rmtree(tmp_dir)
        shutil.move(str(pkg), str(tmp_dir))
    return {"frontend": frontend, "inputs": "TensorType NCHW float32 (normalised)",
            "deployment_target": "iOS16"}


def _make_stable(pkg: Path) -> None:
    """Give the saved package the same bytes on every run (``repro.mode: exact``).

    coremltools names the package's items by random ``uuid4`` ids in ``Manifest.json`` and
    writes the spec protobuf with its map fields in no fixed order; the ids become ``uuid5``
    of each item's path and the spec is re-serialised with protobuf's deterministic option."""
    from coremltools.proto import Model_pb2

    manifest_path = pkg / "Manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, item["path"]))
           for old, item in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {ids[k]: v for k, v in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = ids[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True), encoding="utf-8")
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"]
    spec_path = pkg / "Data" / root
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def _dims(feature: Any) -> tuple[list[int], list[tuple[int, int]]]:
    arr = feature.type.multiArrayType
    ranges = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
    return list(arr.shape), ranges


def inspect_coreml(path: Path, ctx: ExportContext) -> dict[str, Any]:
    """Load the spec (works on Linux) and check input/output names and shapes."""
    ct = require("coremltools", "coreml")
    spec = ct.utils.load_spec(str(path))
    inputs = {f.name: f for f in spec.description.input}
    outputs = {f.name: f for f in spec.description.output}
    if list(inputs) != [INPUT_NAME] or list(outputs) != [OUTPUT_NAME]:
        raise ValueError(f"Core ML spec has inputs {list(inputs)} and outputs {list(outputs)}, "
                         f"expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    shape, ranges = _dims(inputs[INPUT_NAME])
    expected = list(ctx.example.shape[1:])
    if shape[1:] != expected or (ranges and [r[0] for r in ranges[1:]] != expected):
        raise ValueError(f"Core ML input shape {shape} (ranges {ranges}) != [N, *{expected}]")
    return {"spec_input_shape": shape, "spec_batch_range": list(ranges[0]) if ranges else None,
            "spec_outputs": list(outputs)}


register(Exporter("coreml", "model.mlpackage", export_coreml, inspect=inspect_coreml))
