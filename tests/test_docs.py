"""The documentation: the MkDocs site builds in strict mode (its generated pages included), the
generated params page lists every params key, and README.md stays short."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def _mkdocs() -> str | None:
    beside = Path(sys.executable).with_name("mkdocs")  # the venv's own
    return str(beside) if beside.exists() else shutil.which("mkdocs")


def _leaf_keys() -> list[str]:
    from medclass.config import Params

    keys: list[str] = []

    def walk(data: dict, prefix: str) -> None:
        for key, value in data.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                keys.append(prefix + key)

    walk(Params().model_dump(), "")
    return keys


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mkdocs = _mkdocs()
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([mkdocs, "build", "--strict", "-d", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_site_builds_without_markers_left(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert (site / "index.html").exists() and len(pages) > 10
    leftover = [p for p in pages if "<!-- gen:" in p.read_text(encoding="utf-8")]
    assert not leftover, f"unreplaced generated blocks in {leftover}"


def test_params_page_lists_every_key(site: Path) -> None:
    text = html.unescape((site / "params" / "index.html").read_text(encoding="utf-8"))
    keys = _leaf_keys()
    assert len(keys) > 100
    missing = [k for k in keys if f"<code>{k}</code>" not in text]
    assert not missing, f"params page lacks {missing}"


def test_models_page_lists_every_backbone(site: Path) -> None:
    from medclass.models import list_models

    text = (site / "models" / "index.html").read_text(encoding="utf-8")
    missing = [n for n in list_models() if f"<code>{n}</code>" not in text]
    assert not missing, f"models page lacks {missing}"


def test_site_is_offline(site: Path) -> None:
    """No Google Fonts or other web fonts fetched by the pages (theme.font: false)."""
    for page in [site / "index.html", site / "params" / "index.html"]:
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text


def test_readme_keeps_the_user_data_commands() -> None:
    """tests/e2e/test_user_data.py follows these lines of README's "Your own data"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "dvc add data/external/chest_xray" in text
    assert ("dvc exp run -S data.source=folder -S data.path=data/external/chest_xray \\\n"
            "  -S \"split.group_pattern='(person\\d+|IM-\\d+)'\"") in text
    assert "make repro" in text and "make test" in text
