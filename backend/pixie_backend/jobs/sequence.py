"""The sequence job: a video or a folder of frames in, one sequence file (every tracked person of
the clip) out, typed events on the way, resumable after a kill at any moment.

    job = SequenceJob(engine, "clip.mp4", SequenceOptions(out_dir="out"))
    for event in job.run():        # Started, per frame ItemDone/ItemError + Progress, Finished
        print(event.to_json())
    # -> out/clip.pixie-seq.npz (docs/sequence-format.md), out/smplx_package_<hash>.npz,
    #    out/clip.pixie-frames/ (the committed frames: resume, and the sequence rebuilt from them)

How it runs:

* **Throughput.** Decoding, detection and cropping run on their own threads ahead of the networks
  (:mod:`.prefetch`); the batcher's batches span frames. The same :class:`Engine` and
  :class:`Batcher` serve other jobs (the service).
* **Frames are committed as they finish**, in frame order, into the work folder
  ``<out>/<clip>.pixie-frames/`` through the job layer's :class:`~.output.OutputFolder` (lock,
  ledger, all-or-nothing commits): ``frame_<n>.npz`` (:mod:`.frame_record`) and its ledger record.
  A frame's status is ``ok`` (persons tracked), ``no_person`` or ``error``; one bad frame never
  stops the run.
* **Tracking in frame order on the committed results.** After frame ``k`` the tracker proposes
  crops for frame ``k + 1`` from its predicted keypoints (a person who turns away from the
  face-driven detector is still followed); the proposals that a detection does not cover go
  through the networks at once (an *urgent* batch), and the frame's candidates are associated.
  The tracker is deterministic, so the committed frames replay it exactly.
* **Resume.** A frame is reused when its ledger record is intact, has the same key (frame content,
  settings, model, given boxes) and the tracker, replayed over the frames before it, proposes the
  crops it was computed with. A frame whose detections are still valid but whose proposals differ
  (an earlier frame changed) runs only the new proposals. Nothing committed is computed again.
* **At the end** the sequence file is built from the committed frames (one shape per track, the
  clip's perspective camera) with :class:`~pixie_backend.sequence.sequence_file.SequenceBuilder`,
  and optionally one AMASS ``.npz`` per track.

:meth:`SequenceJob.cancel` stops after the frame being committed.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..preprocess.detector import Detector, DetectorUnavailable
from ..preprocess.image_io import DEFAULT_MAX_PIXELS
from ..runtime.batcher import Batcher
from ..runtime.engine import Engine
from ..sequence.tracker import Tracker, TrackerConfig
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
from .frame_record import ROW_KEYS, FrameRecord, empty_rows
from .frames import ClipError, ClipSource, DecodedFrame, frame_item, open_clip
from .output import OutputError, OutputFolder
from .prefetch import FramePrefetcher, Ticket
from .prepare import Prepared, Preparer, PreparerPool, default_prepare_workers
from .reconstruct import EXIT_BUSY, EXIT_CANCELLED, EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from .sources import ImageSource

log = logging.getLogger(__name__)

#: The work folder of a clip: ``<out>/<clip name><WORK_SUFFIX>``.
WORK_SUFFIX = ".pixie-frames"
#: Bump when what a committed frame holds, or how it is computed, changes.
FRAME_SETTINGS_VERSION = 1
Box = Sequence[float]


@dataclass(frozen=True)
class SequenceOptions:
    out_dir: Path | str
    batch_size: int = 8  #: persons per network batch (when the job makes its own batcher)
    resume: bool = True
    detector: str | Detector = "auto"
    #: person boxes per source frame number (``x1, y1, x2, y2``), used instead of the detector on
    #: those frames; an empty list means nobody is there (proposals may still find the tracked)
    boxes: Mapping[int, Sequence[Box]] | None = None
    proposals: bool = True  #: crops proposed from the previous frame's keypoints
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    focal_px: float | None = None  #: the clip camera's focal length (default: the image diagonal)
    min_track_frames: int = 1  #: shorter tracks are left out of the sequence file
    amass: bool = False  #: also write ``<clip>_track<id>.amass.npz`` per track
    smoothing: float = 0.5  #: smoothing strength of the AMASS files (0: raw)
    prefetch: bool = True  #: decode, detect and crop on their own threads ahead of the networks
    #: preparation threads, each with its own detector (None: 1 on the CPU, up to 8 for a GPU; see
    #: :func:`~.prepare.default_prepare_workers`)
    workers: int | None = None
    lock_wait: float | None = None  #: seconds to wait for another run on the work folder (None: no limit)
    #: read at most this many frames (the rest of the clip is left out, with a warning); None: all
    max_frames: int | None = None
    #: record the clip's path and frame paths relative to ``out_dir`` where they lie inside it (the
    #: service stores uploads in the job folder: the sequence file then names no server path)
    relative_source: bool = False

    def check(self) -> None:
        """Raise ``ValueError`` (a sentence) for an impossible option."""
        if self.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.min_track_frames < 1:
            raise ValueError("--min-track-frames must be at least 1")
        if not 0.0 <= self.smoothing <= 1.0:
            raise ValueError("--smoothing must be between 0 and 1")
        if self.focal_px is not None and not (self.focal_px > 0 and self.focal_px != float("inf")):
            raise ValueError("--focal-length must be a number more than 0")
        if self.lock_wait is not None and self.lock_wait < 0:
            raise ValueError("--lock-timeout must be 0 or more")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        for k, boxes in (self.boxes or {}).items():
            for b in boxes:
                if len(b) != 4 or not (b[2] > b[0] and b[3] > b[1]):
                    raise ValueError(f"the box {list(b)} of frame {k} is not x1, y1, x2, y2 with x1 < x2, y1 < y2")


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Done:
    """What the sequence file needs from one finished frame."""

    status: str  #: ok | no_person | error
    record: FrameRecord | None = None
    ids: list[int | None] = field(default_factory=list)
    code: str = ""
    message: str = ""
    resumed: bool = False  #: an earlier run had committed it and nothing was recomputed
    timings: dict[str, float] = field(default_factory=dict)


class _Rate:
    """Frames per second over the last frames computed (resumed frames do not count)."""

    def __init__(self, window: int):
        self.times: collections.deque[float] = collections.deque(maxlen=window)
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def tick(self) -> None:
        self.times.append(time.monotonic())

    @property
    def per_s(self) -> float | None:
        if not self.times or self.started is None:
            return None
        if len(self.times) < self.times.maxlen:  # from the start of the computation
            span, n = self.times[-1] - self.started, len(self.times)
        else:
            span, n = self.times[-1] - self.times[0], len(self.times) - 1
        return n / span if span > 0 and n > 0 else None


class SequenceJob:
    """One clip into one output folder (see the module docstring).

    Args:
        engine: the loaded model.
        clip: a :class:`~.frames.ClipSource`, or a video file, folder or glob of frames (opened in
            :meth:`run`, so that a bad input is reported as a ``finished`` event).
        options: output folder and settings.
        batcher: a shared batcher (the service); default: one of ``options.batch_size`` for this job.
        fps, name: for a path ``clip``: frame rate of image frames, the clip's name.
        notes: sentences to pass on as ``message`` events.

    After :meth:`run`: ``finished`` (the last event), ``sequence_path`` and ``amass_paths``.
    """

    kind = "sequence"

    def __init__(self, engine: Engine, clip: ClipSource | str | os.PathLike, options: SequenceOptions, *,
                 batcher: Batcher | None = None, job_id: str | None = None, fps: float | None = None,
                 name: str | None = None, notes: Sequence[str] = ()):
        options.check()
        self.engine = engine
        self.clip = clip
        self.options = options
        self.batcher = batcher
        self.id = job_id or uuid.uuid4().hex[:12]
        self.notes = list(notes)
        self._open_args = {"fps": fps, "name": name}
        self._stop = threading.Event()
        self._used_detector = False
        self.detector_name = "given"
        self.finished: Finished | None = None
        self.sequence_path: Path | None = None
        self.amass_paths: list[Path] = []

    def cancel(self) -> None:
        """Stop after the frame being committed (committed frames are kept)."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ the run
    def run(self) -> Iterator[Event]:
        emit = Emitter(self.id)
        counts = {"ok": 0, "no_person": 0, "failed": 0, "skipped": 0}
        out_dir = Path(self.options.out_dir).expanduser()
        details: dict = {"out": str(out_dir)}

        def finish(status: str, code: int, error: tuple[str, str] | None = None) -> Finished:
            self.finished = emit(Finished, status=status, exit_code=code, counts=dict(counts),
                                 seconds=round(time.monotonic() - emit.t0, 3),
                                 error={"code": error[0], "message": error[1]} if error else None,
                                 details=dict(details))
            return self.finished

        try:
            clip = self.clip if isinstance(self.clip, ClipSource) else open_clip(self.clip, **self._open_args)
        except ClipError as e:
            yield finish(STATUS_FAILED, EXIT_USAGE if e.code == "usage" else EXIT_NOTHING, (e.code, str(e)))
            return
        work = out_dir / f"{clip.name}{WORK_SUFFIX}"
        details["work"] = str(work)
        yield emit(Started, job_kind=self.kind, total=self._expected(clip),
                   details={"out": str(out_dir), "work": str(work), "clip": clip.describe(), **self.engine.describe()})
        if self.engine.synthetic:
            yield emit(Message, level="warning", text="the data folder holds SYNTHETIC assets (random weights): "
                                                      "the output is not a reconstruction")
        for note in [*self.notes, *clip.notes]:
            yield emit(Message, level="info", text=note)

        waited: list[Event] = []
        cfg = self.engine.config
        crop_on = "device" if self.engine.accelerated else "cpu"  # a GPU cuts the crops itself
        workers = self.options.workers or default_prepare_workers(self.engine.accelerated)
        # one detector object: one preparation thread (the pool sees to that)
        preparers = PreparerPool(cfg.crop, self.options.detector, cfg.torch_dtype, crop_on, workers)
        proposer = Preparer(cfg.crop, "none", cfg.torch_dtype, crop_on)  # given boxes only: never builds a detector
        batcher = self.batcher or Batcher(self.engine, self.options.batch_size)
        done: dict[int, _Done] = {}
        frames: list[DecodedFrame] = []
        try:
            with OutputFolder.open(work, wait=self.options.lock_wait,
                                   on_wait=lambda: waited.append(emit.make(
                                       Message, level="warning",
                                       text=f"another run is writing to {work}; waiting for it to finish"))
                                   ) as folder:
                yield from waited
                yield from self._frames(folder, clip, preparers, proposer, batcher, emit, counts, done, frames)
                if self._stop.is_set():
                    raise KeyboardInterrupt
                problem = yield from self._write(folder, clip, done, frames, preparers.preparers[0], emit, details)
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
            yield finish(STATUS_CANCELLED, EXIT_CANCELLED, ("cancelled", "cancelled; finished frames are kept"))
            return
        finally:
            for p in [preparers, proposer]:
                p.close()
            if self.batcher is None:
                batcher.close()
        if problem is not None:
            yield finish(STATUS_FAILED, EXIT_NOTHING, problem)
        elif counts["failed"] == 0:
            yield finish(STATUS_OK, EXIT_OK)
        else:
            yield finish(STATUS_PARTIAL, EXIT_PARTIAL)

    def _expected(self, clip: ClipSource) -> int | None:
        """The frames this job expects to read (the clip's count, capped by ``max_frames``)."""
        n, cap = clip.expected_frames, self.options.max_frames
        return n if n is None or cap is None else min(n, cap)

    # ------------------------------------------------------------------ keys
    def _settings(self, detector: str) -> dict:
        """What a frame's results depend on besides its content, its boxes and the model. The
        tracker's settings (and whether it proposes) are not in it: a replay checks the proposals."""
        from ..export.writer import settings_dict

        return {**settings_dict(self.engine, detector), "frame_format": FRAME_SETTINGS_VERSION}

    def _given(self, frame_index: int) -> list[list[float]] | None:
        boxes = (self.options.boxes or {}).get(int(frame_index))
        return None if boxes is None else [[float(v) for v in b] for b in boxes]

    # ------------------------------------------------------------------ frames
    def _frames(self, folder: OutputFolder, clip: ClipSource, preparers: PreparerPool, proposer: Preparer,
                batcher: Batcher, emit: Emitter, counts: dict[str, int], done: dict[int, _Done],
                frames: list[DecodedFrame]) -> Iterator[Event]:
        opts = self.options
        expected = self._expected(clip)
        every_frame_given = opts.boxes is not None and expected is not None and all(
            k in opts.boxes for k in range(expected))
        self.detector_name = "given" if every_frame_given else preparers.detector_name
        settings_sha = {d: _sha(self._settings(d)) for d in {self.detector_name, "given"}}
        model_sha = self.engine.model_fingerprint
        max_pixels = getattr(clip, "max_pixels", None) or DEFAULT_MAX_PIXELS
        keys: dict[int, dict] = {}
        first_size: list[tuple[int, int]] = []

        def key_for(frame_index: int, content_sha256: str | None) -> dict:
            given = self._given(frame_index)
            if given is None:
                self._used_detector = True
            k = {"content_sha256": content_sha256, "model_sha256": model_sha,
                 "settings_sha256": settings_sha["given" if given is not None else self.detector_name],
                 "boxes_sha256": _sha(given) if given is not None else None}
            return {**k, "key": _sha(k)}

        def lazy(position: int, content_sha256: str) -> bool:  # both kinds number frames by position
            return opts.resume and folder.is_done(frame_item(position), key_for(position, content_sha256)["key"])

        def resumable(frame: DecodedFrame) -> bool:  # on the reader thread, in frame order
            keys[frame.position] = key_for(frame.frame_index, frame.content_sha256)
            ok = opts.resume and folder.is_done(frame.item, keys[frame.position]["key"])
            size = frame.size
            if size is None and ok:
                rec = folder.latest[frame.item]
                size = (int(rec["width"]), int(rec["height"]))
            if size is not None and not first_size:
                first_size.append(size)
            elif size is not None and size != first_size[0]:
                w, h = first_size[0]
                frame.problem = ("size_changed", f"{frame.label}: the frame is {size[0]}x{size[1]}, the clip's first "
                                                 f"frame {w}x{h}; a clip has one frame size")
                return False
            return ok

        def prepare(frame: DecodedFrame, preparer: Preparer) -> Prepared | None:
            given = self._given(frame.frame_index)
            if given is not None and not given:
                return None  # nobody in this frame, as given
            source = ImageSource.from_array(frame.item, frame.load(), boxes=given)
            prepared = preparer.prepare(source, frame.position, max_pixels)
            prepared.result.source = frame.label  # messages name the frame, not the array
            prepared.result.message = prepared.result.message.replace(source.label, frame.label)
            return prepared

        tracker = Tracker(opts.tracker)
        rate = _Rate(window=max(30, 3 * batcher.batch_size))
        cut: list[int] = []
        source = clip.frames(lazy=lazy)
        if opts.max_frames is not None:
            source = _at_most(source, opts.max_frames, cut)
        prefetch = FramePrefetcher(source, prepare, preparers, batcher, resumable, cancel=self._stop,
                                   prefetch=opts.prefetch, name=self.id)
        total = self._expected(clip)
        try:
            for ticket in prefetch:
                frame = ticket.frame
                frames.append(frame)
                if not ticket.resumable and frame.problem is None:
                    rate.start()
                t0 = time.perf_counter()
                try:
                    d = self._frame(folder, ticket, keys.get(frame.position, {}), tracker, proposer, prefetch,
                                    max_pixels)
                finally:
                    prefetch.taken(ticket)
                    frame.release()
                done[frame.position] = d
                if total is not None:
                    total = max(total, len(done))
                base = {"frame_index": frame.frame_index, "timestamp": round(frame.timestamp, 6), "source": frame.label}
                if d.status == "error":
                    counts["failed"] += 1
                    yield emit(ItemError, item=frame.item, index=frame.position, code=d.code, message=d.message,
                               details=base)
                else:
                    counts["skipped" if d.resumed else d.status] += 1
                    if not d.resumed:
                        rate.tick()
                    tracks = [int(i) for i in d.ids if i is not None]
                    yield emit(ItemDone, item=frame.item, index=frame.position, resumed=d.resumed,
                               details={**base, "status": d.status, "persons": len(tracks), "tracks": tracks,
                                        "proposals": int(len(d.record.proposal_ids)),
                                        "timings": {k: round(v, 4) for k, v in d.timings.items()},
                                        "seconds": round(time.perf_counter() - t0, 4)})
                per_s = rate.per_s
                eta = None if per_s is None or total is None else round(max(total - len(done), 0) / per_s, 1)
                yield emit(Progress, stage="frames", done=len(done), total=total, item=frame.item,
                           details={"frames_per_s": None if per_s is None else round(per_s, 3), "eta_s": eta})
                if self._stop.is_set():
                    return
        finally:
            prefetch.close()
        if total != len(done) and not self._stop.is_set():  # a video's frame count is only an estimate
            yield emit(Progress, stage="frames", done=len(done), total=len(done),
                       details={"frames_per_s": rate.per_s and round(rate.per_s, 3), "eta_s": 0.0})
        if cut:
            yield emit(Message, level="warning", text=f"only the first {cut[0]} frames of the clip were read (this "
                                                       "job's frame limit); the rest is left out")

    def _frame(self, folder: OutputFolder, ticket: Ticket, keys: dict, tracker: Tracker, proposer: Preparer,
               prefetch: FramePrefetcher, max_pixels: int) -> _Done:
        """Finish one frame: its detections' results, its proposals, the tracker, the commit."""
        frame = ticket.frame
        timings: dict[str, float] = {"decode": frame.decode_s}
        if frame.problem is not None:
            return self._fail(folder, frame, *frame.problem)
        k = frame.position
        record: FrameRecord | None = None
        if ticket.resumable:
            t0 = time.perf_counter()
            try:
                record = FrameRecord.read(folder.root / f"{frame.item}.npz")
            except (OSError, ValueError) as e:
                log.warning("%s: the committed frame cannot be read back (%s); computing it again", frame.item, e)
            timings["read"] = time.perf_counter() - t0
        if record is not None:
            n_det = sum(s != "proposal" for s in record.sources)
            props = tracker.proposals(k, record.detections, record.arrays["keypoints_2d"][:n_det]) \
                if self.options.proposals else []
            if record.same_proposals(np.array([p.box for p in props]), [p.track_id for p in props]):
                ids = tracker.update(k, record.candidates())
                return _Done(_status(ids), record, ids, resumed=True, timings=timings)
            # its detections stand; the tracker now proposes other crops: only those run
            det = (record.sources[:n_det], {n: a[:n_det] for n, a in record.arrays.items()}, record.detections)
        else:
            if ticket.resumable:  # committed, but unreadable: compute it now
                try:
                    ticket.prepared = prefetch.prepare(frame, prefetch.preparers[0])
                except Exception as e:  # noqa: BLE001 - e.g. the frame file is gone
                    return self._fail(folder, frame, getattr(e, "code", "unreadable"), str(e))
                if ticket.prepared is not None and ticket.prepared.ready:
                    ticket.future = self._urgent(prefetch.batcher, ticket.prepared)
            try:
                det = self._detections(ticket, timings)
            except _FrameFailed as e:
                return self._fail(folder, frame, e.code, e.message)
        det_sources, det_arrays, dets = det
        props = tracker.proposals(k, dets, det_arrays["keypoints_2d"]) if self.options.proposals else []
        p_boxes = np.array([p.box for p in props], np.float64).reshape(-1, 4)
        p_ids = [int(p.track_id) for p in props]
        p_arrays, p_tracks = empty_rows(*_widths(det_arrays)), []
        if props:
            t0 = time.perf_counter()
            try:
                p_arrays, p_tracks = self._run_proposals(frame, p_boxes, p_ids, proposer, prefetch.batcher,
                                                         max_pixels)
            except _FrameFailed as e:
                return self._fail(folder, frame, e.code, e.message)
            timings["proposals"] = time.perf_counter() - t0
        if frame.size is not None:
            width, height = frame.size
        else:  # a committed frame whose proposals changed: its size is in its record
            width, height = int(folder.latest[frame.item]["width"]), int(folder.latest[frame.item]["height"])
        record = FrameRecord(k, frame.frame_index, frame.timestamp, width, height, dets, p_boxes,
                             np.asarray(p_ids, np.int32),
                             {n: np.concatenate([det_arrays[n], p_arrays[n]]) for n in ROW_KEYS},
                             det_sources + ["proposal"] * len(p_tracks), [-1] * len(det_sources) + p_tracks)
        t0 = time.perf_counter()
        try:  # committed first: the tracker only ever sees committed frames, as a replay does
            self._commit(folder, frame, record, keys)
        except OSError as e:
            return self._fail(folder, frame, "write_failed",
                              f"{frame.label}: could not write the frame's result ({e.strerror or e})")
        timings["write"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids = tracker.update(k, record.candidates())
        timings["track"] = time.perf_counter() - t0
        return _Done(_status(ids), record, ids, timings=timings)

    def _urgent(self, batcher: Batcher, p: Prepared):
        stream = batcher.stream(f"{self.id}-now")
        try:
            return p.submit(stream, urgent=True)
        finally:
            stream.close()

    def _detections(self, ticket: Ticket, timings: dict[str, float]):
        """(sources, per-person arrays, boxes (D, 4) float64) of the frame's detections.

        Raises:
            _FrameFailed: the frame cannot be used (decode, preparation or model error).
        """
        from ..export.result_file import result_arrays

        p = ticket.prepared
        if p is None:  # an empty list of given boxes
            return [], empty_rows(), np.zeros((0, 4))
        r = p.result
        timings.update({k: v for k, v in r.timings.items() if k in ("detect", "crop")})
        if not r.ok:
            if r.code == "no_person":
                return [], empty_rows(), np.zeros((0, 4))
            raise _FrameFailed(r.code, r.message)
        if ticket.future is None:
            raise _FrameFailed("internal", f"{r.source}: the crops were not submitted")
        try:
            output, seconds = ticket.future.result()
        except Exception as e:  # noqa: BLE001 - the batch failed: reported on this frame
            raise _FrameFailed("model_failed", f"{r.source}: the model failed on this batch: {e!r}") from e
        timings["model"] = seconds
        arrays = result_arrays(output, r.persons, self.engine.config.crop.image_size)
        sources = ["given" if q.source == "given" else "detector" for q in r.persons]
        boxes = np.stack([np.asarray(q.box, np.float64) for q in r.persons]).reshape(-1, 4)
        return sources, {n: arrays[n] for n in ROW_KEYS}, boxes

    def _run_proposals(self, frame: DecodedFrame, boxes: np.ndarray, ids: list[int], proposer: Preparer,
                       batcher: Batcher, max_pixels: int):
        """Crop the proposed boxes, run them at once (an urgent batch); returns (per-person arrays,
        the proposing track of each person). Boxes wholly outside the frame are not run."""
        from ..export.result_file import result_arrays

        try:
            pixels = frame.load()
        except Exception as e:  # noqa: BLE001 - a lazily read frame that no longer decodes
            raise _FrameFailed(getattr(e, "code", "unreadable"), str(e)) from e
        h, w = pixels.shape[:2]
        inside = [i for i, b in enumerate(boxes) if b[2] > max(b[0], 0) and b[3] > max(b[1], 0)
                  and b[0] < w and b[1] < h and b[2] > b[0] and b[3] > b[1]]
        if not inside:
            return empty_rows(), []
        src = ImageSource.from_array(frame.item, pixels, boxes=[boxes[i] for i in inside])
        p = proposer.prepare(src, frame.position, max_pixels)
        if not p.result.ok or not p.ready:
            if p.result.code == "bad_boxes":
                return empty_rows(), []
            raise _FrameFailed(p.result.code, p.result.message)
        kept = []
        for q in p.result.persons:  # degenerate boxes are left out by the preparer
            kept.append(next(i for i in inside if np.array_equal(np.asarray(boxes[i], np.float64), q.box)))
        try:
            output, _ = self._urgent(batcher, p).result()
        except Exception as e:  # noqa: BLE001
            raise _FrameFailed("model_failed", f"{frame.label}: the model failed on the proposed crops: {e!r}") from e
        arrays = result_arrays(output, p.result.persons, self.engine.config.crop.image_size)
        return {n: arrays[n] for n in ROW_KEYS}, [int(ids[i]) for i in kept]

    # ------------------------------------------------------------------ ledger
    def _commit(self, folder: OutputFolder, frame: DecodedFrame, record: FrameRecord, keys: dict) -> None:
        staged = folder.stage()
        try:
            record.write(staged.path(f"{frame.item}.npz"))
        except BaseException:
            folder.discard(staged)
            raise
        folder.commit(staged, {"item": frame.item, "index": frame.position, "frame": frame.label,
                               "frame_index": frame.frame_index, "timestamp": frame.timestamp,
                               "width": record.width, "height": record.height, "persons": record.persons,
                               "proposals": int(len(record.proposal_ids)), **keys})

    def _log_error(self, folder: OutputFolder, frame: DecodedFrame, code: str, message: str) -> None:
        folder.log_error({"item": frame.item, "index": frame.position, "frame": frame.label,
                          "frame_index": frame.frame_index, "timestamp": frame.timestamp, "code": code,
                          "message": message})

    def _fail(self, folder: OutputFolder, frame: DecodedFrame, code: str, message: str) -> _Done:
        self._log_error(folder, frame, code, message)
        return _Done("error", code=code, message=message)

    # ------------------------------------------------------------------ the sequence file
    def _write(self, folder: OutputFolder, clip: ClipSource, done: dict[int, _Done], frames: list[DecodedFrame],
               preparer: Preparer, emit: Emitter, details: dict) -> Iterator[Event]:
        """Build and write the sequence file (and AMASS files); returns None or (code, message) of a
        failure of the whole job."""
        from ..export.writer import ResultWriter
        from ..sequence.amass import export_sequence_amass
        from ..sequence.placement import default_camera
        from ..sequence.sequence_file import SEQUENCE_SUFFIX, ClipInfo, SequenceBuilder

        opts = self.options
        if not frames:
            return ("no_frames", f"{clip.path}: no frame could be read")
        ok = [d for d in done.values() if d.record is not None]
        if not ok:
            return ("all_failed", "no frame could be reconstructed")
        if not any(i is not None for d in ok for i in d.ids):
            return ("no_person", "no person was found in any frame")
        yield emit(Progress, stage="sequence", done=0, total=1, text="writing the sequence file")
        width, height = ok[0].record.width, ok[0].record.height
        if clip.kind == "frames":
            info = ClipInfo.for_frames([str(f.path) for f in frames], clip.fps, width, height, name=clip.name)
        else:
            info = ClipInfo.for_video(clip.path, clip.fps, width, height, [f.frame_index for f in frames],
                                      [f.timestamp for f in frames], sha256=clip.sha256)
        if opts.relative_source:
            info = _relative_clip(info, Path(opts.out_dir).expanduser())
        builder = SequenceBuilder(info, camera=default_camera(width, height, opts.focal_px))
        for pos, d in sorted(done.items()):
            if d.status == "error":
                builder.set_frame_status(pos, "error", d.message)
                continue
            keep = [i for i, t in enumerate(d.ids) if t is not None]
            if keep:
                builder.add_persons(pos, d.record.select(keep), [d.ids[i] for i in keep],
                                    [d.record.sources[i] for i in keep])
            else:
                builder.set_frame_status(pos, "no_person")
        try:
            writer = ResultWriter(self.engine, Path(opts.out_dir).expanduser(), write_objs=False,
                                  detector=self.detector_name if self._used_detector else "given")
            model = {"checkpoint_sha256": writer.checkpoint_sha, "smplx_sha256": writer.smplx_sha,
                     "package": {"file": writer.package.path.name, "sha256": writer.package.sha256}}
            path = Path(opts.out_dir).expanduser() / f"{clip.name}{SEQUENCE_SUFFIX}"
            builder.write(path, model=model, synthetic=self.engine.synthetic,
                          settings={**writer.settings, "proposals": opts.proposals, "batch_size": opts.batch_size},
                          tracker=asdict(opts.tracker), min_track_rows=opts.min_track_frames)
            self.sequence_path = path
            self.amass_paths = export_sequence_amass(path, strength=opts.smoothing) if opts.amass else []
        except OSError as e:
            raise OutputError(f"cannot write the sequence file into {opts.out_dir}: {e.strerror or e}") from None
        header_tracks = _tracks_in(path)
        out = Path(opts.out_dir).expanduser()
        details.update({"sequence": str(path), "package": str(writer.package.path),
                        "amass": [str(p) for p in self.amass_paths], "tracks": header_tracks,
                        "files": [p.relative_to(out).as_posix() for p in (path, *self.amass_paths)],
                        "frames": {s: sum(d.status == s for d in done.values()) for s in ("ok", "no_person", "error")}})
        yield emit(Progress, stage="sequence", done=1, total=1, item=path.name,
                   text=f"{header_tracks} track(s) in {path.name}")
        return None


class _FrameFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _at_most(frames: Iterator[DecodedFrame], limit: int, cut: list[int]) -> Iterator[DecodedFrame]:
    """The first ``limit`` frames; ``cut`` gets ``limit`` appended when the clip had more."""
    try:
        for frame in frames:
            if frame.position >= limit:
                cut.append(limit)
                return
            yield frame
    finally:
        frames.close()


def _status(ids: list[int | None]) -> str:
    return "ok" if any(i is not None for i in ids) else "no_person"


def _widths(arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    return int(arrays["betas"].shape[1]), int(arrays["keypoints_2d"].shape[1])


def _relative_clip(info, root: Path):
    """``info`` with its path and frame paths relative to ``root`` where they lie inside it."""
    from dataclasses import replace

    base = root.resolve()

    def rel(raw: str | None) -> str | None:
        if raw is None:
            return None
        try:
            return Path(raw).resolve().relative_to(base).as_posix()
        except ValueError:
            return raw

    paths = None if info.frame_paths is None else tuple(rel(p) for p in info.frame_paths)
    return replace(info, path=rel(info.path), frame_paths=paths)


def _tracks_in(path: Path) -> int:
    with np.load(path, allow_pickle=False) as z:
        return int(json.loads(str(z["header"][()]))["num_tracks"])
