"""The one exception type for problems a user can cause and fix."""


class MedclassError(Exception):
    """A user-fixable problem: bad params, bad data, missing file.

    Stage entry points catch it and print one line (message + fix) with a non-zero exit code.
    Anything else is a bug and keeps its traceback.
    """


def exception_line(exc: BaseException, *, with_type: bool = False, limit: int | None = None) -> str:
    """``exc`` as one short line for an error message or report: the first non-empty line of its
    text (the type name when it has none), ``Type: text`` with ``with_type``, and cut to
    ``limit`` characters (ending in ``...``) when longer."""
    text = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")
    name = type(exc).__name__
    if with_type:
        text = f"{name}: {text}" if text else name
    text = text or name
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
