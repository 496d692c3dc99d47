"""The public API: ``Pixie`` — images in, SMPL-X bodies out.

Two entries:

* :meth:`Pixie.predict_crops` takes already-cropped body batches, exactly what upstream
  ``PIXIE.encode`` takes (``image`` (B, 3, 224, 224) and ``image_hd`` (B, 3, 1024, 1024), RGB in
  [0, 1]), and returns decoded outputs. This is the one-to-one comparison point with upstream.
* :meth:`Pixie.predict` takes images (paths, arrays or encoded bytes), detects every person, crops
  and predicts in batches across images and people. One bad image never stops the others: each
  image gets an :class:`ImageResult` with ``status`` ``"ok"`` or ``"error"`` and a message. With
  the optional face-appearance files in the data folder, each result also carries the persons'
  face appearance (``ImageResult.appearance``: albedo, detail displacement, ...).

``Pixie`` is a thin layer over the job layer: an :class:`~pixie_backend.runtime.engine.Engine` (the
model, loaded once), a :class:`~pixie_backend.jobs.prepare.Preparer` (load, detect, crop) and a
:class:`~pixie_backend.runtime.batcher.Batcher` per call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .config import PixieConfig
from .jobs.images import iter_image_results
from .jobs.prepare import (
    ImageResult,
    PersonCrop,
    Prepared,
    Preparer,
    PreparerPool,
    as_sources,
    default_prepare_workers,
    preparer_for,
)
from .jobs.sources import IMAGE_EXTENSIONS, ImageSource
from .model import PixieModel
from .preprocess.detector import Detector
from .preprocess.image_io import DEFAULT_MAX_PIXELS
from .runtime.batcher import Batcher
from .runtime.engine import Engine
from .types import AppearanceOutput, PixieOutput

__all__ = ["ImageResult", "PersonCrop", "Pixie", "gather_images"]

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | np.ndarray | bytes | ImageSource


class Pixie:
    """PIXIE reconstruction with the official checkpoint.

    Args:
        data_dir: the data folder (default: ``$PIXIE_DATA_DIR``, then the per-user folder).
        config: numbers-changing options and the device/precision.
        detector: ``auto``, ``mediapipe``, ``opencv``, ``none``, or a :class:`Detector`.
        trust_checkpoint: allow full unpickling of ``pixie_model.tar`` if the safe loader refuses it.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, config: PixieConfig | None = None,
                 detector: str | Detector = "auto", trust_checkpoint: bool = False,
                 prepare_workers: int | None = None):
        self._init(Engine.from_data_dir(data_dir, config, trust_checkpoint=trust_checkpoint), detector,
                   prepare_workers)

    def _init(self, engine: Engine, detector: str | Detector, prepare_workers: int | None = None) -> None:
        self.engine = engine
        self.config = engine.config
        self.model = engine.model
        self.device = engine.device
        #: load, detect and crop on the CPU (:meth:`prepare`)
        self.preparer = Preparer(engine.config.crop, detector, engine.config.torch_dtype)
        #: workers that load and detect during :meth:`predict` (default: 1 on the CPU, up to 8 for a GPU)
        self.prepare_workers = default_prepare_workers(engine.accelerated) if prepare_workers is None \
            else prepare_workers
        self._run_preparer: Preparer | PreparerPool | None = None
        self._detector_spec = detector

    @classmethod
    def from_model(cls, model: PixieModel, detector: str | Detector = "auto", appearance=None,
                   prepare_workers: int | None = None) -> Pixie:
        """Wrap an already-built :class:`PixieModel` (and ``FaceAppearance`` stage) (tests, benchmarks)."""
        self = cls.__new__(cls)
        self._init(Engine.from_model(model, appearance), detector, prepare_workers)
        return self

    @property
    def appearance(self):
        """The face-appearance stage (``FaceAppearance``) on the model's device, or None when every
        feature is off (see :attr:`appearance_notices`)."""
        return self.engine.appearance

    @property
    def appearance_notices(self) -> list[str]:
        """One sentence per face-appearance feature that is off for want of a usable data file."""
        return self.engine.appearance_notices

    @property
    def detector(self) -> Detector:
        return self.preparer.detector

    @property
    def detector_name(self) -> str:
        return self.preparer.detector_name

    def close(self) -> None:
        self.preparer.close()
        if self._run_preparer is not None:
            self._run_preparer.close()

    # ------------------------------------------------------------------ 4a
    def predict_crops(self, image: torch.Tensor, image_hd: torch.Tensor) -> PixieOutput:
        """Decoded outputs for body crops (upstream ``encode`` + ``decode``), on the model's device
        and in the configured dtype (``PixieConfig.dtype``).

        Args:
            image: (B, 3, 224, 224) RGB in [0, 1].
            image_hd: (B, 3, 1024, 1024) RGB in [0, 1], the same crop at high resolution.

        The face appearance is not computed here (see :meth:`predict_appearance`).
        """
        return self.engine.infer(image, image_hd, appearance=False)

    def predict_appearance(self, output: PixieOutput, image_hd: torch.Tensor) -> AppearanceOutput | None:
        """Face appearance (albedo, lighting, detail) of decoded outputs, on the model's device;
        None when no appearance feature is on (see :attr:`appearance_notices`).

        Args:
            output: :meth:`predict_crops` output for B persons.
            image_hd: (B, 3, 1024, 1024) their HD body crops, RGB in [0, 1].
        """
        return self.engine.infer_appearance(output, image_hd)

    # ------------------------------------------------------------------ 4b
    def prepare(self, item: ImageInput, index: int = 0, boxes: Sequence[Sequence[float]] | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
        """Load, detect and crop one image (CPU). Failures become an error result."""
        (source,) = as_sources([item], None if boxes is None else [boxes])
        return self.preparer.prepare(source, index, max_pixels)

    def predict(self, images: Iterable[ImageInput], boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
                batch_size: int | str = 8, max_pixels: int = DEFAULT_MAX_PIXELS,
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
                     batch_size: int | str = 8, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[ImageResult]:
        """Yield one :class:`ImageResult` per image, in input order.

        Loading, detection and cropping run in a background thread while the networks run, and
        people from several images share a batch of up to ``batch_size`` persons.

        Args:
            images: paths, (H, W[, C]) arrays, encoded image bytes or :class:`ImageSource` objects.
            boxes: optional per-image person boxes (``None`` entries use the detector).
            batch_size: persons per network batch, or ``"auto"`` (from the device's memory, see
                :meth:`Engine.suggest_batch_size`).

        On a GPU the body crops are cut on the device, detection runs in a pool of
        ``prepare_workers``, and the head and hand crop images stay on the device (the outputs'
        ``crops`` keep their centres and sides).
        """
        sources = as_sources(list(images), boxes)
        if batch_size == "auto":
            batch_size = self.engine.suggest_batch_size()
        batcher = Batcher(self.engine, batch_size)
        preparer = self.preparer
        if self.engine.accelerated or self.prepare_workers > 1:  # crops cut on the GPU, detection in a pool
            if self._run_preparer is None:
                self._run_preparer = preparer_for(self.engine, self._detector_spec, self.prepare_workers)
            preparer = self._run_preparer
        try:
            yield from iter_image_results(preparer, batcher, sources, max_pixels=max_pixels)
        finally:
            batcher.close()


def gather_images(inputs: Iterable[str], extensions: Sequence[str] = IMAGE_EXTENSIONS
                  ) -> tuple[list[Path], list[str]]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image paths.

    Returns:
        (paths, problems): problems are inputs that matched nothing or cannot be read.
    """
    from .jobs.sources import gather_sources

    sources, _ = gather_sources(inputs)
    exts = {e.lower() for e in extensions}
    paths = [s.path for s in sources if s.problem is None and (s.path.suffix.lower() in exts or s.path.is_file())]
    return paths, [s.problem[1] for s in sources if s.problem is not None]
