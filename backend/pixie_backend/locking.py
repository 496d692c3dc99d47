"""Folder locks between processes, with the ``filelock`` package (fcntl/msvcrt underneath; the OS
releases the lock when its process ends, even on a kill, so a crashed run never blocks the next)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock


class FolderBusy(RuntimeError):
    """Another process holds the lock (and we did not wait, or waited in vain)."""


@contextlib.contextmanager
def folder_lock(lock_file: str | os.PathLike, timeout: float | None = 0,
                on_wait: Callable[[], None] | None = None) -> Iterator[filelock.BaseFileLock]:
    """Hold ``lock_file`` (created if missing) for the ``with`` block.

    Args:
        timeout: 0 refuses at once, ``None`` waits as long as it takes, else seconds to wait.
        on_wait: called once, before waiting, when another process holds the lock.

    Raises:
        FolderBusy: the lock was not obtained in time.
        OSError: the lock file cannot be created (folder missing or read-only).
    """
    lock = filelock.FileLock(str(lock_file), is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if timeout == 0:
            raise FolderBusy(str(Path(lock_file).parent)) from None
        if on_wait is not None:
            on_wait()
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout, poll_interval=0.2)
        except filelock.Timeout:
            raise FolderBusy(str(Path(lock_file).parent)) from None
    try:
        yield lock
    finally:
        lock.release()
