"""The reconstruct job: image sources in, committed result files out, typed events on the way.

    job = ReconstructJob(engine, sources, ReconstructOptions(out_dir="out"))
    for event in job.run():        # Started, ItemDone/ItemError + Progress per image, Finished
        print(event.to_json())

The CLI, the service and the add-on all run this: the engine and the batcher may be shared with
other jobs (the service); :meth:`ReconstructJob.cancel` stops it between images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..export.result_file import FORMAT_VERSION, RESULT_SUFFIX
from ..preprocess.detector import Detector, DetectorUnavailable
from ..preprocess.image_io import DEFAULT_MAX_PIXELS
from ..runtime.batcher import Batcher
from ..runtime.engine import Engine
from .events import (
    STATUS_CANCELLED,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    Emitter,
    Event,
    Finished,
    ItemDone,
    ItemError,
    Message,
    Progress,
    Started,
)
from .images import iter_image_results
from .output import OutputError, OutputFolder
from .prepare import Preparer, PreparerPool, preparer_for
from .sources import ImageSource

log = logging.getLogger(__name__)

#: Exit codes of ``pixie-backend reconstruct`` (and ``Finished.exit_code``).
EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_PARTIAL, EXIT_BUSY, EXIT_CANCELLED = 0, 1, 2, 3, 4, 130


@dataclass(frozen=True)
class ReconstructOptions:
    out_dir: Path | str
    batch_size: int = 8  #: persons per network batch (when the job makes its own batcher)
    write_objs: bool = True
    resume: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    detector: str | Detector = "auto"
    lock_wait: float | None = None  #: seconds to wait for another run on the folder (None: no limit)
    #: load/detect workers (None: 1 on the CPU, up to 8 for a GPU; see ``default_prepare_workers``)
    prepare_workers: int | None = None

    def check(self) -> None:
        """Raise ``ValueError`` (a sentence) for an impossible option."""
        if self.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if not self.max_pixels > 0:
            raise ValueError("--max-megapixels must be more than 0")
        if self.lock_wait is not None and self.lock_wait < 0:
            raise ValueError("--lock-timeout must be 0 or more")
        if self.prepare_workers is not None and self.prepare_workers < 1:
            raise ValueError("--prepare-workers must be at least 1")


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class ReconstructJob:
    """One batch of images into one output folder (see module docstring).

    Args:
        engine: the loaded model.
        sources: the images (and unreadable inputs, reported as errors).
        options: output folder and settings.
        batcher: a shared batcher (the service); default: one of ``options.batch_size`` for this job.
        notes: sentences to pass on as ``message`` events (e.g. files left out of a folder).
    """

    kind = "reconstruct"

    def __init__(self, engine: Engine, sources: Sequence[ImageSource], options: ReconstructOptions, *,
                 batcher: Batcher | None = None, job_id: str | None = None, notes: Sequence[str] = ()):
        options.check()
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError("source names must be unique (they name the output files)")
        self.engine = engine
        self.sources = list(sources)
        self.options = options
        self.batcher = batcher
        self.id = job_id or uuid.uuid4().hex[:12]
        self.notes = list(notes)
        self._stop = threading.Event()
        self.finished: Finished | None = None

    def cancel(self) -> None:
        """Stop after the image being written (nothing half-written is left)."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ the run
    def run(self) -> Iterator[Event]:
        emit = Emitter(self.id)
        counts = {"ok": 0, "failed": 0, "skipped": 0}
        total = len(self.sources)
        out_dir = Path(self.options.out_dir).expanduser()
        yield emit(Started, job_kind=self.kind, total=total,
                   details={"out": str(out_dir), **self.engine.describe()})
        if self.engine.synthetic:
            yield emit(Message, level="warning", text="the data folder holds SYNTHETIC assets (random weights): "
                                                      "the output is not a reconstruction")
        for note in self.engine.appearance_notices:  # face-appearance features off for want of a file
            yield emit(Message, level="info", text=note, details={"notice": "face_appearance"})
        for note in self.notes:
            yield emit(Message, level="info", text=note)

        def finish(status: str, code: int, error: tuple[str, str] | None = None) -> Finished:
            self.finished = emit(Finished, status=status, exit_code=code, counts=dict(counts),
                                 seconds=round(time.monotonic() - emit.t0, 3),
                                 error={"code": error[0], "message": error[1]} if error else None,
                                 details={"out": str(out_dir)})
            return self.finished

        waited: list[Event] = []
        preparer = preparer_for(self.engine, self.options.detector, self.options.prepare_workers)
        batcher = self.batcher or Batcher(self.engine, self.options.batch_size)
        try:
            with OutputFolder.open(out_dir, wait=self.options.lock_wait,
                                   on_wait=lambda: waited.append(emit.make(
                                       Message, level="warning",
                                       text=f"another run is writing to {out_dir}; waiting for it to finish"))
                                   ) as folder:
                yield from waited
                yield from self._run_in(folder, preparer, batcher, emit, counts)
        except OutputError as e:
            yield from waited
            code = {"usage": EXIT_USAGE, "busy": EXIT_BUSY}.get(e.code, EXIT_NOTHING)
            yield finish(STATUS_FAILED, code, (e.code, str(e)))
            return
        except DetectorUnavailable as e:
            yield finish(STATUS_FAILED, EXIT_USAGE, ("detector", str(e)))
            return
        except KeyboardInterrupt:
            self._stop.set()
            yield finish(STATUS_CANCELLED, EXIT_CANCELLED, ("cancelled", "interrupted; finished images are kept"))
            return
        finally:
            preparer.close()
            if self.batcher is None:
                batcher.close()
        if self._stop.is_set():
            yield finish(STATUS_CANCELLED, EXIT_CANCELLED, ("cancelled", "cancelled; finished images are kept"))
        elif counts["failed"] == 0:
            yield finish(STATUS_OK, EXIT_OK)
        elif counts["ok"] + counts["skipped"] == 0:
            yield finish(STATUS_FAILED, EXIT_NOTHING, ("all_failed", "no image could be reconstructed"))
        else:
            yield finish(STATUS_PARTIAL, EXIT_PARTIAL)

    def _run_in(self, folder: OutputFolder, preparer: Preparer | PreparerPool, batcher: Batcher, emit: Emitter,
                counts: dict[str, int]) -> Iterator[Event]:
        from ..export.writer import ResultWriter, settings_dict

        opts = self.options
        needs_detector = any(s.boxes is None and s.problem is None for s in self.sources)
        detector = preparer.detector_name if needs_detector else "given"
        try:
            writer = ResultWriter(self.engine, folder.root, write_objs=opts.write_objs, detector=detector)
        except OSError as e:
            raise OutputError(f"cannot write the model package into {folder.root}: {e.strerror or e}") from None
        settings_sha = {d: _sha({"settings": settings_dict(self.engine, d), "objs": opts.write_objs,
                                 "format": FORMAT_VERSION})
                        for d in {detector, "given"}}  # images with boxes do not depend on the detector
        model_sha = self.engine.model_fingerprint
        total = len(self.sources)
        done = 0

        todo: list[tuple[int, ImageSource, dict]] = []
        for i, src in enumerate(self.sources):
            if src.problem is not None:
                code, message = src.problem
                self._record_error(folder, i, src, code, message)
                counts["failed"] += 1
                done += 1
                yield emit(ItemError, item=src.name, index=i, code=code, message=message,
                           details={"source": src.label})
                continue
            try:
                image_sha = src.content_sha256()
            except OSError as e:
                message = f"{src.label}: cannot read the file ({e.strerror or e})"
                self._record_error(folder, i, src, "unreadable", message)
                counts["failed"] += 1
                done += 1
                yield emit(ItemError, item=src.name, index=i, code="unreadable", message=message,
                           details={"source": src.label})
                continue
            boxes = [list(b) for b in src.boxes] if src.boxes is not None else None
            keys = {"image_sha256": image_sha, "settings_sha256": settings_sha["given" if boxes else detector],
                    "model_sha256": model_sha,
                    "boxes_sha256": _sha(boxes) if boxes is not None else None}
            keys["key"] = _sha(keys)
            if opts.resume and folder.is_done(src.name, keys["key"]):
                rec = folder.latest[src.name]
                files = [f["name"] for f in rec["files"]]
                result = next((n for n in files if n.endswith(RESULT_SUFFIX)), files[0])
                counts["skipped"] += 1
                done += 1
                yield emit(ItemDone, item=src.name, index=i, resumed=True,
                           details={"source": src.label, "persons": rec.get("persons"),
                                    "result": str(folder.root / result), "files": files})
                continue
            todo.append((i, src, keys))

        if done:
            yield emit(Progress, stage="reconstruct", done=done, total=total)
        sources = [s for _, s, _ in todo]
        for r in iter_image_results(preparer, batcher, sources, max_pixels=opts.max_pixels, stop=self._stop,
                                    name=self.id):
            i, src, keys = todo[r.index]
            if r.ok:
                try:
                    files = self._commit(folder, writer, r, i, src, keys)
                except OSError as e:
                    r.fail("write_failed", f"{src.label}: could not write the result ({e.strerror or e})")
                else:
                    counts["ok"] += 1
                    done += 1
                    yield emit(ItemDone, item=src.name, index=i,
                               details={"source": src.label, "persons": len(r.persons),
                                        "result": str(folder.root / files[0]), "files": files,
                                        "timings": {k: round(v, 4) for k, v in r.timings.items()}})
            if not r.ok:
                self._record_error(folder, i, src, r.code, r.message)
                counts["failed"] += 1
                done += 1
                yield emit(ItemError, item=src.name, index=i, code=r.code, message=r.message,
                           details={"source": src.label})
            yield emit(Progress, stage="reconstruct", done=done, total=total, item=src.name)

    def _commit(self, folder: OutputFolder, writer, r, i: int, src: ImageSource, keys: dict) -> list[str]:
        staged = folder.stage()
        try:
            written = writer.write(r, src.name, staged.folder, source_sha256=keys["image_sha256"])
        except BaseException:
            folder.discard(staged)
            raise
        folder.commit(staged, {"item": src.name, "index": i, "image": src.label, "persons": len(r.persons),
                               **keys, "timings": {k: round(v, 4) for k, v in r.timings.items()}})
        return [p.name for p in written]

    @staticmethod
    def _record_error(folder: OutputFolder, i: int, src: ImageSource, code: str, message: str) -> None:
        folder.log_error({"item": src.name, "index": i, "image": src.label, "code": code, "message": message})
