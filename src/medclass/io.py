"""Atomic file writes, JSON helpers and checkpoint save/load (``weights_only=True``)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medclass.errors import MedclassError

if TYPE_CHECKING:  # imported where checkpoints are read or written: the data stages never
    import torch  # load torch (about 0.4 GB of memory and 1.5 s of start-up saved)

_DISK_FIXES: dict[int, str] = {
    errno.EACCES: "permission denied; fix the permissions of that path (chmod/chown) or run "
                  "from a writable checkout",
    errno.EPERM: "operation not permitted; fix the permissions of that path (chmod/chown) or "
                 "run from a writable checkout",
    errno.EROFS: "the filesystem is read-only; run from a writable checkout or remount it "
                 "read-write",
    errno.ENOSPC: "no space left on the device; free disk space and rerun",
    getattr(errno, "EDQUOT", errno.ENOSPC): "no space left on the device or disk quota "
                                            "exceeded; free disk space and rerun",
    errno.ENOTDIR: "a component of that path is a file, not a folder; move or delete that file",
}
"""errno of a failure the user can fix on their side -> the fix (README "Troubleshooting")."""
_WRITE_ONLY = frozenset({errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def disk_error(exc: OSError, path: str | os.PathLike | None = None,
               action: str = "write") -> MedclassError | None:
    """A one-line ``MedclassError`` for an unusable output location (permissions, read-only
    filesystem, full disk, a file where a folder should be), or ``None`` for any other error.

    The message names the error's own file name when it has one, else ``path``; ``action``
    ("write", or "access" where the failing call may have been a read) starts it.
    """
    fix = _DISK_FIXES.get(exc.errno) if exc.errno is not None else None
    if fix is None:
        return None
    where = exc.filename if exc.filename is not None else path
    verb = "write" if exc.errno in _WRITE_ONLY else action
    return MedclassError(f"cannot {verb} {os.fsdecode(where) if where else 'an output'}: {fix}")


def _ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == errno.EEXIST:  # mkdir(exist_ok=True) on an existing non-folder
            exc = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
        raise disk_error(exc, path.parent) or MedclassError(
            f"cannot create folder {path.parent}: {exc.strerror}; check permissions/free space"
        ) from exc


def _is_output(name: str | bytes | os.PathLike, target: Path) -> bool:
    """``name`` is ``target``, inside it, or one of its temporaries (``.<name>.*`` beside it)."""
    try:
        rel = Path(os.fsdecode(name)).resolve().relative_to(target.parent.resolve())
    except (OSError, ValueError):
        return False
    first = rel.parts[0] if rel.parts else ""
    return first == target.name or first.startswith(f".{target.name}.")


@contextlib.contextmanager
def _disk_errors(target: Path) -> Iterator[None]:
    """Turn a fixable ``OSError`` (``disk_error``) from writing ``target`` or a temporary beside
    it into a one-line ``MedclassError``; errors about other files (inputs read inside the
    block) and other errors pass through unchanged."""
    try:
        yield
    except OSError as exc:
        ours = exc.filename is None or _is_output(exc.filename, target)
        # name the output, not the temporary file or folder that is written first
        err = disk_error(OSError(exc.errno, exc.strerror), target) if ours else None
        if err is None:
            raise
        raise err from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    _ensure_parent(target)
    with _disk_errors(target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _disk_errors(target):
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; it replaces ``path`` only if the block succeeds."""
    target = Path(path)
    _ensure_parent(target)
    with _disk_errors(target):
        tmp_path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent))
    os.chmod(tmp_path, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs are shared folders
    try:
        with _disk_errors(target):
            yield tmp_path
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp_path, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (sorted keys, 2-space indent, trailing newline)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MedclassError(f"{p} not found; run the stage that produces it first") from exc
    except json.JSONDecodeError as exc:
        raise MedclassError(f"{p} is not valid JSON ({exc}); delete it and rerun") from exc


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically so a crash never leaves a half-written file.

    Saved through a file object, not the temporary path: torch names the zip's inner folder
    after a path it is given (here a random temp name), so equal states would get different
    bytes and DVC would see a changed output, and rerun everything downstream, every time.
    """
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                import torch  # lazily: the data stages write no checkpoints

                torch.save(state, fh)
        except RuntimeError as exc:  # torch's zip writer reports a full disk this way
            if "write failed" not in str(exc) and "unexpected pos" not in str(exc):
                raise
            raise MedclassError(
                f"cannot write {path}: writing the checkpoint failed; check free disk space "
                "(and quota) and rerun"
            ) from exc


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    p = Path(path)
    if not p.is_file():
        raise MedclassError(f"checkpoint {p} not found; run the stage that writes it first")
    try:
        import torch

        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError variants
        raise MedclassError(
            f"cannot load checkpoint {p} safely ({type(exc).__name__}); "
            "only plain tensor/metadata checkpoints written by medclass are accepted"
        ) from exc
