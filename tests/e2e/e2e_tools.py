"""Shared tools of the end-to-end tests (importable: pytest's ``pythonpath`` lists this folder):
a git+DVC copy of the repository and ``run``, which runs real commands (dvc, git) in it with
the venv first on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OUTPUTS = ("data/raw", "data/split", "models/", "plots/", "metrics/", "dvc.lock")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and k in base else v
    return out


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in ``cwd``; on failure raise with the tail of its output."""
    proc = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def set_params(repo: Path, over: dict) -> None:
    """Merge ``over`` into the copy's params.yaml."""
    p = repo / "params.yaml"
    p.write_text(yaml.safe_dump(_merge(yaml.safe_load(p.read_text()), over), sort_keys=False))


def copy_repo(dst: Path, params: dict) -> Path:
    """The repository's tracked and new files (no outputs, no cache) in a fresh git repo at
    ``dst``, params merged with ``params``, committed."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if f.startswith(OUTPUTS) or not (REPO / f).is_file():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst / f)
    set_params(dst, params)
    run(dst, "git", "init", "-q")
    run(dst, "git", "add", "-A")
    run(dst, "git", "commit", "-qm", "init")
    return dst


def ran_stages(proc: subprocess.CompletedProcess) -> set[str]:
    """The pipeline stages a ``dvc repro`` / ``dvc exp run`` output says it ran."""
    text = proc.stdout + proc.stderr
    return {s for s in ("prepare", "split", "verify", "head", "finetune", "evaluate",
                        "kfold", "export")
            if f"Running stage '{s}'" in text}
