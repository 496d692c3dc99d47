"""Import Image Sequence, the part without ``bpy``: a video file or a folder of frames in, the
sequence result (``<name>.pixie-seq.npz``) and its model package out, through the backend's
``POST /v1/jobs/sequence``. Standard library only.

:class:`SequenceTask` is a :class:`~.task.BackendTask` (local or remote backend, one reader thread,
:meth:`~SequenceTask.step` never blocks): it streams the video, or the frames in natural order
(``f2`` before ``f10``), from disk, follows the job's events into a :class:`SequenceProgress`
(frame k of n, frames/s, time left, persons tracked), and when the job has finished downloads the
sequence file into ``results_dir`` with a ``<name>.pixie-seq-source.json`` that records the local
video or frames (so a re-import finds them for the camera background, and the same clip again
reuses its name) and links the model package there.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..io.constants import SEQUENCE_SUFFIX, SOURCE_RECORD_SUFFIX
from . import task as _task
from .reconstruct import IMAGE_EXTENSIONS
from .service_client import BadResponse, ServiceClient, ServiceError, UploadCancelled
from .task import BackendTask, file_sha256, write_json_atomic

#: Video files offered in the file browser (``pixie_backend.jobs.frames.VIDEO_EXTENSIONS``); any
#: other file that is not an image is sent as a video too, and the backend says if it is none.
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ts",
    ".mts",
    ".m2ts",
    ".3gp",
    ".ogv",
    ".mjpeg",
    ".mjpg",
)
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key: digit runs compare as numbers (``f2`` < ``f10``), the rest case-insensitively
    (``pixie_backend.jobs.frames.natural_key``)."""
    return tuple((0, int(p), p) if p.isdigit() else (1, p.casefold(), p) for p in _DIGITS.split(name))


@dataclass(frozen=True)
class ClipInput:
    """What to upload: ``kind`` ``video`` (one file) or ``frames`` (image files in frame order)."""

    kind: str
    name: str  #: the clip's name (the video's stem, the folder's name)
    files: tuple[Path, ...]
    ignored: int = 0  #: files of the folder that are not images

    @property
    def label(self) -> str:
        return self.files[0].name if self.kind == "video" else f"{self.files[0].parent.name}/"


def clip_input(source: Path) -> ClipInput:
    """A video file, a folder of frames, or one frame of such a folder (then the whole folder).

    Raises:
        ServiceError: ``input_missing`` or ``no_frames``, with a sentence.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
        source = source.parent
    if source.is_dir():
        files = [p for p in source.iterdir() if p.is_file()]
        frames = sorted((p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))
        if not frames:
            raise ServiceError(
                f"{source}: no frames to read (the folder holds no JPEG, PNG, BMP, TIFF or WebP images).", "no_frames"
            )
        return ClipInput("frames", source.name or "frames", tuple(frames), len(files) - len(frames))
    if not source.is_file():
        raise ServiceError(f"{source}: no such file or folder.", "input_missing")
    if source.stat().st_size == 0:
        raise ServiceError(f"{source.name}: the file is empty.", "not_a_video")
    return ClipInput("video", source.stem, (source,))


def clip_sha256(clip: ClipInput) -> str:
    """The clip's content hash: the video file's, or over the frames' names and contents in order."""
    if clip.kind == "video":
        return file_sha256(clip.files[0])
    h = hashlib.sha256()
    for p in clip.files:
        h.update(p.name.encode("utf-8") + b"\0" + bytes.fromhex(file_sha256(p)))
    return h.hexdigest()


def allocate_name(clip: ClipInput, sha: str, results_dir: Path) -> str:
    """The clip's result name: its name, or ``<name>_2``, ... when the results folder holds that
    name for another clip (its source record has another hash)."""
    return _task.allocate_names([clip.name], [sha], results_dir, SEQUENCE_SUFFIX, SOURCE_RECORD_SUFFIX)[0]


def _size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{max(size, 1) / 1e3:.0f} kB"


def _clock_text(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class SequenceResult:
    name: str
    path: Path  #: the sequence file in the results folder
    amass: list[Path]
    tracks: int


@dataclass
class SequenceProgress:
    """What the panel and the status bar show; updated by :meth:`SequenceTask.step`."""

    #: connecting | starting | hashing | uploading | waiting | running | writing | downloading | done | failed
    #: | cancelled
    state: str = "connecting"
    total: int = 0  #: frames (a video's is the container's count until the job has read it)
    done: int = 0
    persons: int = 0  #: persons tracked in the last frame
    tracks: set[int] = field(default_factory=set)  #: track ids seen so far
    frames_per_s: float | None = None
    eta_s: float | None = None
    sent: int = 0  #: bytes uploaded
    upload: int = 0  #: bytes to upload
    text: str = "Connecting to the backend…"
    results: list[SequenceResult] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  #: (frame, code, message)
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    error_code: str = ""
    job_id: str | None = None
    device: str = ""
    seconds: float = 0.0  #: the whole task (connect, upload, job, downloads)
    job_seconds: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def result(self) -> SequenceResult | None:
        return self.results[0] if self.results else None

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        if self.state == "uploading":
            return 0.0
        return min(self.done / self.total, 1.0) if self.total else 0.0


@dataclass(frozen=True)
class SequenceRequest:
    source: Path  #: a video file, a folder of frames (or one frame of it)
    results_dir: Path
    cache_dir: Path
    detector: str = "auto"
    fps: float = 0.0  #: frames' rate (0: 30); for a video only when it states none
    proposals: bool = True
    addon_version: str = ""
    keep_job: bool = False  #: leave the job's files on the server (default: delete them once fetched)


class SequenceTask(BackendTask):
    """One Import Image Sequence run: connect, upload, follow, download. Drive it with
    :meth:`step` (never blocks)."""

    THREAD_NAME = "pixie-sequence"

    def __init__(self, connector, request: SequenceRequest, *, clock: Callable[[], float] = time.monotonic):
        super().__init__(connector, request, SequenceProgress(), clock=clock)
        self.clip: ClipInput | None = None

    # ------------------------------------------------------------------ main thread
    def _apply_other(self, kind: str, payload) -> None:
        p = self.progress
        if kind == "clip":
            self.clip = payload
            if payload.kind == "frames":
                p.total = len(payload.files)
        elif kind == "upload":
            p.sent, p.upload = payload
            if p.state == "uploading":
                p.text = f"Uploading {self._label()}: {100 * p.sent / max(p.upload, 1):.0f} % of {_size_text(p.upload)}"

    def _label(self) -> str:
        return self.clip.label if self.clip is not None else Path(self.request.source).name

    def _frame_label(self, index) -> str:
        clip = self.clip
        if clip is not None and clip.kind == "frames" and isinstance(index, int) and 0 <= index < len(clip.files):
            return clip.files[index].name
        return f"frame {index}"

    def _running_text(self) -> str:
        p = self.progress
        k = min(p.done + 1, p.total) if p.total else p.done + 1
        if p.done == 0:
            return f"Frame 1 of {p.total}: reconstructing…" if p.total else "Frame 1: reconstructing…"
        parts = [f"{p.persons} person{'s' if p.persons != 1 else ''}"]
        if p.frames_per_s:
            parts.append(f"{p.frames_per_s:.1f} frames/s")
        if p.eta_s is not None and p.frames_per_s:
            parts.append(f"{_clock_text(p.eta_s)} left")
        return (f"Frame {k} of {p.total}: " if p.total else f"Frame {k}: ") + ", ".join(parts)

    def _started_text(self) -> str:
        return self._running_text()

    def _apply_job_event(self, kind, ev: dict, d: dict) -> None:
        p = self.progress
        if kind == "item_done":
            tracks = [t for t in d.get("tracks") or [] if isinstance(t, int)]
            p.persons = len(tracks)
            p.tracks.update(tracks)
        elif kind == "item_error":
            label = self._frame_label(ev.get("index"))
            message = str(ev.get("message") or "")
            p.errors.append((label, str(ev.get("code") or ""), message))
        elif kind == "progress" and ev.get("stage") == "frames":
            p.done = int(ev.get("done") or 0)
            if isinstance(ev.get("total"), int):
                p.total = ev["total"]
            rate, eta = d.get("frames_per_s"), d.get("eta_s")
            p.frames_per_s = float(rate) if isinstance(rate, (int, float)) else None
            p.eta_s = float(eta) if isinstance(eta, (int, float)) else None
            p.text = self._running_text()
        elif kind == "progress" and ev.get("stage") == "sequence":
            p.state, p.text = "writing", "Writing the sequence file…"
        elif kind == "message" and ev.get("level") == "warning":
            text = str(ev.get("text") or "")
            if "SYNTHETIC" not in text:
                p.warnings.append(text)

    def _finish(self, status: str, error: dict | None) -> None:
        p = self.progress
        label = self._label()
        if status == "cancelled":
            self._end("cancelled", "Cancelled; nothing was imported.", "cancelled")
            return
        result = p.result
        if result is not None:
            frames = p.total or p.done
            failed = f"; {len(p.errors)} frame{'s' if len(p.errors) != 1 else ''} failed" if p.errors else ""
            self._end(
                "done",
                f"Tracked {result.tracks} person{'s' if result.tracks != 1 else ''} over {frames} frame"
                f"{'s' if frames != 1 else ''} of {label}{failed}",
            )
            return
        err = error or {}
        code = str(err.get("code") or "failed")
        if code == "no_person":
            message = f"No person was found in any frame of {label}; nothing was imported."
        elif code == "all_failed" and p.errors:
            first = p.errors[0]
            message = f"No frame of {label} could be reconstructed ({first[0]}: {first[2]}). Nothing was imported."
        else:
            message = str(err.get("message") or "The job failed.").rstrip(".") + ". Nothing was imported."
            message = message[:1].upper() + message[1:]
        self._end("failed", message, code)

    # ------------------------------------------------------------------ reader thread
    def _run(self) -> None:
        req, client = self.request, self._client
        clip = clip_input(Path(req.source))
        self._put("clip", clip)
        limits = self._check_health(client)
        size = sum(p.stat().st_size for p in clip.files)
        max_bytes, max_frames = limits.get("max_video_bytes"), limits.get("max_frames")
        overhead = 300 * len(clip.files) + 4096
        if isinstance(max_bytes, int) and size + overhead > max_bytes:
            what, verb = (
                (f"The video {clip.label}", "is") if clip.kind == "video" else (f"The frames of {clip.label}", "are")
            )
            raise ServiceError(
                f"{what} ({size / 1e6:.1f} MB) {verb} more than the backend accepts ({max_bytes / 1e6:.1f} MB); "
                "shorten the clip, or raise the backend's --max-video-mb.",
                "upload_too_large",
            )
        if isinstance(max_frames, int) and clip.kind == "frames" and len(clip.files) > max_frames:
            raise ServiceError(
                f"{clip.label} holds {len(clip.files)} frames, more than the backend takes at once ({max_frames}); "
                "split the sequence.",
                "too_many_frames",
            )
        if self._cancel.is_set():
            self._put("end", ("cancelled", None))
            return
        self._put("state", ("hashing", f"Reading {clip.label}…"))
        sha = clip_sha256(clip)
        req.results_dir.mkdir(parents=True, exist_ok=True)
        name = allocate_name(clip, sha, req.results_dir)
        options = [("name", name), ("detector", req.detector), ("proposals", "true" if req.proposals else "false")]
        if req.fps > 0:
            options.append(("fps", repr(float(req.fps))))
        self._put("state", ("uploading", f"Uploading {clip.label}…"))
        last = [0.0]

        def on_progress(sent: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1 or sent == total:
                last[0] = now
                self._put("upload", (sent, total))

        try:
            job = client.submit_sequence(
                video=clip.files[0] if clip.kind == "video" else None,
                frames=clip.files if clip.kind == "frames" else (),
                options=options,
                on_progress=on_progress,
                cancelled=self._cancel.is_set,
            )
        except UploadCancelled:
            self._put("end", ("cancelled", None))
            return
        job_id = job["id"]
        fetched: list[SequenceResult] = []

        def handle(ev: dict) -> None:
            if ev["event"] == "finished" and ev.get("status") in ("ok", "partial"):
                fetched.append(self._fetch_result(client, job_id, ev, clip, name, sha))

        status, error = self._follow(client, job_id, handle)
        if fetched:
            self._fetch_packages(client, job_id)
            self._put("result", fetched[0])
        self._delete_job(client, job_id)
        self._put("end", (status, error))

    def _fetch_result(
        self, client: ServiceClient, job_id: str, ev: dict, clip: ClipInput, name: str, sha: str
    ) -> SequenceResult:
        d = ev.get("details") or {}
        files = [f for f in d.get("files") or [] if isinstance(f, str) and "/" not in f and not f.startswith(".")]
        seq = [f for f in files if f.endswith(SEQUENCE_SUFFIX)]
        if not seq:
            raise BadResponse("The backend finished the sequence but lists no sequence file.")
        self._put("state", ("downloading", "Downloading the sequence file…"))
        results = self.request.results_dir
        dest = results / f"{name}{SEQUENCE_SUFFIX}"
        client.download_file(job_id, seq[0], dest)
        amass = []
        for f in files:
            if f.endswith(".amass.npz"):
                amass.append(client.download_file(job_id, f, results / PurePosixPath(f).name))
        record = {"sha256": sha, "job": job_id, "backend": client.base_url, "time": time.time()}
        if clip.kind == "video":
            record["video"] = str(clip.files[0].resolve())
        else:
            record["frames"] = [str(p.resolve()) for p in clip.files]
        write_json_atomic(results / f"{name}{SOURCE_RECORD_SUFFIX}", record)
        return SequenceResult(name, dest, amass, int(d.get("tracks") or 0))
