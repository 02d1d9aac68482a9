"""Temporary git+DVC copies of this checkout for benchmarks that run the real pipeline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_env(repo: Path) -> dict[str, str]:
    """Environment for the copy's commands.

    The venv has medclass installed editable from the main checkout's src/; PYTHONPATH puts
    the copy's src/ first so the stages run exactly the code DVC hashes as their deps.
    """
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(repo / "src"), "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def copy_repo(dst: Path) -> None:
    """Copy the working tree's tracked and untracked-but-not-ignored files to ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def timed(repo: Path, env: dict[str, str], *cmd: str) -> tuple[float, str]:
    """Run ``cmd`` in ``repo`` (check=True); return (wall seconds, stdout + stderr)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(list(cmd), cwd=repo, env=env, check=True, capture_output=True,
                              text=True)
    except subprocess.CalledProcessError as exc:
        sys.stderr.write(f"{' '.join(cmd)} failed:\n{exc.stdout[-3000:]}\n{exc.stderr[-3000:]}")
        raise
    return time.perf_counter() - t0, proc.stdout + proc.stderr


def stages_run(output: str) -> list[str]:
    """Stages dvc ran, in order, from its ``Running stage 'name':`` lines."""
    return re.findall(r"Running stage '([^']+)'", output)




def recipe_workspace(ws: Path, npz: Path, recipe: str) -> dict[str, str]:
    """A git+DVC copy of this checkout in ``ws`` (created) with the MedMNIST file ``npz`` in
    ``data/external/`` and ``configs/<recipe>.yaml`` applied to its params.yaml (after the
    initial commit, as a user would); returns the environment for commands run in it."""
    ws.mkdir(parents=True)
    env = make_env(ws)
    copy_repo(ws)
    (ws / "data" / "external").mkdir(parents=True, exist_ok=True)
    shutil.copy2(npz, ws / "data" / "external" / npz.name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        timed(ws, env, *cmd)
    timed(ws, env, sys.executable, "-m", "medclass.cli", "recipe", "apply", recipe)
    return env
