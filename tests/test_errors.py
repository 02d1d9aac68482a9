"""exception_line: one short line from any exception, for error messages and reports."""

from medclass.errors import exception_line


def test_first_non_empty_line_type_and_limit():
    assert exception_line(ValueError("\n  bad value \nsecond line")) == "bad value"
    assert exception_line(RuntimeError()) == "RuntimeError"
    assert exception_line(OSError("disk"), with_type=True) == "OSError: disk"
    assert exception_line(KeyError(), with_type=True) == "KeyError"
    long = exception_line(ValueError("x" * 50), limit=20)
    assert long == "x" * 17 + "..." and len(long) == 20
    assert exception_line(ValueError("short"), limit=20) == "short"
