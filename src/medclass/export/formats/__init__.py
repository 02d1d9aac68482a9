"""Export formats: importing this package fills ``FORMATS`` (ordered by ``ExportFormat``)."""

from medclass.export.formats import (  # noqa: F401  (imported for registration)
    coreml_format,
    onnx_format,
    tensorrt_format,
    tflite_format,
    torch_formats,
)
from medclass.export.formats.base import (
    FORMATS,
    ExportContext,
    Exporter,
    ToolchainMissing,
    one_line,
    register,
)

__all__ = ["FORMATS", "ExportContext", "Exporter", "ToolchainMissing", "one_line", "register"]
