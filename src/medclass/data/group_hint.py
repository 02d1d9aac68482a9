"""Guess a ``split.group_pattern`` (a patient id) from file names, for ``medclass data check``.

Every file stem is cut into tokens: letters, an optional ``-``/``_``, then digits, followed by
a separator (``person123_…`` -> family ``person``, id ``person123``; ``IM-0023-0001`` -> family
``IM-``, id ``IM-0023``; ``00000013_005`` -> family ``""``, id ``00000013``, searched only in
the file name so that a class folder such as ``1_effusion`` cannot match). A family looks
like a patient id when it gives at least ``MIN_GROUPS`` ids, more than one image per id on
average, and no id holds more than ``MAX_SHARE`` of its images (that would be a batch or a
site, not a patient). The families that cover the most files become one regular expression,
which is then run exactly as the split stage runs it (``re.search`` on each path relative to
``data.path``, first capture group): it is suggested only when it matches most files
(``MIN_COVERAGE``) and still gives more than one image per group.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from medclass.data.groups import cross_split_groups

MIN_GROUPS = 5
MAX_SHARE = 0.25
MIN_COVERAGE = 0.5
MIN_EXTRA = 0.1
"""A second family joins the pattern when it covers this share of files the first missed."""

_TOKEN = re.compile(r"(?:^|(?<=[-_]))([A-Za-z]*[-_]?)(\d+)([-_])")


@dataclass(frozen=True)
class GroupHint:
    """A suggested pattern and what it does to the files (split stage semantics)."""

    pattern: str
    files: int
    matched: int
    groups: int
    cross_split: int | None = None
    cross_split_images: int = 0

    @property
    def mean(self) -> float:
        """Matched images per group."""
        return self.matched / self.groups if self.groups else 0.0


@dataclass
class _Family:
    ids: dict[int, str]  # file index -> id
    seps: Counter


def _families(stems: Sequence[str]) -> dict[str, _Family]:
    """Family -> the first id of that family in each stem, and the separators after it."""
    fams: dict[str, _Family] = defaultdict(lambda: _Family({}, Counter()))
    for i, stem in enumerate(stems):
        for m in _TOKEN.finditer(stem):
            fam = fams[m.group(1)]
            if i not in fam.ids:
                fam.ids[i] = m.group(1) + m.group(2)
                fam.seps[m.group(3)] += 1
    return fams


def _looks_like_id(fam: _Family) -> bool:
    sizes = Counter(fam.ids.values())
    n = len(fam.ids)
    return len(sizes) >= MIN_GROUPS and n > len(sizes) and max(sizes.values()) <= MAX_SHARE * n


def _pick(fams: dict[str, _Family], n_files: int) -> list[str]:
    """The id-like families, largest first, each adding enough new files."""
    ranked = sorted((f for f in fams if _looks_like_id(fams[f])),
                    key=lambda f: (-len(fams[f].ids), f))
    chosen: list[str] = []
    covered: set[int] = set()
    for f in ranked:
        new = fams[f].ids.keys() - covered
        if not chosen or len(new) >= MIN_EXTRA * n_files:
            chosen.append(f)
            covered |= new
    return chosen


def _regex(chosen: list[str], fams: dict[str, _Family]) -> str:
    seps = sum((fams[f].seps for f in chosen), Counter())
    after = next(iter(seps)) if len(seps) == 1 else "[-_]"
    if chosen == [""]:  # bare digits: only at the start of the file name, not in a folder
        return rf"(?:^|/)(\d+){after}[^/]*$"
    alternatives = "|".join(rf"{f}\d+" if f else r"(?<![A-Za-z0-9])\d+" for f in chosen)
    tail = "[^/]*$" if "" in chosen else ""
    return f"({alternatives}){after}{tail}"


def path_groups(paths: Sequence[str], pattern: str) -> list[str]:
    """The group value of each path: ``re.search`` first capture group, "" when none (as the
    split stage's ``leakage.pattern_groups``)."""
    regex = re.compile(pattern)
    out = []
    for path in paths:
        m = regex.search(path)
        out.append((m.group(1) or "") if m else "")
    return out


def _cross_split(values: list[str], splits: Sequence[str]) -> tuple[int, int]:
    kept = [(v, s) for v, s in zip(values, splits, strict=True) if v]
    if not kept:
        return 0, 0
    ids = {v: i for i, v in enumerate(sorted({v for v, _ in kept}))}
    return cross_split_groups(np.array([ids[v] for v, _ in kept]),
                              np.array([s for _, s in kept]))


def suggest_group_pattern(paths: Sequence[str],
                          splits: Sequence[str] | None = None) -> GroupHint | None:
    """A ``split.group_pattern`` for ``paths`` (relative to data.path), or None.

    ``splits`` (the split folder of each path, pre-split trees) adds how many groups span
    split folders: the same patient in train and test.
    """
    if not paths:
        return None
    fams = _families([PurePosixPath(p).stem for p in paths])
    chosen = _pick(fams, len(paths))
    if not chosen:
        return None
    pattern = _regex(chosen, fams)
    values = path_groups(paths, pattern)
    matched = sum(bool(v) for v in values)
    groups = len({v for v in values if v})
    if matched < MIN_COVERAGE * len(paths) or matched <= groups:
        return None
    if splits is None:
        return GroupHint(pattern, len(paths), matched, groups)
    leaks, images = _cross_split(values, splits)
    return GroupHint(pattern, len(paths), matched, groups, leaks, images)
