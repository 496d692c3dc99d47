"""The public API: ``Pixie`` — images in, SMPL-X bodies out.

Two entries:

* :meth:`Pixie.predict_crops` takes already-cropped body batches, exactly what upstream
  ``PIXIE.encode`` takes (``image`` (B, 3, 224, 224) and ``image_hd`` (B, 3, 1024, 1024), RGB in
  [0, 1]), and returns decoded outputs. This is the one-to-one comparison point with upstream.
* :meth:`Pixie.predict` takes images (paths or arrays), detects every person, crops and predicts
  in batches across images and people. One bad image never stops the others: each image gets an
  :class:`ImageResult` with ``status`` ``"ok"`` or ``"error"`` and a message.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .assets import DataFolder
from .body.smplx_layer import PixieSMPLX
from .checkpoint import load_pixie_net
from .config import NetConfig, PixieConfig
from .geometry.camera import body_square, square_to_crop_tform
from .model import PixieModel
from .preprocess.crop import bilinear_square
from .preprocess.detector import Detection, Detector, make_detector
from .preprocess.image_io import DEFAULT_MAX_PIXELS, ImageLoadError, from_array, load_image
from .types import PixieOutput

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | np.ndarray


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

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class _Prepared:
    result: ImageResult
    image: torch.Tensor | None = None  #: (P, 3, 224, 224)
    image_hd: torch.Tensor | None = None  #: (P, 3, 1024, 1024)


class Pixie:
    """PIXIE reconstruction with the official checkpoint.

    Args:
        data_dir: the data folder (default: ``$PIXIE_DATA_DIR``, then the per-user folder).
        config: numbers-changing options and the device/precision.
        detector: ``auto``, ``mediapipe``, ``opencv``, ``none``, or a :class:`Detector`.
        trust_checkpoint: allow full unpickling of ``pixie_model.tar`` if the safe loader refuses it.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, config: PixieConfig | None = None,
                 detector: str | Detector = "auto", trust_checkpoint: bool = False):
        self.config = config or PixieConfig()
        self.data = DataFolder(data_dir)
        synthetic_net = self.data.synthetic_info().get("net")
        if synthetic_net == "tiny" and self.config.net.is_official:
            log.warning("synthetic data folder with a width-reduced network: using NetConfig.tiny()")
            self.config = replace(self.config, net=NetConfig.tiny())
        ckpt = self.data.require("pixie_model")
        smplx_npz = self.data.require("smplx_model")
        extra = self.data.require("extra_joints")
        j14 = self.data.require("j14_regressor")
        net = load_pixie_net(ckpt, self.config.net, "cpu", trust_pickle=trust_checkpoint)
        smplx = PixieSMPLX.from_files(smplx_npz, extra, j14)
        self._init_model(PixieModel(net, smplx, self.config), detector)
        self.checkpoint_path, self.smplx_path = ckpt, smplx_npz

    def _init_model(self, model: PixieModel, detector: str | Detector) -> None:
        device = torch.device(self.config.device)
        if device.type == "cuda":
            # parity needs true fp32 matmuls; autocast (bf16/fp16) is the fast path
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
        self.model = model.to(device).eval()
        self.device = device
        self._detector_spec = detector
        self._detector: Detector | None = detector if not isinstance(detector, str) else None

    @classmethod
    def from_model(cls, model: PixieModel, detector: str | Detector = "auto") -> Pixie:
        """Wrap an already-built :class:`PixieModel` (tests, benchmarks)."""
        self = cls.__new__(cls)
        self.config = model.cfg
        self.data = None
        self.checkpoint_path = self.smplx_path = None
        self._init_model(model, detector)
        return self

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = make_detector(self._detector_spec)
        return self._detector

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()

    # ------------------------------------------------------------------ 4a
    @torch.inference_mode()
    def predict_crops(self, image: torch.Tensor, image_hd: torch.Tensor) -> PixieOutput:
        """Decoded outputs for body crops (upstream ``encode`` + ``decode``), on the model's device
        and in the configured dtype (``PixieConfig.dtype``).

        Args:
            image: (B, 3, 224, 224) RGB in [0, 1].
            image_hd: (B, 3, 1024, 1024) RGB in [0, 1], the same crop at high resolution.
        """
        dtype = self.config.torch_dtype
        return self.model(image.to(self.device, dtype), image_hd.to(self.device, dtype))

    # ------------------------------------------------------------------ 4b
    def prepare(self, item: ImageInput, index: int = 0, boxes: Sequence[Sequence[float]] | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> _Prepared:
        """Load, detect and crop one image (CPU). Failures become an error result."""
        source = str(item) if not isinstance(item, np.ndarray) else f"<array {index}>"
        result = ImageResult(source=source, index=index)
        t0 = time.perf_counter()
        try:
            img = from_array(item, source, max_pixels) if isinstance(item, np.ndarray) else load_image(item, max_pixels)
        except ImageLoadError as e:
            result.status, result.message = "error", str(e)
            return _Prepared(result)
        result.width, result.height = img.width, img.height
        t1 = time.perf_counter()
        if boxes is not None:
            dets = [Detection(tuple(float(v) for v in b), 1.0, "given") for b in boxes]
            bad = [d.box for d in dets if not (d.box[2] > d.box[0] and d.box[3] > d.box[1])]
            if bad:
                result.status, result.message = "error", f"{source}: invalid box(es) {bad}; expected x1 < x2, y1 < y2"
                return _Prepared(result)
        else:
            dets = self.detector.detect(img)
        t2 = time.perf_counter()
        if not dets:
            result.status = "error"
            result.message = f"{source}: no person found (detector '{getattr(self.detector, 'name', '?')}')"
            return _Prepared(result)
        crops, crops_hd = [], []
        with warnings.catch_warnings():  # Pillow's arrays are read-only; the crops never write to them
            warnings.simplefilter("ignore", UserWarning)
            pix = torch.from_numpy(img.pixels)
        for d in dets:
            box = torch.tensor(d.box, dtype=torch.float64)
            scale = 1.0 if d.source == "none" else self.config.crop.body_scale
            center, side = body_square(box, scale)
            if side.item() < 2:
                continue
            dtype = self.config.torch_dtype
            crops.append(bilinear_square(pix, center, side, self.config.crop.image_size, dtype))
            crops_hd.append(bilinear_square(pix, center, side, self.config.crop.hd_size, dtype))
            result.persons.append(PersonCrop(
                box=np.asarray(d.box, np.float64), center=center.numpy(), side=float(side),
                tform=square_to_crop_tform(center, side, self.config.crop.image_size).numpy(),
                score=d.score, source=d.source,
            ))
        if not crops:
            result.status, result.message = "error", f"{source}: the person boxes are degenerate"
            return _Prepared(result)
        result.timings.update(load=t1 - t0, detect=t2 - t1, crop=time.perf_counter() - t2)
        return _Prepared(result, torch.stack(crops), torch.stack(crops_hd))

    def predict(self, images: Iterable[ImageInput], boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
                batch_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS,
                on_result: Callable[[ImageResult], None] | None = None) -> list[ImageResult]:
        """Reconstruct every person in every image; see :meth:`iter_predict`."""
        results = []
        for r in self.iter_predict(images, boxes, batch_size, max_pixels):
            if on_result is not None:
                on_result(r)
            results.append(r)
        return results

    def iter_predict(self, images: Iterable[ImageInput],
                     boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
                     batch_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[ImageResult]:
        """Yield one :class:`ImageResult` per image, in input order.

        Loading, detection and cropping run in a background thread while the networks run, and
        people from several images share a batch of up to ``batch_size`` persons.

        Args:
            images: paths or (H, W[, C]) arrays.
            boxes: optional per-image person boxes (``None`` entries use the detector).
            batch_size: persons per network batch.
        """
        items = list(images)
        if boxes is not None and len(boxes) != len(items):
            raise ValueError(f"got {len(boxes)} box lists for {len(items)} images")
        prepared: queue.Queue = queue.Queue(maxsize=max(2, batch_size))
        stop = threading.Event()

        def producer() -> None:
            for i, item in enumerate(items):
                if stop.is_set():
                    return
                try:
                    p = self.prepare(item, i, None if boxes is None else boxes[i], max_pixels)
                except Exception as e:  # noqa: BLE001 - a bug on one image must not stop the rest
                    log.exception("preparing image %s failed", i)
                    r = ImageResult(source=str(item) if not isinstance(item, np.ndarray) else f"<array {i}>",
                                    index=i, status="error", message=f"internal error: {e!r}")
                    p = _Prepared(r)
                prepared.put(p)
            prepared.put(None)

        worker = threading.Thread(target=producer, name="pixie-prepare", daemon=True)
        worker.start()
        pending: list[_Prepared] = []
        try:
            while True:
                p = prepared.get()
                if p is None:
                    break
                pending.append(p)
                if p.image is not None and sum(q.image.shape[0] for q in pending if q.image is not None) >= batch_size:
                    yield from self._run_batch(pending)
                    pending = []
                # yield leading failures immediately (results stay in order)
                while pending and pending[0].image is None:
                    yield pending.pop(0).result
            if pending:
                yield from self._run_batch(pending)
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    prepared.get(timeout=0.1)
                except queue.Empty:
                    pass

    def _run_batch(self, group: list[_Prepared]) -> Iterator[ImageResult]:
        with_images = [p for p in group if p.image is not None]
        if with_images:
            image = torch.cat([p.image for p in with_images])
            image_hd = torch.cat([p.image_hd for p in with_images])
            t0 = time.perf_counter()
            try:
                out = self.predict_crops(image, image_hd).detach_cpu()
            except Exception as e:  # noqa: BLE001 - report on each image, keep going
                log.exception("model failed on a batch")
                for p in with_images:
                    p.result.status, p.result.message = "error", f"model failed on this batch: {e!r}"
            else:
                dt = time.perf_counter() - t0
                start = 0
                for p in with_images:
                    n = p.image.shape[0]
                    p.result.output = out.index(slice(start, start + n))
                    p.result.timings["model"] = dt * n / image.shape[0]
                    start += n
        for p in group:
            p.image = p.image_hd = None
            yield p.result


def gather_images(inputs: Iterable[str], extensions: Sequence[str] = (
        ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")) -> tuple[list[Path], list[str]]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image paths.

    Returns:
        (paths, problems): problems are inputs that matched nothing.
    """
    import glob

    found: list[Path] = []
    problems: list[str] = []
    exts = {e.lower() for e in extensions}
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in exts)
        elif p.is_file():
            found.append(p)
        elif any(ch in raw for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                problems.append(f"{raw}: the pattern matched no files")
            found += files
        else:
            problems.append(f"{raw}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems
