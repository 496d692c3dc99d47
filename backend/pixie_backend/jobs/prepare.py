"""Preparation of one image on the CPU: load, detect every person (or take the caller's boxes), cut
the 224² and 1024² body crops. A failure becomes an error result with a stable code; it never
raises.

For a GPU (``crop_on="device"``) the crops are not cut here: the preparer hands over the decoded
image (uint8) and each person's square, and the engine cuts the crops on the device
(:func:`~pixie_backend.preprocess.crop.crop_squares`), so only the image crosses the bus, not
12.6 MB of float32 per person. A :class:`PreparerPool` runs several preparers (each with its own
detector) in threads, so that detection keeps up with a GPU."""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
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
    #: ``crop_on="device"``: the decoded image, (H, W, 3) uint8 (float32 in [0, 1] for 16-bit
    #: sources) on the CPU, and each person's square (``centers`` (P, 2), ``sides`` (P,), float64)
    pixels: torch.Tensor | None = None
    centers: torch.Tensor | None = None
    sides: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        """There are persons to run through the model (crops, or an image and its squares)."""
        return self.image is not None or self.pixels is not None

    @property
    def persons(self) -> int:
        if self.image is not None:
            return self.image.shape[0]
        return 0 if self.centers is None else self.centers.shape[0]

    def submit(self, stream, urgent: bool = False):
        """Queue the persons on a batcher ``stream`` (crops, or the image and its squares for the
        engine to cut on its device) and drop the host copies; returns the stream's future."""
        if self.image is not None:
            fut = stream.submit(self.image, self.image_hd, urgent=urgent)
        elif self.pixels is not None:
            fut = stream.submit_image(self.pixels, self.centers, self.sides, urgent=urgent)
        else:
            raise ValueError("nothing to submit: the image had no usable person")
        self.image = self.image_hd = self.pixels = None
        return fut


class Preparer:
    """Loads, detects and crops (thread-safe: one image at a time per preparer).

    Args:
        crop: crop sizes and scales.
        dtype: dtype of the crops (``PixieConfig.torch_dtype``).
        detector: ``auto``, ``mediapipe``, ``opencv``, ``none`` or a :class:`Detector` (built on first use).
        crop_on: ``cpu`` (cut the crops here) or ``device`` (hand the image and squares to the engine).
    """

    def __init__(self, crop: CropConfig, detector: str | Detector = "auto", dtype: torch.dtype = torch.float32,
                 crop_on: str = "cpu"):
        if crop_on not in ("cpu", "device"):
            raise ValueError(f"crop_on must be 'cpu' or 'device', not {crop_on!r}")
        self.crop = crop
        self.dtype = dtype
        self.crop_on = crop_on
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
        crops, crops_hd, squares = [], [], []
        with warnings.catch_warnings():  # Pillow's arrays are read-only; the crops never write to them
            warnings.simplefilter("ignore", UserWarning)
            pix = torch.from_numpy(img.pixels)
        on_device = self.crop_on == "device"
        for d in dets:
            box = torch.tensor(d.box, dtype=torch.float64)
            scale = 1.0 if d.source == "none" else self.crop.body_scale
            center, side = body_square(box, scale)
            if side.item() < 2:
                continue
            if on_device:
                squares.append((center, side))
            else:
                crops.append(bilinear_square(pix, center, side, self.crop.image_size, self.dtype))
                crops_hd.append(bilinear_square(pix, center, side, self.crop.hd_size, self.dtype))
            result.persons.append(PersonCrop(
                box=np.asarray(d.box, np.float64), center=center.numpy(), side=float(side),
                tform=square_to_crop_tform(center, side, self.crop.image_size).numpy(),
                score=d.score, source=d.source,
            ))
        if not result.persons:
            return Prepared(result.fail("bad_boxes", f"{source.label}: the person boxes are degenerate"))
        result.timings.update(load=t1 - t0, detect=t2 - t1, crop=time.perf_counter() - t2)
        if on_device:
            pixels = pix if pix.is_contiguous() else pix.contiguous()
            return Prepared(result, pixels=pixels, centers=torch.stack([c for c, _ in squares]),
                            sides=torch.stack([s for _, s in squares]))
        return Prepared(result, torch.stack(crops), torch.stack(crops_hd))

    def map(self, sources: Sequence[ImageSource], max_pixels: int = DEFAULT_MAX_PIXELS,
            stop: threading.Event | None = None) -> Iterator[Prepared]:
        """Prepare ``sources`` one after the other, in order (``index`` = position in ``sources``)."""
        for i, src in enumerate(sources):
            if stop is not None and stop.is_set():
                return
            yield self.prepare(src, i, max_pixels)


class PreparerPool:
    """Several :class:`Preparer` workers (threads, each with its own detector) feeding one ordered
    stream of prepared images: detection off a GPU's critical path. Image decoding (Pillow), the
    mediapipe graphs and OpenCV release the GIL, so threads run in parallel.

    Args:
        workers: number of preparers (each builds its own detector on first use).
        crop, detector, dtype, crop_on: as for :class:`Preparer`; a :class:`Detector` object
            cannot be copied, so it gets a single worker.
    """

    def __init__(self, crop: CropConfig, detector: str | Detector = "auto", dtype: torch.dtype = torch.float32,
                 crop_on: str = "cpu", workers: int = 2):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not isinstance(detector, str):
            workers = 1
        self.crop, self.dtype, self.crop_on, self.workers = crop, dtype, crop_on, workers
        self.preparers = [Preparer(crop, detector, dtype, crop_on) for _ in range(workers)]
        self._free: queue.SimpleQueue[Preparer] = queue.SimpleQueue()
        for p in self.preparers:
            self._free.put(p)

    @property
    def detector(self) -> Detector:
        return self.preparers[0].detector

    @property
    def detector_name(self) -> str:
        return self.preparers[0].detector_name

    def close(self) -> None:
        for p in self.preparers:
            p.close()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Preparer]:
        """A free worker's preparer for the caller's thread (waits while all are busy)."""
        p = self._free.get()
        try:
            yield p
        finally:
            self._free.put(p)

    def prepare(self, source: ImageSource, index: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
        with self.borrow() as p:
            return p.prepare(source, index, max_pixels)

    def map(self, sources: Sequence[ImageSource], max_pixels: int = DEFAULT_MAX_PIXELS,
            stop: threading.Event | None = None) -> Iterator[Prepared]:
        """Prepare ``sources`` on all workers, yielding in input order; at most two images per
        worker are prepared ahead of the consumer."""
        from concurrent.futures import ThreadPoolExecutor

        ahead: collections.deque = collections.deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pixie-prepare") as pool:
            try:
                for i, src in enumerate(sources):
                    if stop is not None and stop.is_set():
                        return
                    ahead.append(pool.submit(self.prepare, src, i, max_pixels))
                    if len(ahead) >= 2 * self.workers:
                        yield ahead.popleft().result()
                while ahead:
                    if stop is not None and stop.is_set():
                        return
                    yield ahead.popleft().result()
            finally:
                for f in ahead:
                    f.cancel()


def make_preparer(crop: CropConfig, detector: str | Detector = "auto", dtype: torch.dtype = torch.float32,
                  crop_on: str = "cpu", workers: int = 1) -> Preparer | PreparerPool:
    """A :class:`Preparer` for one worker, else a :class:`PreparerPool`."""
    if workers <= 1 or not isinstance(detector, str):
        return Preparer(crop, detector, dtype, crop_on)
    return PreparerPool(crop, detector, dtype, crop_on, workers)


def default_prepare_workers(accelerated: bool) -> int:
    """Preparers for a run: 1 on the CPU (the networks need the cores), else one per core but
    one, up to 8 (about 40 ms of detection per image per core against a GPU's few ms)."""
    import os

    return 1 if not accelerated else max(1, min(8, (os.cpu_count() or 2) - 1))


def preparer_for(engine, detector: str | Detector = "auto", workers: int | None = None) -> Preparer | PreparerPool:
    """The preparer an engine wants: crops cut on its device if it is a GPU, and a pool of
    ``workers`` (default: :func:`default_prepare_workers`)."""
    accelerated = bool(getattr(engine, "accelerated", False))
    workers = default_prepare_workers(accelerated) if workers is None else workers
    return make_preparer(engine.config.crop, detector, engine.config.torch_dtype,
                         "device" if accelerated else "cpu", workers)


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
