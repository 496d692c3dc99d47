"""What every backend job of the add-on shares, without ``bpy`` (standard library only): where the
backend comes from (a connector), and a task that runs the job's network work on one reader thread
while the main thread polls it without ever blocking.

* :class:`LocalConnector`: the backend this Blender starts through the
  :class:`~.supervisor.Supervisor` (started on demand, reused while warm, restarted when it died);
* :class:`RemoteConnector`: the "Remote backend" URL and token of the preferences;
* :class:`BackendTask`: the state machine of one job. :meth:`~BackendTask.step` (called by a modal
  operator on each timer tick, or by headless code in a loop) drains the reader thread's queue into
  the task's ``progress``; subclasses say what to upload, how events read and what to download
  (``client/reconstruct.py``: photos, ``client/sequence.py``: a video or a folder of frames).

Results are kept in a results folder with a ``<name><source suffix>`` record of the local input
(so the folder re-imports on its own), and the model package is downloaded once per content hash
into ``<cache_dir>/packages/<sha256>.npz`` and linked into the results folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import supervisor as sup
from .service_client import BadResponse, ServiceClient, ServiceError, ServiceTimeout, Unreachable

_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def safe_stem(name: str) -> str:
    """The output stem the backend gives an upload (``pixie_backend.jobs.sources.safe_name``)."""
    stem = _UNSAFE.sub("_", Path(str(name)).name).strip("._") or "image"
    return stem[:120]


def package_cache_path(cache_dir: Path, sha256: str) -> Path:
    """``<cache>/packages/<sha256>.npz`` (the add-on's package cache, ``io.schema.package_cache_path``)."""
    return Path(cache_dir) / "packages" / f"{sha256}.npz"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_source_record(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def allocate_names(
    stems: Sequence[str], shas: Sequence[str], results_dir: Path, result_suffix: str, source_suffix: str
) -> list[str]:
    """A result name per input (``stems``: e.g. the file stems): the stem, unless the results folder
    already holds that name for another input (its ``<name><source_suffix>`` records another content
    hash) or another input of this run has it; then ``<stem>_2``, ``<stem>_3``, ... The same input
    again gets its old name (and its result is replaced)."""
    taken: set[str] = set()
    names = []
    for stem, sha in zip(stems, shas, strict=True):
        base = safe_stem(stem)
        n, name = 1, base
        while True:
            if name not in taken:
                record = read_source_record(results_dir / f"{name}{source_suffix}")
                exists = (results_dir / f"{name}{result_suffix}").exists()
                if not exists or (record is not None and record.get("sha256") == sha):
                    break
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names.append(name)
    return names


def write_json_atomic(path: Path, doc: Mapping) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link of ``src`` (a copy where links are impossible), atomically."""
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


# --------------------------------------------------------------------------------------------------
# Where the backend comes from


class ConnectError(Exception):
    """The backend cannot be used (not installed, failed to start, wrong version); a sentence."""

    def __init__(self, message: str, code: str = "backend"):
        super().__init__(message)
        self.code = code


class RemoteConnector:
    """The remote backend of the preferences (URL + token)."""

    local = False

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token

    def poll(self) -> ServiceClient | None:
        if not self.token.strip():
            raise ConnectError(
                "Set the token of the remote backend in the add-on preferences (Remote Backend).", "unauthorized"
            )
        try:
            return ServiceClient(self.url, self.token.strip())
        except ServiceError as e:
            raise ConnectError(str(e), e.code) from None

    def describe_loss(self) -> str:
        return f"The connection to the remote backend at {self.url} was lost."

    def describe(self) -> str:
        return f"the remote backend at {self.url}"


class LocalConnector:
    """The backend this Blender runs: :meth:`poll` starts it when it is not running (or runs with
    other settings, or died), and returns a client once its handshake has arrived. ``action`` is
    the button a user clicks again after the backend died."""

    local = True

    #: Seconds a starting backend may take (Python start, torch import, the model load).
    START_TIMEOUT = 600.0

    def __init__(
        self,
        supervisor: sup.Supervisor,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        start_timeout: float = START_TIMEOUT,
        action: str = "Reconstruct from Image",
    ):
        self.supervisor = supervisor
        self.command = [str(c) for c in command]
        self.env = env
        self.start_timeout = start_timeout
        self.action = action
        self.started_here = False
        self._proc: sup.BackendProcess | None = None
        self._since = time.monotonic()

    def poll(self) -> ServiceClient | None:
        s = self.supervisor
        proc = s.process
        if self._proc is None:
            reuse = proc is not None and proc.alive and proc.error is None and proc.command == self.command
            if not reuse:
                try:
                    proc = s.start(self.command, env=self.env)
                except sup.SupervisorError as e:
                    raise ConnectError(str(e)) from None
                self.started_here = True
            self._proc = proc
        proc = self._proc
        proc.poll()
        s.touch()
        if proc.error is not None:
            code = "version_mismatch" if isinstance(proc.error, sup.VersionMismatch) else "backend"
            raise ConnectError(str(proc.error), code)
        if proc.handshake is not None and proc.alive:
            return ServiceClient(f"http://127.0.0.1:{proc.handshake.port}", proc.handshake.token)
        if not proc.alive and proc.handshake is not None:
            raise ConnectError(self.describe_loss(), "backend_died")
        if time.monotonic() - self._since > self.start_timeout:
            tail = [ln for ln in proc.stderr_tail(3) if ln.strip()]
            s.stop()
            raise ConnectError(
                f"The backend did not start within {self.start_timeout:.0f} s"
                + (f" (last message: {tail[-1][:200]})." if tail else "."),
                "timeout",
            )
        return None

    @property
    def process(self) -> sup.BackendProcess | None:
        return self._proc

    def describe_loss(self) -> str:
        proc = self._proc
        if proc is not None and not proc.alive:
            code = proc.returncode
            if code is not None and code < 0:
                why = f"it was ended by signal {-code}"
            else:
                errors = [
                    ln for ln in proc.stderr_tail(20) if ln.startswith(("ERROR", "CRITICAL", "Fatal")) or "Error:" in ln
                ]
                why = f"exit code {code}" + (f"; {errors[-1][:200]}" if errors else "")
            return (
                f"The backend stopped during the job ({why}). Nothing was imported; click {self.action} "
                "again to restart it."
            )
        return "The connection to the backend was lost."

    def describe(self) -> str:
        return "the local backend"


# --------------------------------------------------------------------------------------------------
# The task


class BackendTask:
    """One job on the backend, driven by :meth:`step` (never blocks).

    ``progress`` needs the attributes ``state``, ``text``, ``message``, ``error_code``, ``job_id``,
    ``device``, ``total``, ``seconds``, ``job_seconds``, ``results``, ``warnings`` and ``finished``.
    A subclass implements :meth:`_run` (on the reader thread: check the input, :meth:`_check_health`,
    submit, then :meth:`_follow` the events and download), :meth:`_started_text`,
    :meth:`_apply_job_event` (its job's own events) and :meth:`_finish` (on the main thread).
    """

    THREAD_NAME = "pixie-task"

    def __init__(self, connector, request, progress, *, clock: Callable[[], float] = time.monotonic):
        self.connector = connector
        self.request = request
        self.progress = progress
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._client: ServiceClient | None = None
        self._clock = clock
        self._t0 = clock()
        self._pending_error: tuple[str, str, float] | None = None

    # ------------------------------------------------------------------ main thread
    def step(self) -> bool:
        """Advance without blocking; True once finished (``progress.state`` says how)."""
        p = self.progress
        if p.finished:
            return True
        if self._thread is None:
            if self._cancel.is_set():
                self._end("cancelled", "Cancelled; nothing was imported.", "cancelled")
                return True
            try:
                client = self.connector.poll()
            except ConnectError as e:
                self._end("failed", str(e), e.code)
                return True
            if client is None:
                p.state, p.text = "starting", "Starting the backend…"
                return False
            self._client = client
            self._thread = threading.Thread(target=self._work, name=self.THREAD_NAME, daemon=True)
            self._thread.start()
        if getattr(self.connector, "local", False):
            with contextlib.suppress(Exception):
                self.connector.supervisor.touch()  # busy: the idle timeout must not stop it
        while self._pending_error is None:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            self._apply(kind, payload)
            if p.finished:
                return True
        if self._pending_error is not None:
            self._settle_error()
        return p.finished

    def cancel(self) -> None:
        """Ask the backend to stop the job (non-blocking)."""
        self._cancel.set()
        self.progress.text = "Cancelling…"

    def wait(self, timeout: float = 300.0, interval: float = 0.02):
        """Headless use: :meth:`step` in a loop until finished; returns ``progress``."""
        deadline = time.monotonic() + timeout
        while not self.step():
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError("the job did not finish in time")
            time.sleep(interval)
        return self.progress

    def _end(self, state: str, message: str, code: str = "") -> None:
        p = self.progress
        p.state, p.message, p.text, p.error_code = state, message, message, code
        p.seconds = self._clock() - self._t0

    def _apply(self, kind: str, payload: Any) -> None:
        p = self.progress
        if kind == "state":
            p.state, p.text = payload
        elif kind == "job":
            p.job_id = payload
        elif kind == "device":
            p.device = payload
        elif kind == "event":
            self._apply_event(payload)
        elif kind == "result":
            p.results.append(payload)
        elif kind == "warning":
            p.warnings.append(payload)
        elif kind == "end":
            self._finish(*payload)
        elif kind == "error":
            code, message = payload
            if code in ("connection_lost", "timeout", "unreachable") and getattr(self.connector, "local", False):
                # the local backend may have died: give its exit up to 2 s to be seen (later steps)
                self._pending_error = (code, message, self._clock() + 2.0)
                self._settle_error()
            else:
                if code == "connection_lost":
                    message = f"{self.connector.describe_loss()} {message}"
                self._end("failed", message, code)
        else:
            self._apply_other(kind, payload)

    def _apply_other(self, kind: str, payload: Any) -> None:
        """A subclass's own queue messages."""

    def _settle_error(self) -> None:
        """End with the pending error once the local backend's fate is known (never waits)."""
        code, message, deadline = self._pending_error
        proc = self.connector.process
        if proc is not None:
            proc.poll()
            if proc.alive and self._clock() < deadline:
                return
            if not proc.alive:
                code, message = "backend_died", self.connector.describe_loss()
        self._pending_error = None
        self._end("failed", message, code)

    def _apply_event(self, ev: dict) -> None:
        """One event of the job's stream (protocol v2): ``started`` and ``finished`` here, the rest
        in the subclass's :meth:`_apply_job_event`."""
        p = self.progress
        kind, d = ev.get("event"), ev.get("details") or {}
        if kind == "started":
            p.state = "running"
            p.total = ev.get("total") or p.total
            p.device = d.get("device", p.device)
            p.text = self._started_text()
        elif kind == "finished" and isinstance(ev.get("seconds"), (int, float)):
            p.job_seconds = float(ev["seconds"])
        else:
            self._apply_job_event(kind, ev, d)

    def _started_text(self) -> str:
        raise NotImplementedError

    def _apply_job_event(self, kind, ev: dict, details: dict) -> None:
        raise NotImplementedError

    def _finish(self, status: str, error: dict | None) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ reader thread
    def _put(self, kind: str, payload: Any = None) -> None:
        self._queue.put((kind, payload))

    def _work(self) -> None:
        try:
            self._run()
        except ServiceError as e:
            self._put("error", (e.code, str(e)))
        except OSError as e:
            self._put("error", ("io", f"Cannot write the results: {e.strerror or e}"))
        except Exception as e:  # noqa: BLE001 - never let the thread die silently
            self._put("error", ("internal", f"{type(e).__name__}: {e}"))

    def _run(self) -> None:
        raise NotImplementedError

    def _check_health(self, client: ServiceClient) -> dict:
        """Version, model files and model state of the backend; returns its ``limits``."""
        health = client.health()
        version = health.get("version")
        wanted = getattr(self.request, "addon_version", "")
        if wanted and version != wanted:
            raise ServiceError(
                f"The backend is version {version} but the add-on is version {wanted}. "
                + (
                    "Click Install Backend in the add-on preferences to install the matching backend."
                    if getattr(self.connector, "local", False)
                    else "Update pixie-backend on the remote machine to the add-on's version."
                ),
                "version_mismatch",
            )
        model = health.get("model") or {}
        self._put("device", str(model.get("device") or ""))
        if model.get("state") == "missing" and model.get("missing"):
            files = ", ".join(str(f) for f in model["missing"])
            raise ServiceError(
                f"The model files are missing: {files}. Set them up in Preferences > Add-ons > "
                "PIXIE > Set up model files.",
                "model_files",
            )
        if model.get("state") == "failed" and model.get("error"):
            raise ServiceError(str(model["error"].get("message")), "model_failed")
        if model.get("state") == "loading":
            self._put("state", ("waiting", "Loading the model (first use)…"))
        limits = health.get("limits")
        return limits if isinstance(limits, dict) else {}

    def _follow(self, client: ServiceClient, job_id: str, handle: Callable[[dict], None] | None = None) -> tuple:
        """Follow the job's events until ``finished`` (``handle(ev)`` on each first, then queued for
        the main thread); starts the canceller. Returns (status, error) of ``finished``."""
        self._put("job", job_id)
        self._put("state", ("waiting", "Waiting for the backend…"))
        canceller = threading.Thread(target=self._cancel_when_asked, args=(client, job_id), daemon=True)
        canceller.start()
        seen, status, error, retried = 0, None, None, False
        while status is None:
            try:
                for ev in self._events(client, job_id, seen):
                    seen += 1
                    if handle is not None:
                        handle(ev)
                    self._put("event", ev)
                    if ev["event"] == "finished":
                        status, error = ev.get("status"), ev.get("error")
            except (BadResponse, ServiceTimeout, Unreachable) as e:
                if retried or e.code not in ("connection_lost",) or getattr(self.connector, "local", False):
                    raise
                retried = True  # a remote connection that dropped once: follow the job again where it was
        return status, error

    @staticmethod
    def _events(client: ServiceClient, job_id: str, after: int) -> Iterator[dict]:
        return client.events(job_id, after=after)

    def _cancel_when_asked(self, client: ServiceClient, job_id: str) -> None:
        while not self._cancel.wait(0.1):
            if self.progress.finished:
                return
        with contextlib.suppress(ServiceError):
            client.cancel(job_id)

    def _fetch_packages(self, client: ServiceClient, job_id: str) -> None:
        """The model packages the job's results need: into the cache once per hash, linked into
        the results folder."""
        status = client.job(job_id)
        for pkg in status.get("packages") or []:
            sha = pkg.get("sha256") if isinstance(pkg, dict) else None
            if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
                raise BadResponse("The backend listed a model package without a valid content hash.")
            cached = package_cache_path(self.request.cache_dir, sha)
            if not cached.is_file():
                self._put("state", ("downloading", "Downloading the model package (once per model)…"))
                client.download_package(sha, cached)
            local = self.request.results_dir / f"smplx_package_{sha[:12]}.npz"
            if not (local.is_file() and local.stat().st_size == cached.stat().st_size):
                link_or_copy(cached, local)

    def _delete_job(self, client: ServiceClient, job_id: str) -> None:
        if not getattr(self.request, "keep_job", False):
            with contextlib.suppress(ServiceError):
                client.delete(job_id)
