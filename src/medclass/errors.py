"""The one exception type for problems a user can cause and fix."""


class MedclassError(Exception):
    """A user-fixable problem: bad params, bad data, missing file.

    Stage entry points catch it and print one line (message + fix) with a non-zero exit code.
    Anything else is a bug and keeps its traceback.
    """
