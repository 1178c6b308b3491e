"""Patient ids in file names: the ``--group-pattern`` that would read them, when names say so.

Knee radiographs named ``9003175L.png`` and ``9003175R.png`` are two knees of one person; without
``--group-pattern`` (or a patient column) medbalance cannot know, and may split them apart.
:func:`suggest_group_pattern` tries a few patterns, each read exactly as ``--group-pattern`` reads
a name (:func:`medbalance.data.catalog.patient_ids`), and keeps the first that looks like a
patient id: it matches every name, pairs up a fair share of the files into small groups, and the
names of a group differ only by a short suffix (a side, a view, a letter or a number). Names
such as ``img_0001.png``, ``0001.png`` or ``BA_100102.jpg`` suggest nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from medbalance.data.catalog import patient_ids

__all__ = ["GROUP_PATTERNS", "suggest_group_pattern"]

# --group-pattern candidates, tried in order: each reads a patient id at the start of a file name
GROUP_PATTERNS = (
    r"^(\d+)",  # 9003175L.png, 9003175R.png: a number, then a side or view
    r"^(.*\d)[A-Za-z]\.",  # case12a.png, case12b.png
    r"^(.+)[_-][A-Za-z0-9]{1,2}\.",  # P001_L.png, P001_R.png; scan7-1.png, scan7-2.png
)
_SUFFIX = 3  # at most this many characters after the id tell one patient's files apart
_SHARE = 0.2  # a pattern must pair up at least this share of the files
_MAX_GROUP = 10  # and make no group larger than this (a shared word is no patient id)


def suggest_group_pattern(names: Sequence[str]) -> tuple[str, dict[str, list[str]]] | None:
    """The first of :data:`GROUP_PATTERNS` that reads a patient id from ``names`` (file names,
    not paths), with the groups of two or more names it makes; None when none does."""
    for pattern in GROUP_PATTERNS:
        groups = _pattern_groups(pattern, names)
        if groups is not None:
            return pattern, groups
    return None


def _pattern_groups(pattern: str, names: Sequence[str]) -> dict[str, list[str]] | None:
    """The groups of 2+ names ``pattern`` makes when it looks like a patient id (see the module
    docstring), else None."""
    by_id: defaultdict[str, list[str]] = defaultdict(list)
    for name, key in zip(names, patient_ids(re.compile(pattern), names), strict=True):
        if key is None:
            return None  # --group-pattern refuses a pattern that misses a file
        by_id[key].append(name)
    groups = {key: files for key, files in by_id.items() if len(files) > 1}
    paired = sum(len(files) for files in groups.values())
    if len(groups) < 2 or paired < _SHARE * len(names):
        return None
    if max(len(files) for files in groups.values()) > _MAX_GROUP:
        return None
    short = all(
        len(name.rsplit(".", 1)[0]) - len(key) <= _SUFFIX
        for key, files in groups.items()
        for name in files
    )
    return groups if short else None
