"""What a sequence job reads: the frames of a clip, in order, one at a time.

* **A folder or a glob of image files**, in *natural* order (``frame_2`` before ``frame_10``;
  digits compare as numbers). Files in an image format this backend cannot read are frames with an
  error; other files (text, archives, ...) are left out and counted. Timestamps are
  ``position / fps`` (``fps`` given, default 30).
* **A video file**, decoded with OpenCV's FFmpeg backend (``opencv-python-headless``, already a
  dependency; its wheels carry FFmpeg on Linux, Windows and macOS). Frames come in presentation
  order with their presentation timestamps (``CAP_PROP_POS_MSEC``); rotation metadata is applied.
  The nominal rate is the container's (``--fps`` only when the container has none). FFmpeg conceals
  a damaged frame rather than failing it, so a video's frames never fail to decode one by one; a
  video cut short ends at its last readable frame.

:func:`open_clip` checks the input and returns a :class:`ClipSource`; its :meth:`~ClipSource.frames`
yields :class:`DecodedFrame` objects (``position`` 0, 1, 2, ... with the source frame number and
time). Nothing here raises for one bad frame: the frame carries its ``problem``.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..preprocess.image_io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image_bytes
from .sources import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS, safe_name

log = logging.getLogger(__name__)

#: File name endings tried as videos (anything else that is not an image is tried too).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                                     ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mjpeg", ".mjpg")
DEFAULT_FPS = 30.0


class ClipError(ValueError):
    """The input is not a usable clip; the message is one sentence for the user. ``code``:
    ``input_missing``, ``no_frames``, ``not_a_video`` or ``usage``."""

    def __init__(self, message: str, code: str = "no_frames"):
        super().__init__(message)
        self.code = code


@dataclass
class DecodedFrame:
    """One frame of a clip, as the reader delivers it.

    Attributes:
        position: 0, 1, 2, ... in the clip.
        frame_index: the source frame number (video: decoded frame number; frames: position in
            the sorted file list).
        timestamp: seconds.
        label: what messages call it (``clip.mp4#12`` or the file path).
        content_sha256: identifies the frame's content (file bytes; for a video, the video file's
            hash and the frame number).
        pixels: (H, W, 3) uint8 RGB (or float32 in [0, 1] for 16-bit files); None while not loaded
            (see :meth:`load`) or when ``problem`` is set.
        problem: ``(code, message)`` when the frame cannot be used.
        decode_s: seconds spent reading and decoding it.
    """

    position: int
    frame_index: int
    timestamp: float
    label: str
    content_sha256: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)
    problem: tuple[str, str] | None = None
    decode_s: float = 0.0
    path: Path | None = None
    _loader: Callable[[], np.ndarray] | None = field(default=None, repr=False)

    @property
    def item(self) -> str:
        """The frame's item name in the job's ledger and events."""
        return frame_item(self.frame_index)

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) once loaded."""
        return None if self.pixels is None else (int(self.pixels.shape[1]), int(self.pixels.shape[0]))

    def load(self) -> np.ndarray:
        """The pixels, decoding now if they were left for later (raises ``ImageLoadError``)."""
        if self.pixels is None:
            if self._loader is None:
                raise ImageLoadError(f"{self.label}: the frame has no pixels ({self.problem})")
            t0 = time.perf_counter()
            self.pixels = self._loader()
            self.decode_s += time.perf_counter() - t0
        return self.pixels

    def release(self) -> None:
        """Drop the pixels (a frame that is done keeps no memory; a file can be decoded again)."""
        self.pixels = None


def frame_item(frame_index: int) -> str:
    return f"frame_{int(frame_index):06d}"


class ClipSource:
    """A clip: ``kind`` (``video`` or ``frames``), ``name``, ``path``, nominal ``fps`` and, as far as
    known before decoding, the number of frames (``expected_frames``, None when unknown)."""

    kind: str = ""
    name: str = ""
    path: Path | None = None
    fps: float = DEFAULT_FPS
    expected_frames: int | None = None
    frame_paths: tuple[Path, ...] | None = None
    sha256: str | None = None
    notes: tuple[str, ...] = ()  #: sentences about what was left out or assumed

    def frames(self, lazy: Callable[[int, str], bool] | None = None) -> Iterator[DecodedFrame]:
        """The frames in order.

        Args:
            lazy: ``lazy(position, content_sha256)`` True leaves a frame's pixels undecoded where
                that is cheaper (files: decoded on :meth:`DecodedFrame.load`); the job uses it for
                frames an earlier run completed.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": str(self.path) if self.path else None,
                "fps": self.fps, "frames": self.expected_frames}


# ----------------------------------------------------------------------------------------------
# frame files

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str | os.PathLike) -> tuple:
    """Sort key: digit runs compare as numbers (``f2`` < ``f10``), the rest case-insensitively."""
    parts = _DIGITS.split(str(path))
    return tuple((0, int(p), p) if p.isdigit() else (1, p.casefold(), p) for p in parts)


class FrameFiles(ClipSource):
    """Image files as the frames of a clip, in the given order."""

    kind = "frames"

    def __init__(self, paths: list[Path], fps: float = DEFAULT_FPS, name: str | None = None,
                 folder: Path | None = None, problems: dict[int, tuple[str, str]] | None = None,
                 notes: tuple[str, ...] = (), max_pixels: int = DEFAULT_MAX_PIXELS):
        if not paths:
            raise ClipError("no frames to read", "no_frames")
        if not fps > 0 or fps == float("inf"):
            raise ClipError("--fps must be a number more than 0", "usage")
        self.frame_paths = tuple(paths)
        self.path = folder or paths[0].parent
        self.name = safe_name(name or self.path.name or "frames")
        self.fps = float(fps)
        self.expected_frames = len(paths)
        self.problems = dict(problems or {})
        self.notes = tuple(notes)
        self.max_pixels = max_pixels

    def frames(self, lazy=None) -> Iterator[DecodedFrame]:
        for k, p in enumerate(self.frame_paths):
            frame = DecodedFrame(k, k, k / self.fps, str(p), path=p)
            if k in self.problems:
                frame.problem = self.problems[k]
                yield frame
                continue
            t0 = time.perf_counter()
            try:
                data = p.read_bytes()
            except OSError as e:
                frame.problem = ("unreadable", f"{p}: cannot read the file ({e.strerror or e})")
                yield frame
                continue
            frame.content_sha256 = hashlib.sha256(data).hexdigest()
            if lazy is not None and lazy(k, frame.content_sha256):
                frame._loader = lambda p=p: self._decode(p, p.read_bytes())
                frame.decode_s = time.perf_counter() - t0
                del data
                yield frame
                continue
            try:
                frame.pixels = self._decode(p, data)
            except ImageLoadError as e:
                frame.problem = (e.code, str(e))
            frame.decode_s = time.perf_counter() - t0
            yield frame

    def _decode(self, path: Path, data: bytes) -> np.ndarray:
        if not data:
            raise ImageLoadError(f"{path}: the file is empty (0 bytes)", "empty")
        return load_image_bytes(data, str(path), self.max_pixels).pixels


def frame_files(raw: str, fps: float = DEFAULT_FPS, name: str | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameFiles:
    """The image files of a folder or glob pattern, in natural order.

    Raises:
        ClipError: nothing matched, or no image file among the matches.
    """
    p = Path(raw).expanduser()
    if p.is_dir():
        candidates = [q for q in p.iterdir() if q.is_file()]
        folder = p
        where = f"the folder {raw}"
    else:
        candidates = [Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file()]
        folder = None
        where = f"the pattern {raw}"
        if not candidates:
            raise ClipError(f"{raw}: the pattern matched no files", "input_missing")
    ignored = 0
    chosen: list[Path] = []
    problems: dict[int, tuple[str, str]] = {}
    for q in sorted(candidates, key=natural_key):
        ext = q.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            chosen.append(q)
        elif ext in UNSUPPORTED_IMAGE_EXTENSIONS:
            problems[len(chosen)] = ("unsupported_format", f"{q}: {ext} images are not supported; "
                                                            "convert the frames to PNG or JPEG")
            chosen.append(q)
        else:
            ignored += 1
    if not chosen or len(problems) == len(chosen):
        raise ClipError(f"{where} holds no image files to read as frames", "no_frames")
    if folder is None:
        parents = {q.parent for q in chosen}
        folder = parents.pop() if len(parents) == 1 else Path(os.path.commonpath([str(q) for q in chosen]))
    notes = (f"left out {ignored} file(s) that are not images",) if ignored else ()
    return FrameFiles(chosen, fps, name or (folder.name if folder.name else None), folder, problems, notes,
                      max_pixels)


# ----------------------------------------------------------------------------------------------
# video

def _cv2():
    # FFmpeg's own log lines (e.g. "[h264 @ 0x...] error while decoding") would clutter the
    # progress output; a user's explicit setting wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


class VideoFile(ClipSource):
    """A video decoded with OpenCV (FFmpeg backend), frame by frame in presentation order."""

    kind = "video"

    def __init__(self, path: Path, fps: float | None = None, name: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        from ..runtime.fingerprint import file_sha256

        self.path = path
        self.name = safe_name(name or path.stem)
        self.max_pixels = max_pixels
        cap = self._open()
        try:
            cv2 = _cv2()
            rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            ok, first = cap.read()
        finally:
            cap.release()
        if not ok:
            raise ClipError(f"{path}: no frame could be decoded (not a video, or a codec this OpenCV build "
                            "lacks); convert it to H.264 MP4 or extract the frames", "not_a_video")
        self.size = (int(first.shape[1]), int(first.shape[0]))  #: (width, height) of the first frame
        notes = []
        if 0 < rate < 1000:
            self.fps = rate
        else:
            self.fps = float(fps) if fps else DEFAULT_FPS
            notes.append(f"{path.name} does not state its frame rate; assuming {self.fps:g} fps")
        self.container_fps = rate
        self.expected_frames = count if count > 0 else None
        self.notes = tuple(notes)
        try:
            self.sha256 = file_sha256(path)
        except OSError as e:
            raise ClipError(f"{path}: cannot read the file ({e.strerror or e})", "input_missing") from None

    def _open(self):
        cv2 = _cv2()
        level = cv2.getLogLevel()
        cv2.setLogLevel(min(level, 2))  # OpenCV's own "[ WARN ] ... can't open" lines: we say it in one sentence
        try:
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap.release()
                cap = cv2.VideoCapture(str(self.path))
        finally:
            cv2.setLogLevel(level)
        if not cap.isOpened():
            cap.release()
            raise ClipError(f"{self.path}: OpenCV cannot open it as a video (not a video, or a format this "
                            "build lacks); convert it to H.264 MP4 or extract the frames", "not_a_video")
        return cap

    def frames(self, lazy=None) -> Iterator[DecodedFrame]:
        cv2 = _cv2()
        cap = self._open()
        try:
            k = 0
            last_ts = -1.0
            while True:
                t0 = time.perf_counter()
                ok, bgr = cap.read()
                if not ok:
                    return
                ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                ts = ms / 1000.0 if ms is not None and ms >= 0 else k / self.fps
                if ts <= last_ts:  # missing or repeated presentation times: the nominal rate
                    ts = max(k / self.fps, last_ts + 1e-6)
                last_ts = ts
                frame = DecodedFrame(k, k, ts, f"{self.path}#{k}", content_sha256=f"{self.sha256}#{k}")
                h, w = bgr.shape[:2]
                if w * h > self.max_pixels:
                    frame.problem = ("too_large", f"{frame.label}: the frame is too large ({w}x{h}); "
                                                  "raise --max-megapixels")
                else:
                    frame.pixels = np.ascontiguousarray(bgr[..., ::-1])
                frame.decode_s = time.perf_counter() - t0
                yield frame
                k += 1
        finally:
            cap.release()

    def describe(self) -> dict:
        return {**super().describe(), "sha256": self.sha256}


# ----------------------------------------------------------------------------------------------

def open_clip(raw: str | os.PathLike, fps: float | None = None, name: str | None = None,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> ClipSource:
    """A video file, a folder of frames or a glob pattern of frames.

    Args:
        fps: frame rate of image frames (default 30); for a video, used only when the container
            states none.
        name: the clip's name (default: the video's stem or the folder's name).

    Raises:
        ClipError: one sentence on what is wrong.
    """
    raw = str(raw)
    if fps is not None and (not fps > 0 or fps == float("inf")):
        raise ClipError("--fps must be a number more than 0", "usage")
    p = Path(raw).expanduser()
    if p.is_dir() or (not p.exists() and any(ch in raw for ch in "*?[")):
        return frame_files(raw, fps or DEFAULT_FPS, name, max_pixels)
    if not p.exists():
        raise ClipError(f"{raw}: no such file or folder", "input_missing")
    if p.suffix.lower() in IMAGE_EXTENSIONS + UNSUPPORTED_IMAGE_EXTENSIONS:
        raise ClipError(f"{raw} is a single image; give a video, a folder of frames or a quoted glob "
                        "(or use 'pixie-backend reconstruct' for photos)", "usage")
    if p.stat().st_size == 0:
        raise ClipError(f"{raw}: the file is empty (0 bytes)", "not_a_video")
    return VideoFile(p, fps, name, max_pixels)
