"""How a folder tree is laid out: class folders at the top, or split folders holding them.

``data.layout: auto`` looks at the top-level folders of ``data.path``: when every one is named
like a split (case-insensitive ``train|training``, ``val|valid|validation|dev``,
``test|testing``) the tree is pre-split (``splits``); when none is, they are the classes
(``classes``). A level that mixes both is refused, since guessing would train the wrong task
(e.g. "train vs test"). ``classes`` and ``splits`` force the reading, for classes that really
are called like splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medclass.data.images import is_hidden
from medclass.errors import MedclassError

SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """What was found: ``kind`` (classes | splits), and per split (``""`` for a class tree) the
    class folders, name -> path. ``ignored`` lists top-level entries that are not folders."""

    kind: str
    splits: dict[str, dict[str, Path]]
    split_folders: dict[str, str] = field(default_factory=dict)
    ignored: list[dict[str, str]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Class folder names, sorted (equal in every split; checked at detection)."""
        first = next(iter(self.splits.values()), {})
        return sorted(first)


def split_name(folder: str) -> str | None:
    """The split a folder name stands for (``Training`` -> ``train``), or None."""
    return SPLIT_ALIASES.get(folder.strip().lower())


def _subfolders(root: Path, ignored: list[dict[str, str]], prefix: str = "") -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        rel = f"{prefix}{entry.name}"
        if is_hidden(entry):
            ignored.append({"path": rel, "reason": "hidden"})
        elif entry.is_symlink() and entry.is_dir():
            ignored.append({"path": rel, "reason": "symlinked folder not followed"})
        elif entry.is_dir():
            dirs[entry.name] = entry
        elif entry.is_symlink() and not entry.exists():
            ignored.append({"path": rel, "reason": "broken symbolic link"})
        else:
            ignored.append({"path": rel, "reason": "file outside any class folder"})
    return dirs


def _check_root(root: Path) -> None:
    if not root.exists():
        raise MedclassError(
            f"data.path '{root}' does not exist; point data.path at your image folder"
        )
    if not root.is_dir():
        raise MedclassError(f"data.path '{root}' is not a folder; point it at your image folder")


def _split_of_each(root: Path, dirs: dict[str, Path], layout: str) -> dict[str, str]:
    """Top-level folder -> split, or raise for a mixed level or two folders of one split."""
    named = {name: split_name(name) for name in dirs}
    splits = {n: s for n, s in named.items() if s is not None}
    others = sorted(n for n, s in named.items() if s is None)
    if layout == "splits" and others:
        raise MedclassError(
            f"data.layout is splits but '{root}' has folders {others} that are not "
            "train/val/test; move them into a split folder or set data.layout: classes"
        )
    if splits and others:
        raise MedclassError(
            f"'{root}' mixes split folders {sorted(splits)} with other folders {others}; put "
            "every class folder inside train/ (val/, test/), or set data.layout: classes if "
            "these are all classes"
        )
    seen: dict[str, str] = {}
    for name, split in sorted(splits.items()):
        if split in seen:
            raise MedclassError(
                f"folders '{seen[split]}' and '{name}' in '{root}' are both the {split} split; "
                "merge them or rename one"
            )
        seen[split] = name
    return splits


def _check_same_classes(root: Path, per_split: dict[str, dict[str, Path]],
                        folders: dict[str, str]) -> None:
    union = sorted(set().union(*(set(c) for c in per_split.values())))
    for split, classes in per_split.items():
        missing = [c for c in union if c not in classes]
        if missing:
            raise MedclassError(
                f"class folder(s) {missing} are missing from '{root / folders[split]}' (other "
                f"split folders have them); add them there or remove them from the other splits"
            )


def detect_layout(root: str | Path, layout: str = "auto") -> Layout:
    """Read the folder structure of ``root`` (see the module docstring)."""
    root = Path(root)
    _check_root(root)
    ignored: list[dict[str, str]] = []
    dirs = _subfolders(root, ignored)
    if layout == "classes":
        return Layout("classes", {"": dirs}, {}, ignored)
    splits = _split_of_each(root, dirs, layout)
    if not splits:
        if layout == "splits":
            raise MedclassError(
                f"data.layout is splits but '{root}' has no train/val/test folders; set "
                "data.layout: auto or classes"
            )
        return Layout("classes", {"": dirs}, {}, ignored)
    if "train" not in splits.values():
        raise MedclassError(
            f"'{root}' has split folders {sorted(splits)} but no train folder; add train/ "
            "(or training/), or set data.layout: classes if these are classes"
        )
    folders = {s: n for n, s in splits.items()}
    per_split = {
        s: _subfolders(dirs[folders[s]], ignored, prefix=f"{folders[s]}/")
        for s in SPLIT_ORDER if s in folders
    }
    _check_same_classes(root, per_split, folders)
    return Layout("splits", per_split, folders, ignored)
