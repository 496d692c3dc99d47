"""Micro-batching person crops from any number of jobs onto one engine.

Each job opens a :class:`Stream` and submits the crops of one image at a time (all persons of the
image together); it gets a ``concurrent.futures.Future`` for that image's :class:`PixieOutput`
(CPU tensors). One worker thread forms batches of up to ``batch_size`` persons, across images and
across streams, in submission order, and routes each slice of the output back to its future.

When fewer than ``batch_size`` persons are waiting, the worker waits for more while some stream is
still open, at most ``max_wait`` seconds after the oldest waiting image (``None``: until the
streams have submitted enough or are closed — the batch CLI's setting, which batches fully). A
cancelled stream's waiting images are dropped before the next batch (a batch that runs already
finishes; its results for a cancelled stream are discarded by that stream's job).

An **urgent** submission (``submit(..., urgent=True)``) goes ahead of the waiting work and does not
wait for a full batch: the next batch starts with it and is filled with what is already waiting.
A job that cannot go on without a result (the sequence job's crops proposed from the previous
frame) uses it, so that it never waits for work that will only come after that result.

On a GPU a stream can submit the decoded image and its persons' squares instead of crops
(:meth:`Stream.submit_image`): the image is uploaded at once in the submitting thread (on CUDA from
pinned memory on a copy stream), and the engine cuts the crops on the device. Batches are then
pipelined: while one batch's results travel back to the host (a finisher thread waits for them),
the next batch is already queued on the device.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass

import torch

from .engine import Engine
from .transfer import DeviceImage

log = logging.getLogger(__name__)


@dataclass
class _Work:
    stream: Stream
    image: torch.Tensor | None  #: (P, 3, 224, 224)
    image_hd: torch.Tensor | None  #: (P, 3, H, H)
    future: Future
    urgent: bool = False
    uploaded: DeviceImage | None = None  #: instead of crops: the image on the device and its squares

    @property
    def persons(self) -> int:
        return self.uploaded.persons if self.uploaded is not None else self.image.shape[0]

    @property
    def part(self) -> tuple[torch.Tensor, torch.Tensor] | DeviceImage:
        return self.uploaded if self.uploaded is not None else (self.image, self.image_hd)


class Stream:
    """One job's channel into a :class:`Batcher`."""

    def __init__(self, batcher: Batcher, name: str):
        self.batcher = batcher
        self.name = name
        self.open = True
        self.cancelled = False

    def submit(self, image: torch.Tensor, image_hd: torch.Tensor, urgent: bool = False) -> Future:
        """Queue one image's person crops.

        Args:
            urgent: run in the next batch, ahead of waiting work, without waiting for a full batch.

        Returns:
            a future of ``(PixieOutput for the P persons on the CPU, model seconds for this image)``.
        """
        return self.batcher._submit(self, image, image_hd, urgent)

    def submit_image(self, pixels: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor,
                     urgent: bool = False) -> Future:
        """Queue one image whose crops the engine cuts on its device.

        Args:
            pixels: (H, W, 3) uint8 (or float in [0, 1]) on the CPU; uploaded now, in this thread.
            centers: (P, 2) and sides (P,): the persons' body squares, image pixels.
            urgent: as in :meth:`submit`.

        Returns:
            the same future as :meth:`submit`.
        """
        return self.batcher._submit_image(self, pixels, centers, sides, urgent)

    def close(self) -> None:
        """No more images will come from this stream (lets a waiting batch run)."""
        self.batcher._close_stream(self)

    def cancel(self) -> None:
        """Drop this stream's waiting images (their futures are cancelled) and close it."""
        self.cancelled = True
        self.batcher._close_stream(self)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.cancel()
        else:
            self.close()


class Batcher:
    """Batches from all open streams onto ``engine``; thread-safe.

    Args:
        engine: where batches run.
        batch_size: persons per batch (an image with more persons runs as one larger batch).
        max_wait: seconds a partial batch waits for more work while streams are open (None: no limit).
        part_crop_images: copy the head and hand crop images back with the outputs (default: only
            from the CPU; a GPU keeps them and frees them).
        pipelined: hand results back from a finisher thread, so the next batch is queued on the
            device while one travels back (default: on a GPU).
    """

    def __init__(self, engine: Engine, batch_size: int = 8, max_wait: float | None = None,
                 part_crop_images: bool | None = None, pipelined: bool | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.engine = engine
        self.batch_size = batch_size
        self.max_wait = max_wait
        #: copy the head/hand crop images back with the outputs (default: not from a GPU)
        self.part_crop_images = part_crop_images
        #: pipelined batches (default: on an accelerator): at most two batches travel back at once
        pipelined = engine.accelerated if pipelined is None else pipelined
        self._finishing: queue.Queue | None = queue.Queue(maxsize=2) if pipelined else None
        self._finisher: threading.Thread | None = None
        self._cv = threading.Condition()
        self._queue: collections.deque[_Work] = collections.deque()
        self._streams: set[Stream] = set()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches_run = 0  #: for tests and statistics
        self.batch_sizes: list[int] = []

    # ------------------------------------------------------------------ streams
    def stream(self, name: str = "") -> Stream:
        s = Stream(self, name)
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._streams.add(s)
        return s

    def _submit(self, stream: Stream, image: torch.Tensor, image_hd: torch.Tensor, urgent: bool = False) -> Future:
        if image.ndim != 4 or image.shape[0] != image_hd.shape[0] or image.shape[0] < 1:
            raise ValueError(f"expected (P, 3, 224, 224) and (P, 3, H, H) crops, got {tuple(image.shape)} "
                             f"and {tuple(image_hd.shape)}")
        return self._enqueue(_Work(stream, image, image_hd, Future(), urgent))

    def _submit_image(self, stream: Stream, pixels: torch.Tensor, centers: torch.Tensor,
                      sides: torch.Tensor, urgent: bool = False) -> Future:
        if pixels.ndim != 3 or centers.ndim != 2 or centers.shape[0] != sides.shape[0] or centers.shape[0] < 1:
            raise ValueError(f"expected an (H, W, C) image with (P, 2) centres and (P,) sides, got "
                             f"{tuple(pixels.shape)}, {tuple(centers.shape)} and {tuple(sides.shape)}")
        if not stream.open:
            raise RuntimeError(f"stream {stream.name!r} is closed")
        uploaded = self.engine.upload(pixels, centers, sides)
        return self._enqueue(_Work(stream, None, None, Future(), urgent, uploaded))

    def _enqueue(self, work: _Work) -> Future:
        stream, fut = work.stream, work.future
        with self._cv:
            if not stream.open:
                raise RuntimeError(f"stream {stream.name!r} is closed")
            if work.urgent:  # after the urgent work already waiting, before everything else
                self._queue.insert(sum(1 for w in self._queue if w.urgent), work)
            else:
                self._queue.append(work)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pixie-batcher", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        return fut

    def _close_stream(self, stream: Stream) -> None:
        with self._cv:
            stream.open = False
            self._streams.discard(stream)
            self._cv.notify_all()

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish what is queued, then stop the worker thread."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._finisher is not None:
            self._finisher.join(timeout)

    # ------------------------------------------------------------------ worker
    def _drop_cancelled(self) -> None:
        keep = collections.deque()
        for w in self._queue:
            if w.stream.cancelled:
                w.future.cancel()
            else:
                keep.append(w)
        self._queue = keep

    def _next_group(self) -> list[_Work] | None:
        """Wait for work and return the next batch (None: closed and empty). Holds the lock."""
        with self._cv:
            while True:
                self._drop_cancelled()
                if not self._queue:
                    if self._closed:
                        return None
                    self._cv.wait()
                    continue
                oldest = time.monotonic()
                while True:
                    self._drop_cancelled()
                    waiting = sum(w.persons for w in self._queue)
                    if not self._queue or waiting >= self.batch_size or not self._streams or self._closed:
                        break
                    if self._queue[0].urgent:
                        break
                    remaining = None if self.max_wait is None else oldest + self.max_wait - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._cv.wait(remaining)
                if not self._queue:
                    continue
                group = [self._queue.popleft()]
                n = group[0].persons
                while self._queue and n + self._queue[0].persons <= self.batch_size:
                    w = self._queue.popleft()
                    group.append(w)
                    n += w.persons
                return group

    def _run(self) -> None:
        try:
            while True:
                group = self._next_group()
                if group is None:
                    return
                group = [w for w in group if w.future.set_running_or_notify_cancel()]
                if not group:
                    continue
                n = sum(w.persons for w in group)
                try:
                    t0 = time.perf_counter()
                    pending = self.engine.to_host(self.engine.infer_batch([w.part for w in group]),
                                                  self.part_crop_images)
                except BaseException as e:  # noqa: BLE001 - reported on every image of the batch
                    self._fail(group, n, e)
                    continue
                self.batches_run += 1
                self.batch_sizes.append(n)
                if self._finishing is None:
                    self._finish(group, n, pending, t0)
                else:  # pipelined: the next batch is queued on the device while this one comes back
                    if self._finisher is None:
                        self._finisher = threading.Thread(target=self._finish_loop, name="pixie-batcher-finish",
                                                          daemon=True)
                        self._finisher.start()
                    self._finishing.put((group, n, pending, t0))
        finally:
            if self._finishing is not None:
                self._finishing.put(None)

    def _finish_loop(self) -> None:
        while (item := self._finishing.get()) is not None:
            self._finish(*item)

    def _finish(self, group: list[_Work], n: int, pending, t0: float) -> None:
        try:
            out = pending.result()
        except BaseException as e:  # noqa: BLE001 - a device error surfaces when the results are read
            self._fail(group, n, e)
            return
        dt = time.perf_counter() - t0
        start = 0
        for w in group:
            part = out.index(slice(start, start + w.persons))
            start += w.persons
            w.future.set_result((part, dt * w.persons / n))

    @staticmethod
    def _fail(group: list[_Work], n: int, e: BaseException) -> None:
        log.exception("the model failed on a batch of %d persons", n, exc_info=e)
        for w in group:
            w.future.set_exception(e)


__all__ = ["Batcher", "CancelledError", "Stream"]
