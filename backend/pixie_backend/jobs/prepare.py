"""Preparation of one image on the CPU: load, detect every person (or take the caller's boxes), cut
the 224² and 1024² body crops. A failure becomes an error result with a stable code; it never
raises."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import CropConfig
from ..geometry.camera import body_square, square_to_crop_tform
from ..preprocess.crop import bilinear_square
from ..preprocess.detector import Detection, Detector, make_detector
from ..preprocess.image_io import DEFAULT_MAX_PIXELS, ImageLoadError
from ..types import PixieOutput
from .sources import ImageSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonCrop:
    """Where one person's body crop came from."""

    box: np.ndarray  #: (4,) detection box x1, y1, x2, y2, image pixels
    center: np.ndarray  #: (2,) square centre, image pixels
    side: float  #: square side, image pixels
    tform: np.ndarray  #: (3, 3) image pixels -> 224 crop pixels
    score: float
    source: str


@dataclass
class ImageResult:
    """Outcome for one input image."""

    source: str
    index: int
    status: str = "ok"  #: "ok" or "error"
    message: str = ""
    width: int = 0
    height: int = 0
    persons: list[PersonCrop] = field(default_factory=list)
    output: PixieOutput | None = None  #: batch of len(persons), on the CPU
    timings: dict[str, float] = field(default_factory=dict)
    code: str = ""  #: stable error code (``no_person``, ``unreadable``, ...), empty when ok
    name: str = ""  #: the source's output stem

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def appearance(self):
        """The persons' face appearance (``AppearanceOutput``, CPU), or None without the stage."""
        return self.output.appearance if self.output is not None else None

    def fail(self, code: str, message: str) -> ImageResult:
        self.status, self.code, self.message = "error", code, message
        return self


@dataclass
class Prepared:
    result: ImageResult
    image: torch.Tensor | None = None  #: (P, 3, 224, 224)
    image_hd: torch.Tensor | None = None  #: (P, 3, 1024, 1024)


class Preparer:
    """Loads, detects and crops (thread-safe: one image at a time per preparer).

    Args:
        crop: crop sizes and scales.
        dtype: dtype of the crops (``PixieConfig.torch_dtype``).
        detector: ``auto``, ``mediapipe``, ``opencv``, ``none`` or a :class:`Detector` (built on first use).
    """

    def __init__(self, crop: CropConfig, detector: str | Detector = "auto", dtype: torch.dtype = torch.float32):
        self.crop = crop
        self.dtype = dtype
        self._spec = detector
        self._detector: Detector | None = None if isinstance(detector, str) else detector
        self._lock = threading.Lock()

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = make_detector(self._spec)
        return self._detector

    @property
    def detector_name(self) -> str:
        """The detector that runs (``auto`` resolved, building it if needed)."""
        return getattr(self.detector, "name", type(self.detector).__name__)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()

    def prepare(self, source: ImageSource, index: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
        with self._lock:
            try:
                return self._prepare(source, index, max_pixels)
            except Exception as e:  # noqa: BLE001 - a bug on one image must not stop the rest
                log.exception("preparing %s failed", source.label)
                return Prepared(ImageResult(source.label, index, name=source.name).fail("internal",
                                                                                      f"internal error: {e!r}"))

    def _prepare(self, source: ImageSource, index: int, max_pixels: int) -> Prepared:
        result = ImageResult(source=source.label, index=index, name=source.name)
        if source.problem is not None:
            return Prepared(result.fail(*source.problem))
        t0 = time.perf_counter()
        try:
            img = source.load(max_pixels)
        except ImageLoadError as e:
            return Prepared(result.fail(e.code, str(e)))
        result.width, result.height = img.width, img.height
        t1 = time.perf_counter()
        if source.boxes is not None:
            dets = [Detection(tuple(b), 1.0, "given") for b in source.boxes]
            bad = [list(d.box) for d in dets if not (d.box[2] > d.box[0] and d.box[3] > d.box[1])]
            if bad or not dets:
                why = f"invalid box(es) {bad}; expected x1 < x2, y1 < y2" if bad else "an empty box list"
                return Prepared(result.fail("bad_boxes", f"{source.label}: {why}"))
        else:
            dets = self.detector.detect(img)
        t2 = time.perf_counter()
        if not dets:
            return Prepared(result.fail("no_person", f"{source.label}: no person found (detector "
                                                     f"'{getattr(self.detector, 'name', '?')}')"))
        crops, crops_hd = [], []
        with warnings.catch_warnings():  # Pillow's arrays are read-only; the crops never write to them
            warnings.simplefilter("ignore", UserWarning)
            pix = torch.from_numpy(img.pixels)
        for d in dets:
            box = torch.tensor(d.box, dtype=torch.float64)
            scale = 1.0 if d.source == "none" else self.crop.body_scale
            center, side = body_square(box, scale)
            if side.item() < 2:
                continue
            crops.append(bilinear_square(pix, center, side, self.crop.image_size, self.dtype))
            crops_hd.append(bilinear_square(pix, center, side, self.crop.hd_size, self.dtype))
            result.persons.append(PersonCrop(
                box=np.asarray(d.box, np.float64), center=center.numpy(), side=float(side),
                tform=square_to_crop_tform(center, side, self.crop.image_size).numpy(),
                score=d.score, source=d.source,
            ))
        if not crops:
            return Prepared(result.fail("bad_boxes", f"{source.label}: the person boxes are degenerate"))
        result.timings.update(load=t1 - t0, detect=t2 - t1, crop=time.perf_counter() - t2)
        return Prepared(result, torch.stack(crops), torch.stack(crops_hd))


def as_sources(images: Sequence, boxes: Sequence | None = None) -> list[ImageSource]:
    """The Python API's inputs (paths, arrays, encoded bytes or :class:`ImageSource`) as sources."""
    from pathlib import Path

    from .sources import unique_names

    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"got {len(boxes)} box lists for {len(images)} images")
    out = []
    for i, item in enumerate(images):
        b = None if boxes is None else boxes[i]
        if isinstance(item, ImageSource):
            src = item if b is None else item.with_boxes(b)
        elif isinstance(item, np.ndarray):
            src = ImageSource.from_array(f"array_{i}", item, b)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            src = ImageSource.from_bytes(f"image_{i}", bytes(item), b)
        else:
            src = ImageSource.from_path(Path(item), boxes=b)
        out.append(src)
    names = unique_names([s.name for s in out], [f"{i}:{s.label}" for i, s in enumerate(out)])
    return [s if s.name == n else ImageSource(n, s.path, s.data, s.array, s.problem, s.boxes)
            for s, n in zip(out, names, strict=True)]
