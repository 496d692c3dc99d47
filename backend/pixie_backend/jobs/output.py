"""An output folder that never loses or mixes up a result: a lock, a status ledger, all-or-nothing
commits per item, and resume.

* **Lock.** ``.pixie-lock`` (``filelock``) is held for a whole run: a second run on the folder waits
  (or refuses). The OS drops the lock when a run dies.
* **Ledger.** ``status.jsonl`` has one JSON record per finished item (``ok`` or ``error``). It is
  appended with one write and ``fsync``; a line cut short by a kill is removed by the next run.
* **Commit.** An item's files are written into ``.pixie-staging/<commit id>/`` first. Appending its
  ``ok`` record (which names the commit and the files) is the commit point; then the files are
  renamed into the folder. The next run finishes (rolls forward) a commit whose record exists and
  deletes a staging folder whose record does not. So after any kill, every item has all of its
  files and exactly one new record, or nothing new at all.
* **Resume.** An item is done when its latest record is ``ok``, has the same resume key (image
  content + settings + model, computed by the job), and all its files are there with their sizes.

The ledger records carry the item's name and the staging folder, so the same mechanism serves
per-frame items of a sequence job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import fsync_dir, remove_temps
from ..locking import FolderBusy, folder_lock

log = logging.getLogger(__name__)

LEDGER = "status.jsonl"
LOCK = ".pixie-lock"
STAGING = ".pixie-staging"
RECORD_VERSION = 1


class OutputError(RuntimeError):
    """The output folder cannot be used (a file, not writable, busy, ...); the message is for the user."""

    def __init__(self, message: str, code: str = "output"):
        super().__init__(message)
        self.code = code


class Staged:
    """A staging folder for one item's files; pass it to :meth:`OutputFolder.commit`."""

    def __init__(self, folder: Path, commit: str):
        self.folder = folder
        self.commit = commit

    def path(self, name: str) -> Path:
        return self.folder / name


class OutputFolder:
    """Use with :meth:`open` (a context manager that locks and recovers the folder)."""

    def __init__(self, root: Path):
        self.root = root
        self.ledger_path = root / LEDGER
        self.staging_root = root / STAGING
        self.records: list[dict[str, Any]] = []
        self.latest: dict[str, dict[str, Any]] = {}
        self._ledger = None

    # ------------------------------------------------------------------ opening
    @classmethod
    @contextlib.contextmanager
    def open(cls, root: str | os.PathLike, wait: float | None = None,
             on_wait: Callable[[], None] | None = None) -> Iterator[OutputFolder]:
        """Create/check the folder, take its lock, finish or undo what a killed run left, open the ledger.

        Args:
            wait: seconds to wait for another run's lock (None: as long as it takes; 0: refuse at once).
            on_wait: called once if another run holds the lock.

        Raises:
            OutputError: one sentence on what is wrong with the folder.
        """
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise OutputError(f"the output folder {root} is a file; name a folder", "usage")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the output folder {root}: {e.strerror or e}", "usage") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise OutputError(f"the output folder {root} is not writable", "usage")
        self = cls(root)
        try:
            lock = folder_lock(root / LOCK, timeout=wait, on_wait=on_wait)
            lock.__enter__()
        except FolderBusy:
            raise OutputError(f"another run is writing to {root}; wait until it has finished", "busy") from None
        except OSError as e:
            raise OutputError(f"cannot lock the output folder {root}: {e.strerror or e}", "usage") from None
        try:
            self._recover()
            try:
                self._ledger = open(self.ledger_path, "ab")  # noqa: SIM115 - closed below
            except OSError as e:
                raise OutputError(f"cannot use the status file {self.ledger_path}: {e.strerror or e}",
                                  "usage") from None
            yield self
        finally:
            if self._ledger is not None:
                self._ledger.close()
            lock.__exit__(None, None, None)

    # ------------------------------------------------------------------ recovery
    def _read_ledger(self) -> None:
        try:
            data = self.ledger_path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            raise OutputError(f"cannot use the status file {self.ledger_path}: {e.strerror or e}", "usage") from None
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            log.warning("%s: removing a record cut short by an interrupted run", self.ledger_path)
            try:
                with open(self.ledger_path, "r+b") as f:
                    f.truncate(cut)
                    os.fsync(f.fileno())
            except OSError as e:
                raise OutputError(f"cannot repair the status file {self.ledger_path}: {e.strerror or e}",
                                  "usage") from None
            data = data[:cut]
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                log.warning("%s: ignoring a line that is not JSON", self.ledger_path)
                continue
            if isinstance(rec, dict) and rec.get("record_version") == RECORD_VERSION and "item" in rec:
                self.records.append(rec)
                self.latest[rec["item"]] = rec

    def _recover(self) -> None:
        self._read_ledger()
        remove_temps(self.root, prefix="smplx_package_")
        if not self.staging_root.is_dir():
            return
        committed = {r.get("commit"): i for i, r in enumerate(self.records) if r.get("commit")}
        for d in sorted(self.staging_root.iterdir()):
            if d.name in committed:
                i = committed[d.name]
                log.info("finishing the interrupted commit of %s", self.records[i]["item"])
                self._publish(Staged(d, d.name), self.records[i], self._previous(i))
            else:
                shutil.rmtree(d, ignore_errors=True)

    def _previous(self, index: int) -> dict[str, Any] | None:
        item = self.records[index]["item"]
        for r in reversed(self.records[:index]):
            if r["item"] == item and r.get("status") == "ok":
                return r
        return None

    # ------------------------------------------------------------------ resume
    def is_done(self, item: str, key: str) -> bool:
        """True if ``item``'s latest record is ``ok`` with this resume key and its files are intact."""
        rec = self.latest.get(item)
        if rec is None or rec.get("status") != "ok" or rec.get("key") != key:
            return False
        for f in rec.get("files", []):
            p = self.root / f["name"]
            try:
                if p.stat().st_size != f["size"]:
                    return False
            except OSError:
                return False
        return True

    # ------------------------------------------------------------------ commits
    def stage(self) -> Staged:
        commit = uuid.uuid4().hex
        folder = self.staging_root / commit
        folder.mkdir(parents=True)
        return Staged(folder, commit)

    def discard(self, staged: Staged) -> None:
        shutil.rmtree(staged.folder, ignore_errors=True)

    def commit(self, staged: Staged, record: dict[str, Any]) -> dict[str, Any]:
        """Commit the files in ``staged`` with ``record`` (item, key, ... ); returns the full record."""
        files = sorted(p.name for p in staged.folder.iterdir())
        record = {**record, "status": "ok", "commit": staged.commit,
                  "files": [{"name": n, "size": (staged.folder / n).stat().st_size} for n in files]}
        previous = self.latest.get(record["item"])
        previous = previous if previous is not None and previous.get("status") == "ok" else None
        fsync_dir(staged.folder)
        full = self._append(record)
        self._publish(staged, full, previous)
        return full

    def log_error(self, record: dict[str, Any]) -> dict[str, Any]:
        """Record a failed item (no files)."""
        return self._append({**record, "status": "error"})

    def _append(self, record: dict[str, Any]) -> dict[str, Any]:
        full = {"record_version": RECORD_VERSION, **record,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        line = (json.dumps(full, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            write_record(self._ledger, line)
        except OSError as e:
            raise OutputError(f"cannot write the status file {self.ledger_path}: {e.strerror or e}") from None
        self.records.append(full)
        self.latest[full["item"]] = full
        return full

    def _publish(self, staged: Staged, record: dict[str, Any], previous: dict[str, Any] | None) -> None:
        names = [f["name"] for f in record.get("files", [])]
        for name in names:
            src = staged.folder / name
            if src.exists():
                os.replace(src, self.root / name)
        if previous is not None:  # files of the item's previous result that this one does not have
            for f in previous.get("files", []):
                if f["name"] not in names:
                    with contextlib.suppress(OSError):
                        (self.root / f["name"]).unlink()
        fsync_dir(self.root)
        shutil.rmtree(staged.folder, ignore_errors=True)


def write_record(f, line: bytes) -> None:
    """Append one ledger line with a single write and make it durable."""
    f.write(line)
    f.flush()
    os.fsync(f.fileno())
