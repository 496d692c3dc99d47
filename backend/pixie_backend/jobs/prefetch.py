"""Frames in, person crops on their way through the networks out, ahead of the job that consumes them.

Three stages run at once (``prefetch=True``):

1. a **reader** thread decodes the frames in order (a video with OpenCV, files with Pillow) and
   tells which ones an earlier run completed (those are not prepared at all);
2. the workers of a :class:`~.prepare.PreparerPool` detect the persons of each frame and cut their
   body crops (each with its own :class:`~.prepare.Preparer`, so its own detector; for a GPU they
   hand over the image and the persons' squares, and the engine cuts the crops on the device);
3. a **dispatcher** thread submits each frame's crops, in frame order, to the batcher, whose own
   thread runs the networks on batches that span frames.

The consumer takes :class:`Ticket` objects in frame order and waits on each ticket's future. At
most about two batches of persons are submitted and not yet taken (``2 × batch_size``, as for
images) and a few frames wait in each queue, so memory stays bounded on any clip length.

With ``prefetch=False`` every stage runs in the consumer's thread, one frame after the other (each
frame's crops run as their own batch): the baseline the benchmark compares with.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..runtime.batcher import Batcher
from .frames import DecodedFrame
from .prepare import Prepared, Preparer, PreparerPool

log = logging.getLogger(__name__)

_END = object()


@dataclass
class Ticket:
    """One frame on its way: decoded, maybe prepared, its crops maybe submitted."""

    frame: DecodedFrame
    resumable: bool = False  #: an earlier run completed it: not prepared
    prepared: Prepared | None = None  #: detection and crops (None: not prepared)
    future: Future | None = None  #: the networks' ``(output, seconds)`` for the prepared crops
    persons: int = 0  #: persons submitted

    @property
    def result(self):
        return None if self.prepared is None else self.prepared.result


class FramePrefetcher:
    """Iterate to get the tickets in frame order; call :meth:`taken` once a ticket's future has been
    read; :meth:`close` stops everything (also when iteration ends early).

    Args:
        frames: the clip's frames (a generator run on the reader thread).
        prepare: ``prepare(frame, preparer) -> Prepared | None`` (None: nothing to run for it).
        pool: the preparation workers (one thread each).
        batcher: where crops go (a stream is opened for this job).
        resumable: ``resumable(frame)``: the frame needs no work (checked on the reader thread).
        cancel: the job's cancel flag (checked as often as the prefetcher's own stop).
        prefetch: False runs everything in the consumer's thread.
    """

    def __init__(self, frames: Iterable[DecodedFrame], prepare: Callable[[DecodedFrame, Preparer], Prepared | None],
                 pool: PreparerPool, batcher: Batcher, resumable: Callable[[DecodedFrame], bool],
                 cancel: threading.Event | None = None, prefetch: bool = True, name: str = ""):
        self.frames = frames
        self.prepare = prepare
        self.pool = pool
        self.batcher = batcher
        self.resumable = resumable
        self._stop = threading.Event()
        self._cancel = cancel if cancel is not None else threading.Event()
        self.prefetch = prefetch
        self.name = name
        self.stream = batcher.stream(f"{name}-frames")
        self.limit = 2 * batcher.batch_size
        self._slots = threading.Condition()
        self._outstanding = 0
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None
        self._out: queue.Queue = queue.Queue(maxsize=max(4, batcher.batch_size + pool.workers))
        self.read_s = 0.0  #: reader-thread seconds (decoding, hashing)

    @property
    def preparers(self) -> list[Preparer]:
        return self.pool.preparers

    # ------------------------------------------------------------------ consumer side
    def __iter__(self) -> Iterator[Ticket]:
        if not self.prefetch:
            yield from self._serial()
            return
        self._start()
        while True:
            item = self._get(self._out)
            if item is _END or item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def taken(self, ticket: Ticket) -> None:
        """The consumer has the ticket's network output: its persons free their slots."""
        if ticket.persons:
            with self._slots:
                self._outstanding -= ticket.persons
                ticket.persons = 0
                self._slots.notify_all()

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._cancel.is_set()

    def close(self) -> None:
        self._stop.set()
        self.stream.cancel()
        with self._slots:
            self._slots.notify_all()
        for t in self._threads:
            t.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ serial (no prefetch)
    def _serial(self) -> Iterator[Ticket]:
        preparer = self.preparers[0]
        try:
            for frame in self.frames:
                if self._stopped():
                    return
                ticket = Ticket(frame, resumable=frame.problem is None and self.resumable(frame))
                if frame.problem is None and not ticket.resumable:
                    ticket.prepared = self.prepare(frame, preparer)
                    p = ticket.prepared
                    if p is not None and p.ready:
                        ticket.future = p.submit(self.stream, urgent=True)
                yield ticket
        finally:
            self.stream.close()

    # ------------------------------------------------------------------ threads
    def _start(self) -> None:
        workers = self.pool.workers
        decoded: queue.Queue = queue.Queue(maxsize=2 + 2 * workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"pixie-prepare-{self.name}")

        def run_prepare(frame: DecodedFrame) -> Prepared | None:
            with self.pool.borrow() as preparer:
                return self.prepare(frame, preparer)

        def read() -> None:
            try:
                frames = iter(self.frames)
                while not self._stopped():
                    t0 = time.perf_counter()
                    frame = next(frames, None)
                    if frame is None:
                        break
                    ticket = Ticket(frame, resumable=frame.problem is None and self.resumable(frame))
                    self.read_s += time.perf_counter() - t0
                    if not self._put(decoded, ticket):
                        return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                self._put(decoded, e)
                return
            self._put(decoded, _END)

        def dispatch() -> None:
            pending: collections.deque[tuple[Ticket, Future | None]] = collections.deque()
            ended = False
            try:
                while not self._stopped():
                    while not ended and len(pending) < workers + 1:
                        item = self._get(decoded) if not pending else self._get(decoded, block=False)
                        if item is None:  # stopped, or nothing decoded yet while work is pending
                            break
                        if item is _END:
                            ended = True
                            break
                        if isinstance(item, BaseException):
                            raise item
                        needs = item.frame.problem is None and not item.resumable
                        pending.append((item, self._pool.submit(run_prepare, item.frame) if needs else None))
                    if self._stopped():
                        return
                    if not pending:
                        if ended:
                            break
                        continue
                    ticket, fut = pending.popleft()
                    if fut is not None:
                        ticket.prepared = fut.result()
                        self._submit(ticket)
                    if not self._put(self._out, ticket):
                        return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                self._put(self._out, e)
                return
            finally:
                self.stream.close()
            self._put(self._out, _END)

        for target, what in ((read, "read"), (dispatch, "dispatch")):
            t = threading.Thread(target=target, name=f"pixie-{what}-{self.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _submit(self, ticket: Ticket) -> None:
        p = ticket.prepared
        if p is None or not p.ready:
            return
        n = p.persons
        with self._slots:
            while self._outstanding and self._outstanding + n > self.limit and not self._stopped():
                self._slots.wait(0.1)
            if self._stopped():
                return
            self._outstanding += n
        ticket.persons = n
        ticket.future = p.submit(self.stream)

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stopped():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, block: bool = True):
        """The next item; None when stopped (or, with ``block=False``, when there is none yet)."""
        if not block:
            try:
                return q.get_nowait()
            except queue.Empty:
                return None
        while not self._stopped():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return None
