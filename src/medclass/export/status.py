"""The export status vocabulary of ``metrics/export.json``, ``metadata.json`` and ``medclass info``.

- ``ok``: the artifact ran here and matched PyTorch within the tolerance (``max_abs_diff`` and
  ``top1_agreement`` recorded);
- ``built: <reason>``: converted and structurally checked, but it cannot run here (Core ML off
  macOS, a converter without its runtime);
- ``skipped: <reason>``: not exported, for formats the user did not name (``formats: all``) whose
  toolchain or device is missing, or that do not support the model;
- ``failed: <error>``: conversion, loading or parity failed, or a format named in
  ``export.formats`` could not be exported here (``failed: requested but skipped: <reason>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OK = "ok"
BUILT = "built"
SKIPPED = "skipped"
FAILED = "failed"
REQUESTED_SKIP = "requested but skipped: "  # reason prefix of a named format that was not made
UNSUPPORTED = "unsupported for "  # reason prefix of a model the format cannot take

# how to make a named-but-skipped format available here (default: what its reason says)
AVAILABILITY_FIX: dict[str, str] = {
    "tensorrt": "run on a machine with an NVIDIA GPU and the tensorrt package",
}
DEFAULT_FIX = "install what the reason names"
UNSUPPORTED_FIX = "export this model to another format"


def with_reason(kind: str, reason: str) -> str:
    """``kind: reason`` (``kind`` is one of ``BUILT``, ``SKIPPED``, ``FAILED``)."""
    return f"{kind}: {reason}"


def kind_of(status: str) -> str:
    """``ok`` / ``built`` / ``skipped`` / ``failed`` of a status string."""
    return status.split(":", 1)[0]


def reason_of(status: str) -> str:
    """The text after ``kind:`` (empty for ``ok``)."""
    return status.split(":", 1)[1].strip() if ":" in status else ""


def unavailable(reason: str, requested: bool) -> str:
    """A format that was not exported: ``skipped`` unless the user named it (then ``failed``)."""
    return with_reason(FAILED, REQUESTED_SKIP + reason) if requested else with_reason(
        SKIPPED, reason)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    """``{format: status}`` of an export report."""
    return {name: entry["status"] for name, entry in report["formats"].items()}


def failures(report: dict[str, Any]) -> dict[str, str]:
    """Formats whose status is ``failed: …`` (named-but-skipped ones included)."""
    return {n: s for n, s in statuses(report).items() if kind_of(s) == FAILED}


def _fix(name: str, reason: str) -> str:
    if reason.startswith(UNSUPPORTED):
        return UNSUPPORTED_FIX
    return AVAILABILITY_FIX.get(name, DEFAULT_FIX)


def _requested_line(skipped: dict[str, str]) -> str:
    """``tensorrt was requested but skipped: <reason>; <fix> or remove it from export.formats``."""
    names = list(skipped)
    fixes = list(dict.fromkeys(_fix(n, r) for n, r in skipped.items()))
    if len(names) == 1:
        head = f"{names[0]} was requested but skipped: {skipped[names[0]]}"
    else:
        head = (f"{', '.join(names)} were requested but skipped ("
                + "; ".join(f"{n}: {r}" for n, r in skipped.items()) + ")")
    fix = ", ".join(fixes) + ("," if len(fixes) > 1 else "")
    target = "it" if len(names) == 1 else "them"
    return f"{head}; {fix} or remove {target} from export.formats"


def failure_line(report: dict[str, Any], path: str | Path) -> str | None:
    """One line naming the failed formats and the fix (None when every format is acceptable)."""
    failed = {n: reason_of(s) for n, s in failures(report).items()}
    skipped = {n: r.removeprefix(REQUESTED_SKIP) for n, r in failed.items()
               if r.startswith(REQUESTED_SKIP)}
    broken = {n: r for n, r in failed.items() if n not in skipped}
    parts = []
    if broken:
        detail = "; ".join(f"{n}: {r}" for n, r in broken.items())
        parts.append(f"export failed for {len(broken)} format(s) ({detail}); see {path}")
    if skipped:
        parts.append(("" if broken else "export: ") + _requested_line(skipped))
    return "; ".join(parts) or None
