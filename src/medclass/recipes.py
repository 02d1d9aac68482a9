"""Recipes: partial params files under ``configs/`` applied to params.yaml or to a DVC experiment.

A recipe is a YAML file holding only the keys it changes (nested like params.yaml); its first
comment lines describe it. ``set_args`` turns it into DVC's ``-S key=value`` overrides
(Hydra override grammar) so ``dvc exp run $(medclass recipe args NAME)`` runs it as an
experiment; ``apply`` sets the same leaves in params.yaml (comments and layout kept),
validated before the file is replaced.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import yaml

from medclass.config import parse_params
from medclass.errors import MedclassError
from medclass.io import write_text

RECIPE_DIR = Path("configs")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./\-]*")


def find_recipe(name: str, root: Path = RECIPE_DIR) -> Path:
    """``configs/NAME.yaml`` (or a path to a YAML file)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = root / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = ", ".join(r.stem for r in list_recipes(root)) or "none"
    raise MedclassError(f"recipe {name!r} not found in {root}/ (known: {known}); "
                        "give a name from `medclass recipe list` or a .yaml path")


def list_recipes(root: Path = RECIPE_DIR) -> list[Path]:
    return sorted(root.glob("*.yaml")) if root.is_dir() else []


def describe(path: Path) -> str:
    """The recipe's leading comment lines, joined."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines)


def load_recipe(path: Path) -> dict[str, Any]:
    """The recipe's nested overrides (a mapping; may be empty)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MedclassError(f"{path}: malformed YAML ({exc.__class__.__name__}); fix it") from None
    if not isinstance(data, dict):
        raise MedclassError(f"{path}: a recipe is a mapping of params keys to values")
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys of the leaves; non-empty mappings are walked, lists and ``{}`` are leaves."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += flatten(value, f"{dotted}.")
        else:
            out.append((dotted, value))
    return out


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (strings single-quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
            return value  # bare word: keeps `dvc exp run $(medclass recipe args X)` unquoted
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise MedclassError(f"recipe value {value!r} has an unsupported type {type(value).__name__}")


def set_args(recipe: dict[str, Any]) -> list[str]:
    """``key=value`` overrides, one per leaf (pass each after ``-S``)."""
    return [f"{key}={hydra_value(value)}" for key, value in flatten(recipe)]


def apply(recipe: dict[str, Any], params_path: Path = Path("params.yaml")) -> list[str]:
    """Write the recipe's leaves into params.yaml, keeping its comments and layout.

    Every key must already exist in the file (a typo is an error, as with ``dvc exp run -S``);
    the result is validated before the file is replaced atomically. Returns the changed keys.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(params_path.read_text(encoding="utf-8"))
    changed = []
    for key, value in flatten(recipe):
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise MedclassError(f"recipe key {key!r} is not in {params_path}; check the "
                                "spelling against params.yaml")
        if isinstance(value, list):
            seq = CommentedSeq(value)
            seq.fa.set_flow_style()
            value = seq
        node[leaf] = value
        changed.append(key)
    buf = io.StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    parse_params(yaml.safe_load(text), str(params_path))  # refuse an invalid result
    write_text(params_path, text)
    return changed
