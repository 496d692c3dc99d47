"""The job registry: every job the service runs, whatever its kind.

A job kind mounts with a submit route that validates its request and calls
:meth:`JobRegistry.submit` with a factory; the registry does the rest for every kind alike:

* queue limits (``queue_full``) and a pool of job threads (``Limits.max_running_jobs``): jobs that
  run at once share the engine's batches through the one :class:`~pixie_backend.runtime.batcher.Batcher`;
* waiting for the model (a job submitted while it loads waits; missing files fail it with
  ``model_files``);
* the job's output folder ``<work>/jobs/<id>/``, its events (the protocol of ``docs/protocol.md``,
  with server paths replaced by file names), the files a client may fetch (those the events list in
  ``details.files``), and the model packages its folder holds (kept once per content hash in
  ``<work>/packages/`` and linked into each new job folder, so no job writes one again);
* cancel, delete, expiry of finished jobs (``keep_seconds``) and cancelling everything at shutdown.

A factory gets a :class:`JobContext` and returns an object with ``run() -> Iterator[Event]`` and
``cancel()`` (``ReconstructJob``, ``SequenceJob``)::

    job = registry.submit("reconstruct", lambda ctx: ReconstructJob(ctx.engine, sources,
                          ReconstructOptions(ctx.out_dir), batcher=ctx.batcher, job_id=ctx.job_id),
                          total=len(sources))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..jobs.events import STATUS_CANCELLED, STATUS_FAILED, Emitter, Event, Finished
from .config import Limits
from .errors import ApiError
from .models import ModelHolder, ModelUnavailable

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE = "queued", "running", "done"
PACKAGE_GLOB = "smplx_package_*.npz"
#: ``details`` keys that hold server paths a client has no use for.
_SERVER_ONLY_KEYS = ("data_dir", "out")


class RunnableJob(Protocol):
    def run(self) -> Iterator[Event]: ...

    def cancel(self) -> None: ...


@dataclass(frozen=True)
class JobContext:
    """What a job factory gets: the job's id and output folder, the loaded engine, the shared batcher."""

    job_id: str
    out_dir: Path
    engine: Any
    batcher: Any


JobFactory = Callable[[JobContext], RunnableJob]


def _public(value: Any, root: str) -> Any:
    """``value`` with server paths under ``root`` replaced by paths relative to the job folder."""
    if isinstance(value, str):
        if value == root:
            return "."
        if value.startswith(root + os.sep):
            return Path(value).relative_to(root).as_posix()
        return value
    if isinstance(value, dict):
        return {k: _public(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v, root) for v in value]
    return value


def public_event(event: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """An event as the service sends it: no server paths (``details.out``/``data_dir`` dropped,
    result paths relative to the job folder, i.e. names for ``GET /v1/jobs/{id}/files/{name}``)."""
    ev = dict(event)
    details = {k: v for k, v in (ev.get("details") or {}).items() if k not in _SERVER_ONLY_KEYS}
    ev["details"] = _public(details, str(out_dir))
    return ev


class ServiceJob:
    """One job's record: state, events, files; thread-safe. Streams wait on it from the event loop."""

    def __init__(self, job_id: str, kind: str, out_dir: Path, total: int | None, info: dict[str, Any]):
        self.id = job_id
        self.kind = kind
        self.out_dir = out_dir
        self.total = total
        self.info = info  #: kind-specific facts for the job's status (e.g. the image names)
        self.created = time.time()
        self.started: float | None = None
        self.finished_at: float | None = None
        self.state = QUEUED
        self.events: list[dict[str, Any]] = []
        self.files: dict[str, None] = {}  #: names a client may fetch, in order
        self.packages: dict[str, Path] = {}  #: content sha256 -> package file in the job folder
        self.stop = threading.Event()
        self.runner: RunnableJob | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # ------------------------------------------------------------------ events
    def append(self, event: dict[str, Any], *, final: bool = False) -> None:
        """Add an event; ``final``: it is the ``finished`` record, and the job is done (atomically, so
        a stream that sees ``done`` has every event)."""
        details = event.get("details") or {}
        with self._lock:
            self.events.append(event)
            if event.get("event") in ("item_done", "finished"):
                for name in details.get("files") or []:
                    if isinstance(name, str):
                        self.files[name] = None
            if final:
                self.finished_at = time.time()
                self.state = DONE
            waiters = list(self._waiters)
        for loop, flag in waiters:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(flag.set)

    def events_since(self, index: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.events[index:]

    @property
    def done(self) -> bool:
        return self.state == DONE

    @property
    def status(self) -> str | None:
        """The ``finished`` event's status once done."""
        with self._lock:
            last = self.events[-1] if self.events else None
        return last.get("status") if last and last.get("event") == "finished" else None

    def add_waiter(self, loop: asyncio.AbstractEventLoop, flag: asyncio.Event) -> None:
        with self._lock:
            self._waiters.append((loop, flag))

    def remove_waiter(self, loop: asyncio.AbstractEventLoop, flag: asyncio.Event) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._waiters.remove((loop, flag))

    # ------------------------------------------------------------------ files
    def file_path(self, name: str) -> Path | None:
        """The path of a fetchable file (only names the job's events listed; never a client's path)."""
        with self._lock:
            listed = name in self.files
        if not listed:
            return None
        path = self.out_dir / name
        return path if path.is_file() else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            files = list(self.files)
            count = len(self.events)
            packages = [{"sha256": sha, "size": _size(p)} for sha, p in self.packages.items()]
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "status": self.status, "total": self.total,
            "created": self.created, "started": self.started, "finished": self.finished_at, "events": count,
            "files": [{"name": n, "size": _size(self.out_dir / n)} for n in files], "packages": packages,
            **self.info,
        }


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def read_package_sha(path: Path) -> str | None:
    """The ``content_sha256`` in a model package's header (reads the header member only)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            sha = json.loads(str(z["header"])).get("content_sha256")
    except Exception:  # noqa: BLE001 - an unreadable file is no package
        return None
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy where links are impossible), atomically."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


class PackageStore:
    """Model packages by content hash under ``<work>/packages/<sha256>.npz``."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._names: dict[str, str] = {}  #: sha -> the file name jobs write (smplx_package_<sha12>.npz)
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path | None:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return None
        p = self.root / f"{sha256}.npz"
        return p if p.is_file() else None

    def adopt(self, folder: Path) -> dict[str, Path]:
        """Keep the packages found in a job folder; returns {sha: path in the folder}."""
        found = {}
        for p in sorted(folder.glob(PACKAGE_GLOB)):
            sha = read_package_sha(p)
            if sha is None:
                continue
            found[sha] = p
            with self._lock:
                self._names[sha] = p.name
                if not (self.root / f"{sha}.npz").is_file():
                    try:
                        link_or_copy(p, self.root / f"{sha}.npz")
                    except OSError as e:
                        log.warning("cannot keep model package %s: %s", p.name, e)
        return found

    def seed(self, folder: Path) -> None:
        """Link every kept package into a new job folder under the name a job writes, so the job
        finds it there instead of writing 100 MB again."""
        with self._lock:
            names = dict(self._names)
        for sha, name in names.items():
            src = self.root / f"{sha}.npz"
            if src.is_file():
                try:
                    link_or_copy(src, folder / name)
                except OSError as e:
                    log.debug("cannot link package %s into %s: %s", name, folder, e)


class JobRegistry:
    """See the module docstring. ``work_dir`` holds ``jobs/`` and ``packages/`` (both are the
    service's own: what it finds there at start is left over from an earlier run and removed)."""

    def __init__(self, models: ModelHolder, work_dir: Path, limits: Limits, keep_seconds: float = 1800.0):
        self.models = models
        self.work_dir = work_dir
        self.jobs_dir = work_dir / "jobs"
        shutil.rmtree(self.jobs_dir, ignore_errors=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.packages = PackageStore(work_dir / "packages")
        self.limits = limits
        self.keep_seconds = keep_seconds
        self.jobs: dict[str, ServiceJob] = {}
        self.kinds: set[str] = set()
        self.closing = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=limits.max_running_jobs, thread_name_prefix="pixie-job")
        self._futures: dict[str, Any] = {}
        self._janitor_stop = threading.Event()
        self._janitor = threading.Thread(target=self._janitor_loop, name="pixie-janitor", daemon=True)
        self._janitor.start()

    # ------------------------------------------------------------------ submit
    def register_kind(self, kind: str) -> None:
        """Record a job kind (for health and the docs); the kind's route calls :meth:`submit`."""
        self.kinds.add(kind)

    def active(self) -> int:
        with self._lock:
            return sum(1 for j in self.jobs.values() if not j.done)

    def submit(self, kind: str, factory: JobFactory, *, total: int | None = None,
               info: dict[str, Any] | None = None, prepare: Callable[[Path], None] | None = None) -> ServiceJob:
        """Queue a job; returns its record at once.

        Args:
            factory: builds the job once the model is loaded (on the job's thread).
            total: items, for the status before the job starts.
            info: facts for the job's status document.
            prepare: called with the new (empty) output folder before the job is queued, e.g. to
                store uploads there.

        Raises:
            ApiError: ``shutting_down``, ``queue_full``.
        """
        with self._lock:
            if self.closing:
                raise ApiError("shutting_down", "the service is shutting down")
            active = sum(1 for j in self.jobs.values() if not j.done)
            if active >= self.limits.max_queued_jobs:
                raise ApiError("queue_full", f"{active} jobs are queued or running, the service's limit; "
                                             "try again when one has finished")
            job_id = uuid.uuid4().hex[:16]
            out_dir = self.jobs_dir / job_id
            job = ServiceJob(job_id, kind, out_dir, total, dict(info or {}))
            self.jobs[job_id] = job
        try:
            out_dir.mkdir(parents=True)
            if prepare is not None:
                prepare(out_dir)
        except BaseException:
            with self._lock:
                self.jobs.pop(job_id, None)
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        with self._lock:
            self._futures[job_id] = self._pool.submit(self._run, job, factory)
        return job

    # ------------------------------------------------------------------ running
    def _finish_early(self, job: ServiceJob, status: str, code: str, message: str) -> None:
        ev = Emitter(job.id).make(Finished, status=status, exit_code=130 if status == STATUS_CANCELLED else 1,
                                  error={"code": code, "message": message}, details={"job_kind": job.kind})
        self._finish(job, ev.to_dict())

    def _finish(self, job: ServiceJob, event: dict[str, Any]) -> None:
        """The last event: the packages of the job's folder are known before a client sees it."""
        with contextlib.suppress(Exception):
            job.packages = self.packages.adopt(job.out_dir)
        job.runner = None  # frees the job's inputs (uploaded images) while its record is kept
        job.append(event, final=True)

    def _run(self, job: ServiceJob, factory: JobFactory) -> None:
        job.state, job.started = RUNNING, time.time()
        try:
            if job.stop.is_set():
                self._finish_early(job, STATUS_CANCELLED, "cancelled", "cancelled before it started")
                return
            try:
                engine, batcher = self.models.get(stop=job.stop)
            except ModelUnavailable as e:
                self._finish_early(job, STATUS_FAILED, e.code, str(e))
                return
            except TimeoutError:
                self._finish_early(job, STATUS_CANCELLED, "cancelled", "cancelled while the model was loading")
                return
            self.packages.seed(job.out_dir)
            runner = factory(JobContext(job.id, job.out_dir, engine, batcher))
            job.runner = runner
            if job.stop.is_set():
                runner.cancel()
            for event in runner.run():
                d = public_event(event.to_dict(), job.out_dir)
                if d.get("event") == "finished":
                    self._finish(job, d)
                    break
                job.append(d)
        except Exception as e:  # noqa: BLE001 - a job's bug must not take the service down
            log.exception("job %s failed", job.id)
            if not job.done:
                self._finish_early(job, STATUS_FAILED, "internal", f"internal error: {e!r}")
        finally:
            if not job.done:
                self._finish_early(job, STATUS_FAILED, "internal", "the job ended without a result")

    # ------------------------------------------------------------------ look-up, cancel, delete
    def get(self, job_id: str) -> ServiceJob:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise ApiError("job_not_found", f"no job {job_id!r} (finished jobs are kept "
                                            f"{self.keep_seconds / 60:.0f} minutes)")
        return job

    def cancel(self, job_id: str) -> ServiceJob:
        """Stop a job: a queued one does not start, a running one stops after the item it is on."""
        job = self.get(job_id)
        job.stop.set()
        runner = job.runner
        if runner is not None and not job.done:
            runner.cancel()
        return job

    def delete(self, job_id: str) -> None:
        """Forget a finished job and remove its files (a running job: ``job_running``)."""
        job = self.get(job_id)
        if not job.done:
            raise ApiError("job_running", "the job is still running: cancel it first, then delete it when it "
                                          "has finished")
        with self._lock:
            self.jobs.pop(job_id, None)
            self._futures.pop(job_id, None)
        shutil.rmtree(job.out_dir, ignore_errors=True)

    def expire(self, now: float | None = None) -> int:
        """Delete finished jobs older than ``keep_seconds``; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            old = [j for j in self.jobs.values()
                   if j.done and j.finished_at and now - j.finished_at > self.keep_seconds]
            for j in old:
                self.jobs.pop(j.id, None)
                self._futures.pop(j.id, None)
        for j in old:
            shutil.rmtree(j.out_dir, ignore_errors=True)
        return len(old)

    def _janitor_loop(self) -> None:
        while not self._janitor_stop.wait(min(60.0, max(1.0, self.keep_seconds / 4))):
            with contextlib.suppress(Exception):
                self.expire()

    # ------------------------------------------------------------------ shutdown
    def cancel_all(self) -> None:
        """Refuse new jobs and cancel every queued and running one (SIGTERM, Ctrl-C, stdin EOF)."""
        with self._lock:
            self.closing = True
            jobs = list(self.jobs.values())
        for job in jobs:
            if not job.done:
                job.stop.set()
                if job.runner is not None:
                    job.runner.cancel()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel everything, wait up to ``timeout`` s for the job threads; True if they all ended."""
        self.cancel_all()
        self._janitor_stop.set()
        deadline = time.monotonic() + timeout
        ok = True
        with self._lock:
            futures = list(self._futures.values())
        for fut in futures:
            left = deadline - time.monotonic()
            try:
                fut.result(timeout=max(0.0, left))
            except Exception:  # noqa: BLE001 - a timeout or the job's own failure (already reported)
                ok = ok and fut.done()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return ok
