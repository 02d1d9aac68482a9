"""Stage entry points: bad params and unwritable outputs end in one stderr line and exit 2."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medclass.stages._common import run_stage


def test_bad_params_stop_a_real_stage_with_one_line(tmp_path: Path) -> None:
    """finetune builds a model: an image size below the backbone's minimum must stop it at
    params validation, before it looks for data or checkpoints (subprocess: ~10 s)."""
    (tmp_path / "params.yaml").write_text("model: deit\ndata:\n  image_size: 8\n")
    proc = subprocess.run([sys.executable, "-m", "medclass.stages.finetune"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error [finetune]: params.yaml: data.image_size: 8 px is below deit's minimum of 16 px; "
        "set data.image_size >= 16 or pick another model"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


@pytest.fixture
def stage_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a default params.yaml (fast mode: run_stage runs in pytest's unpinned
    process); run_stage's SIGTERM handler is not installed."""
    (tmp_path / "params.yaml").write_text("repro: {mode: fast}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    return tmp_path


@pytest.mark.parametrize(("err", "expected"), [
    (OSError(errno.EROFS, "Read-only file system", "models/model.pt"),
     "cannot write models/model.pt: the filesystem is read-only; run from a writable checkout "
     "or remount it read-write"),
    (PermissionError(errno.EACCES, "Permission denied", "plots/test"),
     "cannot access plots/test: permission denied; fix the permissions of that path "
     "(chmod/chown) or run from a writable checkout"),
    (OSError(errno.ENOSPC, "No space left on device"),
     "cannot write an output: no space left on the device; free disk space and rerun"),
])
def test_run_stage_reports_disk_errors_in_one_line(stage_dir: Path, capsys, err: OSError,
                                                   expected: str) -> None:
    def main(params: object) -> None:
        raise err

    with pytest.raises(SystemExit) as exit_info:
        run_stage("evaluate", main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error [evaluate]: {expected}"]


def test_run_stage_keeps_the_traceback_of_other_os_errors(stage_dir: Path) -> None:
    def main(params: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        run_stage("evaluate", main)
