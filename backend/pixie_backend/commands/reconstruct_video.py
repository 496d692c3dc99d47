"""``pixie-backend reconstruct-video``: a video, a folder of frames or a glob in; one sequence file
(every tracked person of the clip, ``docs/sequence-format.md``) out.

A thin layer over :class:`~pixie_backend.jobs.sequence.SequenceJob`: it checks the arguments, opens
the clip, loads the engine, runs the job and prints its events (a progress bar with frames/s and
ETA, or with ``--json`` the event protocol of ``docs/protocol.md``).

Exit codes (as ``reconstruct``): 0 every frame done (now or by an earlier run); 1 nothing
reconstructed (no frame readable, no person in any frame, model files missing); 2 a bad argument or
an unusable output folder; 3 some frames failed (the sequence file was written without them); 4 the
clip's work folder was busy past ``--lock-timeout``; 130 interrupted (committed frames are kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .model_options import add_model_options, batch_size_for, check_model_args
from .reconstruct import EXIT_USAGE, UsageError, fail_before_job, json_line, read_boxes

EPILOG = """\
input:
  a video file (decoded with OpenCV/FFmpeg; its frame rate and frame times are used), a folder of
  frames or a quoted glob pattern ("shots/*.png"); frames are taken in natural order (f2 before f10).

output:
  <out>/<name>.pixie-seq.npz       every tracked person: raw per-frame results, one shape per track
  <out>/smplx_package_<hash>.npz   the model package the add-on needs
  <out>/<name>.pixie-frames/       the committed frames (resume; safe to delete when done)
  <out>/<name>_track<id>.amass.npz with --amass: one AMASS-style SMPL-X file per track

exit codes:
  0 every frame done (now or by an earlier run), 1 nothing reconstructed (no readable frame, no
  person in any frame, or model files missing), 2 bad argument or unusable output folder, 3 some
  frames failed (the others are in the sequence file), 4 output busy (see --lock-timeout),
  130 interrupted (committed frames are kept; run the same command again to resume)

resume:
  Each frame is committed as it finishes. A rerun reuses a frame if its file is intact and the
  frame content, the settings, the detector, its boxes and the model files are unchanged, and the
  tracker proposes the same crops for it; anything else is computed again.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("reconstruct-video", help="reconstruct and track every person of a video or image sequence",
                       description="Reconstruct every person in every frame of a video or image sequence, follow "
                                   "each person with one track id, and write one sequence file "
                                   "(<name>.pixie-seq.npz) for Blender's Import Image Sequence.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="video file, folder of frames or glob pattern (quote it)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--name", help="the clip's name, used for the output files (default: the video's or folder's name)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of an image sequence (default: 30); for a video only if it states none")
    p.add_argument("--data-dir", help="model data folder (default: $PIXIE_DATA_DIR, then the user folder)")
    add_model_options(p, batch_help="persons per network batch; batches span frames",
                      speed_help="fast: batch norm folded, channels-last (default); exact: upstream's float order")
    p.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                   help="decode, detect and crop one frame at a time between network runs (for comparison)")
    p.add_argument("--detector", choices=("auto", "mediapipe", "opencv", "none"), default="auto",
                   help="person detector; 'none' treats each frame as one person crop (default: auto)")
    p.add_argument("--boxes", help="JSON file {frame number (0-based) or frame file name: [[x1, y1, x2, y2], ...]}; "
                                   "listed frames use these boxes instead of the detector ([] : nobody)")
    p.add_argument("--proposals", action=argparse.BooleanOptionalAction, default=True,
                   help="crop where each tracked person's previous keypoints say they are, so people the "
                        "detector misses (turned away) are still followed (default: on)")
    p.add_argument("--track-memory", type=int, default=30, metavar="FRAMES",
                   help="frames a person may be unseen and keep their track id (default: 30)")
    p.add_argument("--min-track-frames", type=int, default=1,
                   help="leave out tracks shorter than this many frames (default: 1)")
    p.add_argument("--focal-length", type=float, default=None, metavar="PX",
                   help="the camera's focal length in pixels (default: the image diagonal, ~53 degrees)")
    p.add_argument("--amass", action="store_true",
                   help="also write one AMASS-style SMPL-X .npz per track (the official SMPL-X add-on loads it)")
    p.add_argument("--smoothing", type=float, default=0.5,
                   help="smoothing strength 0..1 of the --amass files (default: 0.5; the sequence file is raw)")
    p.add_argument("--part-crop-convention", choices=("kornia_legacy", "kornia09"), default="kornia_legacy",
                   help="pixel convention of the head/hand crops (see README: Fidelity)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse frames an earlier run finished with the same content, settings and model (default: on)")
    p.add_argument("--max-megapixels", type=float, default=100.0, help="refuse larger frames (default: 100)")
    p.add_argument("--lock-timeout", type=float, default=None,
                   help="seconds to wait while another run writes this clip's frames, then give up (exit code 4); "
                        "default: wait until it has finished")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of pixie_model.tar if the safe loader refuses it")
    p.add_argument("--json", "--json-progress", dest="json", action="store_true",
                   help="print the event protocol (docs/protocol.md) on stdout, one JSON object per line")
    p.set_defaults(func=run)
    return p


def _check_args(args: argparse.Namespace) -> None:
    checks = [
        (args.track_memory >= 0, "--track-memory must be 0 or more"),
        (args.min_track_frames >= 1, "--min-track-frames must be at least 1"),
        (0.0 <= args.smoothing <= 1.0, "--smoothing must be between 0 and 1"),
        (args.max_megapixels > 0 and args.max_megapixels != float("inf"),
         "--max-megapixels must be a number more than 0"),
        (args.lock_timeout is None or args.lock_timeout >= 0, "--lock-timeout must be 0 or more"),
        (args.fps is None or (args.fps > 0 and args.fps != float("inf")), "--fps must be a number more than 0"),
        (args.focal_length is None or (args.focal_length > 0 and args.focal_length != float("inf")),
         "--focal-length must be a number more than 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o/--out: {out} is a file; name a folder")
    try:
        check_model_args(args)
    except ValueError as e:
        raise UsageError(str(e)) from None


def frame_boxes(boxes: dict[str, list[list[float]]], clip) -> dict[int, list[list[float]]]:
    """``--boxes`` keys (frame numbers, or for image frames file names or paths) → frame numbers."""
    names: dict[str, int] = {}
    for k, p in enumerate(clip.frame_paths or ()):
        names.setdefault(p.name, k)
        names[str(p)] = k
    out: dict[int, list[list[float]]] = {}
    for key, value in boxes.items():
        if key.strip().isdigit():
            k = int(key)
        elif key in names:
            k = names[key]
        else:
            raise UsageError(f"--boxes: {key!r} is neither a frame number nor a frame file of the clip")
        if clip.expected_frames is not None and k >= clip.expected_frames:
            raise UsageError(f"--boxes: frame {k} is beyond the clip's {clip.expected_frames} frames")
        for b in value:
            if not (b[2] > b[0] and b[3] > b[1]):
                raise UsageError(f"--boxes: the box {b} of {key!r} is not x1, y1, x2, y2 with x1 < x2 and y1 < y2")
        out[k] = value
    return out


class Printer:
    """The events for a person at a terminal: a progress bar with frames/s and ETA, errors, a summary."""

    BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} frames [{elapsed}{postfix}]"

    def __init__(self):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.bar = None

    def __call__(self, ev) -> None:
        kind = ev.kind
        if kind == "started":
            self.bar = self.tqdm(total=ev.total, file=sys.stderr, bar_format=self.BAR, dynamic_ncols=True)
        elif kind == "message":
            self.write(("warning: " if ev.level == "warning" else "") + ev.text)
        elif kind == "item_error":
            self.write(f"ERROR  {ev.message}")
        elif kind == "progress" and ev.stage == "frames" and self.bar is not None:
            if ev.total is not None and ev.total != self.bar.total:
                self.bar.total = ev.total
            self.bar.n = ev.done
            rate, eta = ev.details.get("frames_per_s"), ev.details.get("eta_s")
            parts = [f"{rate:.2f} frames/s" if rate else "-- frames/s"]
            if eta is not None:
                m, s = divmod(int(round(eta)), 60)
                parts.append(f"ETA {m}:{s:02d}")
            self.bar.set_postfix_str(", ".join(parts), refresh=False)
            self.bar.refresh()
        elif kind == "progress" and ev.stage == "sequence":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            if ev.done:
                print(f"wrote  {ev.text}", file=sys.stderr)
        elif kind == "finished":
            if self.bar is not None:
                self.bar.close()
            c, d = ev.counts, ev.details
            if ev.error and ev.status != "partial":
                print(f"error: {ev.error['message']}", file=sys.stderr)
            line = (f"done: {c.get('ok', 0)} frames ok, {c.get('no_person', 0)} without a person, "
                    f"{c.get('failed', 0)} failed, {c.get('skipped', 0)} done earlier in {ev.seconds:.1f} s")
            if d.get("sequence"):
                line += f" -> {d['sequence']} ({d.get('tracks', 0)} track(s))"
            print(line, file=sys.stderr)
            for path in d.get("amass", []):
                print(f"amass: {path}", file=sys.stderr)

    def write(self, line: str) -> None:
        self.tqdm.write(line, file=sys.stderr)


def _fail(args, code: int, message: str, kind: str = "usage") -> int:
    return fail_before_job(args, code, message, kind, job="sequence")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..assets import MissingAssetError
    from ..body.smplx_layer import ModelFileError
    from ..checkpoint import CheckpointError
    from ..config import CropConfig, PixieConfig
    from ..jobs.frames import ClipError, open_clip
    from ..jobs.sequence import SequenceJob, SequenceOptions
    from ..runtime.engine import Engine
    from ..sequence.tracker import TrackerConfig

    try:
        _check_args(args)
        boxes = read_boxes(args.boxes) if args.boxes else None
    except UsageError as e:
        return _fail(args, EXIT_USAGE, str(e))
    try:
        clip = open_clip(args.input, fps=args.fps, name=args.name, max_pixels=int(args.max_megapixels * 1e6))
    except ClipError as e:
        return _fail(args, EXIT_USAGE if e.code == "usage" else 1, str(e), e.code)
    try:
        given = frame_boxes(boxes, clip) if boxes is not None else None
    except UsageError as e:
        return _fail(args, EXIT_USAGE, str(e))
    config = PixieConfig(crop=CropConfig(part_convention=args.part_crop_convention), device=args.device,
                         precision=args.precision, speed=args.speed, compile=args.compile)
    try:
        engine = Engine.from_data_dir(args.data_dir, config, trust_checkpoint=args.trust_checkpoint)
    except (MissingAssetError, CheckpointError, ModelFileError) as e:
        return _fail(args, 1, str(e), "model_files")
    options = SequenceOptions(
        out_dir=args.out, batch_size=batch_size_for(engine, args.batch_size), resume=args.resume,
        detector=args.detector, boxes=given,
        proposals=args.proposals, tracker=replace(TrackerConfig(), max_age=args.track_memory),
        focal_px=args.focal_length, min_track_frames=args.min_track_frames, amass=args.amass,
        smoothing=args.smoothing, prefetch=args.prefetch, workers=args.workers, lock_wait=args.lock_timeout)
    job = SequenceJob(engine, clip, options)
    show = (lambda ev: json_line(ev.to_dict())) if args.json else Printer()
    for event in job.run():
        show(event)
    return job.finished.exit_code
