"""Reconstruct from Image, the part without ``bpy``: connect to a backend, upload the photos, follow
the job's events, download its results and the model package. Standard library only.

:class:`ReconstructTask` is a :class:`~.task.BackendTask`: its :meth:`~ReconstructTask.step` never
blocks (the network work runs on one reader thread that fills a queue; ``step()``, called by the
modal operator on each timer tick or by headless code in a loop, drains it into a
:class:`ReconstructProgress`). The backend comes from a connector (``task.LocalConnector``,
``task.RemoteConnector``).

Results land in ``results_dir`` (``<name>.pixie.npz``, a ``<name>.pixie-source.json`` that records
the local photo, and a link or copy of the model package, so the folder re-imports on its own);
the package is downloaded once per content hash into ``<cache_dir>/packages/<sha256>.npz``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import task as _task
from .service_client import BadResponse, ServiceClient, ServiceError
from .task import (  # noqa: F401 - re-exported: the operators and tests import them from here
    BackendTask,
    ConnectError,
    LocalConnector,
    RemoteConnector,
    file_sha256,
    link_or_copy,
    package_cache_path,
    read_source_record,
    safe_stem,
    write_json_atomic,
)

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


def allocate_names(images: Sequence[Path], shas: Sequence[str], results_dir: Path) -> list[str]:
    """A result name per image: its file stem, unless the results folder already holds that name
    for another photo (its ``.pixie-source.json`` records another content hash) or another image of
    this run has it; then ``<stem>_2``, ``<stem>_3``, ... The same photo again gets its old name
    (and its result is replaced)."""
    return _task.allocate_names([Path(p).stem for p in images], shas, results_dir, RESULT_SUFFIX, SOURCE_SUFFIX)


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


class ReconstructTask(BackendTask):
    """One click: connect, upload, follow, download. Drive it with :meth:`step` (never blocks)."""

    THREAD_NAME = "pixie-reconstruct"

    def __init__(self, connector, request: ReconstructRequest, *, clock: Callable[[], float] = time.monotonic):
        super().__init__(connector, request, ReconstructProgress(total=len(request.images)), clock=clock)
        self._names: dict[str, Path] = {}

    def wait(self, timeout: float = 300.0, interval: float = 0.02) -> ReconstructProgress:
        """Headless use: :meth:`step` in a loop until finished."""
        return super().wait(timeout, interval)

    def _started_text(self) -> str:
        return f"Image 1 of {self.progress.total}: reconstructing…"

    def _apply_job_event(self, kind, ev: dict, d: dict) -> None:
        p = self.progress
        if kind == "item_done":
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
        self._fetched = 0

        def handle(ev: dict) -> None:
            if ev["event"] == "item_done":
                self._fetch_item(client, job_id, ev, images, names, shas)

        status, error = self._follow(client, job_id, handle)
        if self._fetched:
            self._fetch_packages(client, job_id)
        self._delete_job(client, job_id)
        self._put("end", (status, error))

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
