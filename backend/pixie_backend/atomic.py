"""Atomic file writes: the one helper the whole backend uses.

A file is written to a temporary name in the destination folder, flushed to disk, then renamed
over the final name (``os.replace``, atomic on POSIX and Windows). A reader therefore sees the old
file or the new one, never half of one, and an interrupted write leaves no file under the final
name (only, after a hard kill, a ``<name>.<random>.tmp`` that :func:`remove_temps` deletes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, prefix: str | None = None,
                 fsync: bool = True, encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``.

    Args:
        path: the final file name (its folder is created if missing).
        mode: ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise).
        prefix: temporary-name prefix (default ``<name>.``); lets a caller find its own leftovers.
        fsync: flush the data to disk before the rename (off only for scratch files).

    On an exception (or ``KeyboardInterrupt``) the temporary file is deleted and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f"{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **kw) -> None:
    with atomic_write(path, "wb", **kw) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, **kw) -> None:
    with atomic_write(path, "w", **kw) as f:
        f.write(text)


def remove_temps(folder: str | os.PathLike, prefix: str = "") -> list[str]:
    """Delete ``<prefix>*.tmp`` leftovers of a killed writer in ``folder``; returns their names.

    Call it only while no other writer can be active (under the folder's lock).
    """
    removed = []
    for p in Path(folder).glob(f"{prefix}*{TEMP_SUFFIX}"):
        try:
            p.unlink()
            removed.append(p.name)
        except OSError:
            pass
    return removed
