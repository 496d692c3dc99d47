"""Images in, one :class:`ImageResult` per image out, in input order.

Preparation (load, detect, crop) runs on a background thread (or a :class:`PreparerPool`'s
workers) while the batcher runs the networks; persons of several images share a batch. At most
about two batches of crops (or, with device crops, of uploaded images) wait in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError

from ..preprocess.image_io import DEFAULT_MAX_PIXELS
from ..runtime.batcher import Batcher
from .prepare import ImageResult, Preparer, PreparerPool
from .sources import ImageSource

log = logging.getLogger(__name__)


def iter_image_results(preparer: Preparer | PreparerPool, batcher: Batcher, sources: Sequence[ImageSource], *,
                       max_pixels: int = DEFAULT_MAX_PIXELS, stop: threading.Event | None = None,
                       name: str = "") -> Iterator[ImageResult]:
    """Yield each source's result in order (errors included; ``index`` is the position in ``sources``).

    Args:
        stop: set it to stop between images (the generator then ends early).
    """
    stop = stop if stop is not None else threading.Event()
    stream = batcher.stream(name)
    limit = 2 * batcher.batch_size  # persons submitted but not yet handed out
    slots = threading.Condition()
    outstanding = [0]
    order: queue.Queue = queue.Queue()

    def prepared():
        if hasattr(preparer, "map"):
            yield from preparer.map(sources, max_pixels, stop)
        else:  # any object with Preparer.prepare
            for i, src in enumerate(sources):
                if stop.is_set():
                    return
                yield preparer.prepare(src, i, max_pixels)

    def produce() -> None:
        items = prepared()
        try:
            for p in items:
                if stop.is_set():
                    return
                fut = None
                if p.ready:
                    n = p.persons
                    with slots:
                        while outstanding[0] and outstanding[0] + n > limit and not stop.is_set():
                            slots.wait(0.1)
                        if stop.is_set():
                            return
                        outstanding[0] += n
                    fut = p.submit(stream)
                order.put((p.result, fut))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            order.put(e)
        finally:
            items.close()
            stream.close()
            order.put(None)

    worker = threading.Thread(target=produce, name=f"pixie-prepare-{name}", daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            item = order.get()
            if item is None:
                finished = True
                return
            if isinstance(item, BaseException):
                raise item
            result, fut = item
            if fut is not None:
                n = len(result.persons)
                try:
                    result.output, result.timings["model"] = fut.result()
                except CancelledError:
                    return
                except Exception as e:  # noqa: BLE001 - the batch failed: reported on each of its images
                    result.fail("model_failed", f"the model failed on this batch: {e!r}")
                finally:
                    with slots:
                        outstanding[0] -= n
                        slots.notify_all()
            yield result
    finally:
        if not finished:
            stop.set()
            stream.cancel()
        worker.join(timeout=30)
