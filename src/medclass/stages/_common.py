"""The error boundary every stage runs inside; re-exports the paths of ``medclass.paths``."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from medclass import repro
from medclass.config import Params, load_params
from medclass.errors import MedclassError
from medclass.paths import CKPT_DIR, METRICS_DIR, MODELS_DIR, PLOTS_DIR, RAW_DIR, SPLIT_DIR

__all__ = ["CKPT_DIR", "METRICS_DIR", "MODELS_DIR", "PLOTS_DIR", "RAW_DIR", "SPLIT_DIR",
           "Terminated", "repro_tag", "run_stage"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler, a stopped DVC queue) turned into an interrupt."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def repro_tag(params: Params) -> str:
    """The ``repro`` column every metrics file carries (``medclass.repro.tag``)."""
    return repro.tag(params.repro.mode, params.repro.threads)


def run_stage(name: str, main: Callable[[Params], None]) -> None:
    """Load and validate params.yaml, run ``main``; user errors print one line and exit 2.

    An ``OSError`` the user can fix (permissions, read-only filesystem, full disk, a file in
    place of a folder; ``medclass.io.disk_error``) also prints one line and exits 2.
    SIGINT (exit 130) and SIGTERM (exit 143) stop the stage with one line; files are only
    ever replaced atomically and the last finished epoch is checkpointed, so rerunning the
    stage resumes. SIGKILL cannot be caught but leaves the same state on disk.
    ``repro.mode: exact`` is applied before ``main`` (``medclass.repro``): a stage started
    as ``python -m medclass.stages.X`` without the launcher's pins restarts through it.
    """
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        params = load_params()
        repro.restart_pinned(params.repro.mode, params.repro.threads)
        repro.apply(params.repro.mode, params.repro.threads)
        main(params)
    except MedclassError as exc:
        print(f"error [{name}]: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # an output that cannot be written, wherever it is written
        from medclass.io import disk_error

        err = disk_error(exc, action="access")
        if err is None:
            raise  # anything else is a bug: keep the traceback
        print(f"error [{name}]: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"{how} [{name}]: rerun the stage to resume", file=sys.stderr)
        raise SystemExit(143 if isinstance(exc, Terminated) else 130) from None
