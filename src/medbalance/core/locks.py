"""An exclusive lock on an output folder for the whole of one command.

Two ``train`` processes given the same ``--out`` would otherwise both pass the "already holds a
run" check and write into one folder. The lock is ``fcntl.flock`` on ``FOLDER/.medbalance.lock``:
the kernel releases it when the process ends, even by ``kill -9``, so a killed command never
leaves a stale lock. Written by hand (not ``filelock``) because the refusal names the process
that holds the folder, which the lock file records.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

__all__ = ["LOCK_NAME", "FolderBusyError", "folder_lock", "is_lock_file", "locks_folder"]

P = ParamSpec("P")
R = TypeVar("R")

LOCK_NAME = ".medbalance.lock"


class FolderBusyError(ValueError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs (creating the folder if needed).

    The lock file is removed when the block ends, and so is a folder this call created that
    holds nothing else (the command stopped at a check): a refused command leaves no trace.

    Raises:
        FolderBusyError: another process holds the lock (its PID is named).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        yield  # not a folder: the command's own checks refuse it with their message
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _acquire(path, folder)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: a later process makes a new file
        os.close(fd)  # releases the lock
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def _acquire(path: Path, folder: Path) -> int:
    """Open and lock ``path``; retried when the file was removed by its holder between our
    open and our lock (then we would hold a lock on a file nobody else can see)."""
    import fcntl

    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderBusyError(
                f"{folder} is in use by process {holder} (a medbalance command writing there); "
                "wait for it to finish, or give another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise FolderBusyError(f"{folder}: could not take its lock; try again")


def is_lock_file(path: Path) -> bool:
    """Whether ``path`` is a folder's lock file (not the user's, not a run's)."""
    return Path(path).name == LOCK_NAME


def locks_folder(param: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a workflow so that it holds the lock of the folder named by its ``param``
    argument (``out``) from its first check to its last write."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            folder = signature.bind(*args, **kwargs).arguments[param]
            with folder_lock(Path(folder)):
                return function(*args, **kwargs)

        return run

    return decorate
