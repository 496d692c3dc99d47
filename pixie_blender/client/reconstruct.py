"""Reconstruct from Image, the part without ``bpy``: connect to a backend, upload the photos, follow
the job's events, download its results and the model package. Standard library only.

:class:`ReconstructTask` is a state machine whose :meth:`~ReconstructTask.step` never blocks: the
network work runs on one reader thread that fills a queue, and ``step()`` (called by the modal
operator on each timer tick, or by headless code in a loop) drains it into a
:class:`ReconstructProgress`. Where the backend comes from is a connector:

* :class:`LocalConnector`: the backend this Blender starts through the
  :class:`~.supervisor.Supervisor` (started on demand, reused while warm, restarted when it died);
* :class:`RemoteConnector`: the "Remote backend" URL and token of the preferences.

Results land in ``results_dir`` (``<name>.pixie.npz``, a ``<name>.pixie-source.json`` that records
the local photo, and a link or copy of the model package, so the folder re-imports on its own);
the package is downloaded once per content hash into ``<cache_dir>/packages/<sha256>.npz``.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import supervisor as sup
from .service_client import BadResponse, ServiceClient, ServiceError, ServiceTimeout, Unreachable

RESULT_SUFFIX = ".pixie.npz"
SOURCE_SUFFIX = ".pixie-source.json"
#: Image files the backend reads (``pixie_backend.jobs.sources.IMAGE_EXTENSIONS``).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".ppm",
    ".pgm",
    ".pnm",
)
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


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


def allocate_names(images: Sequence[Path], shas: Sequence[str], results_dir: Path) -> list[str]:
    """A result name per image: its file stem, unless the results folder already holds that name
    for another photo (its ``.pixie-source.json`` records another content hash) or another image of
    this run has it; then ``<stem>_2``, ``<stem>_3``, ... The same photo again gets its old name
    (and its result is replaced)."""
    taken: set[str] = set()
    names = []
    for image, sha in zip(images, shas, strict=True):
        base = safe_stem(Path(image).stem)
        n, name = 1, base
        while True:
            if name not in taken:
                record = read_source_record(results_dir / f"{name}{SOURCE_SUFFIX}")
                exists = (results_dir / f"{name}{RESULT_SUFFIX}").exists()
                if not exists or (record is not None and record.get("sha256") == sha):
                    break
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names.append(name)
    return names


def read_source_record(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


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
    other settings, or died), and returns a client once its handshake has arrived."""

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
    ):
        self.supervisor = supervisor
        self.command = [str(c) for c in command]
        self.env = env
        self.start_timeout = start_timeout
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
                f"The backend stopped during the job ({why}). Nothing was imported; click Reconstruct from "
                "Image again to restart it."
            )
        return "The connection to the backend was lost."

    def describe(self) -> str:
        return "the local backend"


# --------------------------------------------------------------------------------------------------
# The task


@dataclass
class ResultFile:
    name: str
    path: Path
    image: Path
    persons: int


@dataclass
class ReconstructProgress:
    """What the panel and the status bar show; updated by :meth:`ReconstructTask.step`."""

    state: str = "connecting"  #: connecting | starting | uploading | waiting | running | done | failed | cancelled
    total: int = 0
    done: int = 0
    item: str = ""
    persons: int = 0
    text: str = "Connecting to the backend…"
    results: list[ResultFile] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  #: (image, code, message)
    warnings: list[str] = field(default_factory=list)
    message: str = ""  #: the final sentence
    error_code: str = ""
    job_id: str | None = None
    device: str = ""
    seconds: float = 0.0  #: the whole task (connect, upload, job, downloads)
    job_seconds: float | None = None  #: the job on the backend (its ``finished.seconds``)
    timings: dict[str, float] = field(default_factory=dict)  #: per-stage seconds summed over the images

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class ReconstructRequest:
    images: tuple[Path, ...]
    results_dir: Path
    cache_dir: Path
    detector: str = "auto"
    addon_version: str = ""
    keep_job: bool = False  #: leave the job's files on the server (default: delete them once fetched)


class ReconstructTask:
    """One click: connect, upload, follow, download. Drive it with :meth:`step` (never blocks)."""

    def __init__(self, connector, request: ReconstructRequest, *, clock: Callable[[], float] = time.monotonic):
        self.connector = connector
        self.request = request
        self.progress = ReconstructProgress(total=len(request.images))
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._client: ServiceClient | None = None
        self._clock = clock
        self._t0 = clock()
        self._names: dict[str, Path] = {}
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
            self._thread = threading.Thread(target=self._work, name="pixie-reconstruct", daemon=True)
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
        """Ask the backend to stop the job (non-blocking); finished images are kept in the results folder."""
        self._cancel.set()
        self.progress.text = "Cancelling…"

    def wait(self, timeout: float = 300.0, interval: float = 0.02) -> ReconstructProgress:
        """Headless use: :meth:`step` in a loop until finished."""
        deadline = time.monotonic() + timeout
        while not self.step():
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError("the reconstruction did not finish in time")
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
        p = self.progress
        kind, d = ev.get("event"), ev.get("details") or {}
        if kind == "started":
            p.state = "running"
            p.total = ev.get("total") or p.total
            p.device = d.get("device", p.device)
            p.text = f"Image 1 of {p.total}: reconstructing…"
        elif kind == "item_done":
            for stage, sec in (d.get("timings") or {}).items():
                if isinstance(sec, (int, float)):
                    p.timings[stage] = p.timings.get(stage, 0.0) + float(sec)
            p.done += 1
            p.item = str(d.get("source") or ev.get("item") or "")
            p.persons += int(d.get("persons") or 0)
            image = self._names.get(str(ev.get("item")))
            label = image.name if image is not None else ev.get("item")
            p.text = (
                f"Image {min(p.done + 1, p.total)} of {p.total}: {p.persons} person"
                f"{'s' if p.persons != 1 else ''} found so far (last: {label})"
            )
        elif kind == "item_error":
            p.done += 1
            image = self._names.get(str(ev.get("item")))
            label = image.name if image is not None else str(ev.get("item"))
            message = str(ev.get("message") or "")
            message = re.sub(r"<[^<>]*>", label, message, count=1)
            p.errors.append((label, str(ev.get("code") or ""), message))
            p.text = f"Image {min(p.done + 1, p.total)} of {p.total}: {label} failed ({ev.get('code')})"
        elif kind == "message" and ev.get("level") == "warning":
            p.warnings.append(str(ev.get("text") or ""))
        elif kind == "finished" and isinstance(ev.get("seconds"), (int, float)):
            p.job_seconds = float(ev["seconds"])

    def _finish(self, status: str, error: dict | None) -> None:
        p = self.progress
        n_ok = len(p.results)
        if status == "cancelled":
            kept = f"; {n_ok} finished image(s) are in {self.request.results_dir}" if n_ok else ""
            self._end("cancelled", f"Cancelled; nothing was imported{kept}.", "cancelled")
            return
        if n_ok == 0:
            if p.errors:
                msgs = [m for _, _, m in p.errors]
                codes = {c for _, c, _ in p.errors}
                if codes == {"no_person"}:
                    names = ", ".join(img for img, _, _ in p.errors)
                    self._end("failed", f"No person found in {names}; nothing was imported.", "no_person")
                else:
                    self._end(
                        "failed",
                        (msgs[0] if len(msgs) == 1 else f"{len(msgs)} images failed: {msgs[0]} …")
                        + " Nothing was imported.",
                        p.errors[0][1],
                    )
            else:
                err = error or {}
                self._end(
                    "failed",
                    str(err.get("message") or "The job failed.") + " Nothing was imported.",
                    str(err.get("code") or "failed"),
                )
            return
        self._end(
            "done",
            f"Reconstructed {p.persons} person{'s' if p.persons != 1 else ''} from {n_ok} "
            f"image{'s' if n_ok != 1 else ''}" + (f"; {len(p.errors)} failed" if p.errors else ""),
        )

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

    def _check_health(self, client: ServiceClient) -> dict:
        health = client.health()
        version = health.get("version")
        if self.request.addon_version and version != self.request.addon_version:
            raise ServiceError(
                f"The backend is version {version} but the add-on is version {self.request.addon_version}. "
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

    def _run(self) -> None:
        req, client = self.request, self._client
        images = [Path(p) for p in req.images]
        for img in images:
            if not img.is_file():
                raise ServiceError(f"{img}: no such file.", "input_missing")
            if img.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ServiceError(
                    f"{img.name}: {img.suffix or 'this'} files are not supported; use JPEG, PNG, "
                    "BMP, TIFF, WebP or GIF.",
                    "unsupported_format",
                )
        limits = self._check_health(client)
        sizes = [p.stat().st_size for p in images]
        max_bytes, max_images = limits.get("max_upload_bytes"), limits.get("max_images")
        if isinstance(max_images, int) and len(images) > max_images:
            raise ServiceError(
                f"{len(images)} images are more than the backend takes at once ({max_images}); "
                "reconstruct them in smaller groups.",
                "too_many_images",
            )
        if isinstance(max_bytes, int) and sum(sizes) + 4096 * len(images) > max_bytes:
            raise ServiceError(
                f"The photos ({sum(sizes) / 1e6:.1f} MB) are more than the backend accepts in one "
                f"request ({max_bytes / 1e6:.1f} MB); reconstruct them in smaller groups.",
                "upload_too_large",
            )
        if self._cancel.is_set():
            self._put("end", ("cancelled", None))
            return
        shas = [file_sha256(p) for p in images]
        req.results_dir.mkdir(parents=True, exist_ok=True)
        names = allocate_names(images, shas, req.results_dir)
        self._names = dict(zip(names, images, strict=True))
        self._put("state", ("uploading", f"Uploading {len(images)} image{'s' if len(images) != 1 else ''}…"))
        uploads = [(f"{name}{img.suffix.lower()}", img.read_bytes()) for name, img in zip(names, images, strict=True)]
        job = client.submit_reconstruct(uploads, detector=req.detector)
        job_id = job["id"]
        self._put("job", job_id)
        self._put("state", ("waiting", "Waiting for the backend…"))
        canceller = threading.Thread(target=self._cancel_when_asked, args=(client, job_id), daemon=True)
        canceller.start()
        seen, status, error, retried = 0, None, None, False
        self._fetched = 0
        while status is None:
            try:
                for ev in client.events(job_id, after=seen):
                    seen += 1
                    if ev["event"] == "item_done":
                        self._fetch_item(client, job_id, ev, images, names, shas)
                    self._put("event", ev)
                    if ev["event"] == "finished":
                        status, error = ev.get("status"), ev.get("error")
            except (BadResponse, ServiceTimeout, Unreachable) as e:
                if retried or e.code not in ("connection_lost",) or getattr(self.connector, "local", False):
                    raise
                retried = True  # a remote connection that dropped once: follow the job again where it was
        if self._fetched:
            self._fetch_packages(client, job_id)
        if not req.keep_job:
            with contextlib.suppress(ServiceError):
                client.delete(job_id)
        self._put("end", (status, error))

    def _cancel_when_asked(self, client: ServiceClient, job_id: str) -> None:
        while not self._cancel.wait(0.1):
            if self.progress.finished:
                return
        with contextlib.suppress(ServiceError):
            client.cancel(job_id)

    def _fetch_item(self, client: ServiceClient, job_id: str, ev: dict, images, names, shas) -> None:
        item = str(ev.get("item"))
        if item not in names:
            return
        index = names.index(item)
        files = [f for f in (ev.get("details") or {}).get("files") or [] if isinstance(f, str)]
        result_name = f"{item}{RESULT_SUFFIX}"
        if result_name not in files:
            raise BadResponse(f"The backend finished {item} but lists no result file for it.")
        dest = self.request.results_dir / result_name
        client.download_file(job_id, result_name, dest)
        write_json_atomic(
            self.request.results_dir / f"{item}{SOURCE_SUFFIX}",
            {
                "image": str(images[index].resolve()),
                "sha256": shas[index],
                "job": job_id,
                "backend": client.base_url,
                "time": time.time(),
            },
        )
        self._fetched += 1
        self._put("result", ResultFile(item, dest, images[index], int((ev.get("details") or {}).get("persons") or 0)))

    def _fetch_packages(self, client: ServiceClient, job_id: str) -> None:
        status = client.job(job_id)
        for pkg in status.get("packages") or []:
            sha = pkg.get("sha256") if isinstance(pkg, dict) else None
            if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise BadResponse("The backend listed a model package without a valid content hash.")
            cached = package_cache_path(self.request.cache_dir, sha)
            if not cached.is_file():
                self._put("state", ("downloading", "Downloading the model package (once per model)…"))
                client.download_package(sha, cached)
            local = self.request.results_dir / f"smplx_package_{sha[:12]}.npz"
            if not (local.is_file() and local.stat().st_size == cached.stat().st_size):
                link_or_copy(cached, local)
