"""What a job reads: image files, encoded image bytes (the service's uploads) or arrays, each with
a unique name, plus the inputs that cannot be read at all (so that they are reported, not dropped).

:func:`gather_sources` expands the CLI's files, folders and glob patterns.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..preprocess.image_io import DEFAULT_MAX_PIXELS, LoadedImage, from_array, load_image, load_image_bytes

#: Raster formats Pillow reads (a GIF gives its first frame).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp",
                                     ".gif", ".ppm", ".pgm", ".pnm")
#: Image formats this backend does not read: reported per file instead of being ignored silently.
UNSUPPORTED_IMAGE_EXTENSIONS: tuple[str, ...] = (".heic", ".heif", ".avif", ".jxl", ".svg", ".psd", ".exr", ".hdr",
                                                 ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2")


@dataclass(frozen=True, eq=False)
class ImageSource:
    """One input image. Exactly one of ``path``, ``data`` (encoded bytes) or ``array`` is set, or
    ``problem`` when the input cannot be read at all (a missing path, an unsupported format).

    ``name`` is the output stem (``<name>.pixie.npz``), unique within a job.
    """

    name: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    array: np.ndarray | None = field(default=None, repr=False)
    problem: tuple[str, str] | None = None  #: (code, message) of an unreadable input
    boxes: tuple[tuple[float, float, float, float], ...] | None = None  #: caller's person boxes

    @property
    def label(self) -> str:
        """What messages call it: the path as given, else ``<name>``."""
        return str(self.path) if self.path is not None else f"<{self.name}>"

    def content_sha256(self) -> str:
        """SHA-256 of the image content: the file's or upload's bytes, or the array's shape, dtype and data."""
        h = hashlib.sha256()
        if self.path is not None:
            with open(self.path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
        elif self.data is not None:
            h.update(self.data)
        elif self.array is not None:
            a = np.ascontiguousarray(self.array)
            h.update(f"{a.dtype.str}|{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
        """Decode the image. Raises :class:`~pixie_backend.preprocess.image_io.ImageLoadError`."""
        if self.path is not None:
            return load_image(self.path, max_pixels)
        if self.data is not None:
            return load_image_bytes(self.data, self.label, max_pixels)
        if self.array is not None:
            return from_array(self.array, self.label, max_pixels)
        raise ValueError(f"{self.label}: nothing to load ({self.problem})")

    @classmethod
    def from_bytes(cls, name: str, data: bytes, boxes=None) -> ImageSource:
        return cls(name=safe_name(name), data=bytes(data), boxes=_boxes(boxes))

    @classmethod
    def from_path(cls, path: str | os.PathLike, name: str | None = None, boxes=None) -> ImageSource:
        p = Path(path)
        return cls(name=safe_name(name or p.stem), path=p, boxes=_boxes(boxes))

    @classmethod
    def from_array(cls, name: str, array: np.ndarray, boxes=None) -> ImageSource:
        return cls(name=safe_name(name), array=np.asarray(array), boxes=_boxes(boxes))

    def with_boxes(self, boxes) -> ImageSource:
        return ImageSource(self.name, self.path, self.data, self.array, self.problem, _boxes(boxes))


def _boxes(boxes) -> tuple[tuple[float, float, float, float], ...] | None:
    if boxes is None:
        return None
    return tuple(tuple(float(v) for v in b) for b in boxes)


_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def safe_name(name: str) -> str:
    """A file-name stem from any text: no folders, no characters that a file system refuses."""
    stem = _UNSAFE.sub("_", Path(str(name)).name).strip("._") or "image"
    return stem[:120]


def unique_names(stems: Sequence[str], keys: Sequence[str]) -> list[str]:
    """Make clashing stems unique with a short hash of their ``keys`` (e.g. the absolute paths)."""
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [f"{s}_{hashlib.sha1(k.encode()).hexdigest()[:8]}" if counts[s] > 1 else s
            for s, k in zip(stems, keys, strict=True)]


def gather_sources(inputs: Iterable[str]) -> tuple[list[ImageSource], list[str]]:
    """Expand files, folders and glob patterns into image sources, de-duplicated, in input order
    (folders and patterns sorted). An input that names nothing, and a file in a folder in an image
    format this backend cannot read, become sources with a ``problem`` (reported like a failed
    image). Other files in folders (text, archives, ...) are left out and counted.

    Returns:
        (sources, notes): notes are human sentences about what was left out.
    """
    found: list[tuple[Path, tuple[str, str] | None]] = []
    missing: list[tuple[str, tuple[str, str]]] = []
    ignored = 0
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            for q in sorted(p.iterdir()):
                if not q.is_file():
                    continue
                ext = q.suffix.lower()
                if ext in IMAGE_EXTENSIONS:
                    found.append((q, None))
                elif ext in UNSUPPORTED_IMAGE_EXTENSIONS:
                    found.append((q, ("unsupported_format", f"{q}: {ext} images are not supported; "
                                                            "convert it to JPEG or PNG")))
                else:
                    ignored += 1
        elif p.is_file():
            found.append((p, None))
        elif any(ch in raw for ch in "*?["):
            files = [Path(m) for m in sorted(glob.glob(str(p), recursive=True)) if Path(m).is_file()]
            if not files:
                missing.append((raw, ("input_missing", f"{raw}: the pattern matched no files")))
            found += [(f, None) for f in files]
        else:
            missing.append((raw, ("input_missing", f"{raw}: no such file or folder")))
    seen: set[Path] = set()
    unique: list[tuple[Path, tuple[str, str] | None]] = []
    for f, problem in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((f, problem))
    names = unique_names([f.stem for f, _ in unique], [str(f.resolve()) for f, _ in unique])
    sources = [ImageSource(name=safe_name(n), path=f, problem=problem)
               for (f, problem), n in zip(unique, names, strict=True)]
    taken = {s.name for s in sources}
    for raw, problem in missing:
        name = safe_name(Path(raw).stem or raw)
        while name in taken:
            name += "_"
        taken.add(name)
        sources.append(ImageSource(name=name, path=Path(raw), problem=problem))
    notes = [f"left out {ignored} file(s) in the given folders that are not images"] if ignored else []
    return sources, notes
