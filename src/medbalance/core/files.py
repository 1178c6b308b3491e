"""Durable, atomic file writes, and text cells that are safe in a spreadsheet.

Every output is written under a temporary name in its own folder, flushed to disk (``fsync``),
renamed over the target (atomic on POSIX and Windows within one file system) and the folder
entry flushed too, so a killed or crashed run leaves each file either old and complete or new
and complete, never half written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "PART_SUFFIX",
    "atomic_write",
    "atomic_write_text",
    "from_spreadsheet_safe",
    "spreadsheet_safe",
]

PART_SUFFIX = ".part"  # temporary files: ``.NAME.XXXX.part`` beside the target
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file next to ``path``, then rename it to ``path``.

    The temporary file is removed if ``write`` raises (or the run is interrupted), so ``path``
    holds either its old content or the complete new one.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk; a no-op where the platform
    cannot open folders (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def spreadsheet_safe(text: str) -> str:
    """A text cell that a spreadsheet shows as text, not as a formula (CSV injection).

    As OWASP recommends, a cell that starts with ``= + - @``, a tab or a carriage return gets a
    leading single quote. Only for text cells (names, ids, paths): numbers are written as they
    are.
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


def from_spreadsheet_safe(text: str) -> str:
    """The text :func:`spreadsheet_safe` was given (reading our own CSVs back)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text
