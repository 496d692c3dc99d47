"""``pixie-backend reconstruct``: images, folders and globs in; result files out.

A thin layer over :class:`~pixie_backend.jobs.reconstruct.ReconstructJob`: it checks the arguments,
loads the engine, runs the job and prints its events (a progress bar and one line per image, or
with ``--json`` the event protocol of ``docs/protocol.md``, one JSON object per line on stdout).

Exit codes: 0 every image done; 1 nothing was reconstructed (every image failed, model files
missing, the output became unwritable); 2 a bad argument or an unusable output folder; 3 some
images failed (the others were written); 4 another run kept the output folder busy past
``--lock-timeout``; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model_options import add_model_options, batch_size_for, check_model_args

EXIT_USAGE = 2

EPILOG = """\
exit codes:
  0 every image done (reconstructed now or by an earlier run), 1 nothing reconstructed (every image
  failed, or model files are missing), 2 bad argument or unusable output folder, 3 some images
  failed, 4 output folder busy (see --lock-timeout), 130 interrupted

resume:
  A rerun skips an image only if its files are intact and the image content, the settings (face
  appearance included), the detector, its boxes and the model files (the optional face files
  included) are all unchanged; anything else is recomputed.

face appearance:
  Each feature needs optional data files (see `pixie-backend doctor`); a feature whose files are
  missing is off, with one NOTE line, and the rest of the result is produced.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("reconstruct", help="reconstruct every person in the given images",
                       description="Reconstruct every person in the given images into result files "
                                   "(<name>.pixie.npz, see docs/result-format.md) and quick-look OBJs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns (quote globs)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--data-dir", help="model data folder (default: $PIXIE_DATA_DIR, then the user folder)")
    add_model_options(p)
    p.add_argument("--detector", choices=("auto", "mediapipe", "opencv", "none"), default="auto",
                   help="person detector; 'none' treats each image as a person crop (default: auto)")
    p.add_argument("--boxes", help="JSON file {image file name or path: [[x1, y1, x2, y2], ...]}; "
                                   "listed images use these boxes instead of the detector")
    p.add_argument("--part-crop-convention", choices=("kornia_legacy", "kornia09"), default="kornia_legacy",
                   help="pixel convention of the head/hand crops (see README: Fidelity)")
    p.add_argument("--obj", action=argparse.BooleanOptionalAction, default=True,
                   help="also write <name>_p<k>.obj quick-look meshes (default: on)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip images an earlier run finished with the same image, settings and model (default: on)")
    p.add_argument("--max-megapixels", type=float, default=100.0, help="refuse larger images (default: 100)")
    p.add_argument("--lock-timeout", type=float, default=None,
                   help="seconds to wait while another run writes to the output folder, then give up "
                        "(exit code 4); default: wait until it has finished")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of pixie_model.tar if the safe loader refuses it")
    p.add_argument("--json", "--json-progress", dest="json", action="store_true",
                   help="print the event protocol (docs/protocol.md) on stdout, one JSON object per line")
    face = p.add_argument_group("face appearance (each needs optional data files; see `pixie-backend doctor`)")
    face.add_argument("--albedo", action=argparse.BooleanOptionalAction, default=True,
                      help="FLAME albedo texture in the SMPL-X UV map (default: on)")
    face.add_argument("--texture-transfer", choices=("clean", "official"), default="clean",
                      help="clean: full-resolution albedo, bilinear; official: upstream's 256² nearest copy "
                           "(default: clean)")
    face.add_argument("--lit-texture", action="store_true", help="also the albedo shaded by PIXIE's SH lighting")
    face.add_argument("--photo-texture", action="store_true",
                      help="also the photo's visible face texels over the albedo")
    face.add_argument("--detail", action=argparse.BooleanOptionalAction, default=True,
                      help="DECA detail displacement and normal map (default: on)")
    face.add_argument("--detail-threshold", type=float, default=0.6,
                      help="head moderator weight above which details are computed, 0 to 1 "
                           "(default: 0.6, as upstream)")
    face.add_argument("--detail-condition", choices=("deca", "pixie"), default="deca",
                      help="expression and jaw for the detail decoder: DECA's own encoder or PIXIE's (default: deca)")
    p.set_defaults(func=run)
    return p


class UsageError(ValueError):
    """A bad argument: one sentence, exit code 2."""


def read_boxes(path: str) -> dict[str, list[list[float]]]:
    """``--boxes``: ``{image file name or path: [[x1, y1, x2, y2], ...]}``, every number checked."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--boxes: no such file {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--boxes: cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--boxes: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--boxes: {path} must hold a JSON object {{image: [[x1, y1, x2, y2], ...]}}")
    out = {}
    for key, boxes in data.items():
        ok = isinstance(boxes, list) and all(
            isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and v == v and abs(v) != float("inf") for v in b)
            for b in boxes)
        if not ok:
            raise UsageError(f"--boxes: the entry for {key!r} must be a list of [x1, y1, x2, y2] number lists")
        out[str(key)] = [[float(v) for v in b] for b in boxes]
    return out


def _check_args(args: argparse.Namespace) -> None:
    if not args.max_megapixels > 0 or args.max_megapixels == float("inf"):
        raise UsageError("--max-megapixels must be a number more than 0")
    if args.lock_timeout is not None and args.lock_timeout < 0:
        raise UsageError("--lock-timeout must be 0 or more")
    if not 0.0 <= args.detail_threshold <= 1.0:  # also refuses nan
        raise UsageError("--detail-threshold must be a number from 0 to 1 (the head moderator's weight)")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o/--out: {out} is a file; name a folder")
    try:
        check_model_args(args)
    except ValueError as e:
        raise UsageError(str(e)) from None


class Printer:
    """The events for a person at a terminal: a progress bar and one line per image, on stderr."""

    def __init__(self):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.bar = None

    def __call__(self, ev) -> None:
        kind = ev.kind
        if kind == "started":
            self.bar = self.tqdm(total=ev.total, unit="img", file=sys.stderr, disable=not ev.total)
        elif kind == "message":
            self.write(("warning: " if ev.level == "warning" else "NOTE: ") + ev.text)
        elif kind == "item_done":
            d = ev.details
            if ev.resumed:
                self.write(f"skip   {d['source']} (done by an earlier run: {Path(d['result']).name})")
            else:
                self.write(f"ok     {d['source']}: {d['persons']} person(s) -> {d['result']}")
            self.step()
        elif kind == "item_error":
            self.write(f"ERROR  {ev.message}")
            self.step()
        elif kind == "finished":
            if self.bar is not None:
                self.bar.close()
            c = ev.counts
            if ev.error and ev.status != "partial" and ev.error.get("code") != "all_failed":
                print(f"error: {ev.error['message']}", file=sys.stderr)
            print(f"done: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('skipped', 0)} skipped "
                  f"in {ev.seconds:.1f} s -> {ev.details.get('out')}", file=sys.stderr)

    def write(self, line: str) -> None:
        self.tqdm.write(line, file=sys.stderr)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)


def json_line(record: dict) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


def fail_before_job(args, code: int, message: str, kind: str = "usage", job: str = "reconstruct") -> int:
    """A run that stops before its job starts: one line (and, with --json, a lone ``finished`` record
    of the ``job`` kind)."""
    print(f"error: {message}", file=sys.stderr)
    if args.json:
        from ..jobs.events import Emitter, Finished

        json_line(Emitter(job).make(Finished, status="failed", exit_code=code,
                                    error={"code": kind, "message": message}).to_dict())
    return code


def run(args: argparse.Namespace) -> int:
    from ..assets import MissingAssetError
    from ..body.smplx_layer import ModelFileError
    from ..checkpoint import CheckpointError
    from ..config import AppearanceConfig, CropConfig, PixieConfig
    from ..jobs.reconstruct import ReconstructJob, ReconstructOptions
    from ..jobs.sources import gather_sources
    from ..runtime.engine import Engine

    try:
        _check_args(args)
        boxes = read_boxes(args.boxes) if args.boxes else {}
    except UsageError as e:
        return fail_before_job(args, EXIT_USAGE, str(e))

    sources, notes = gather_sources(args.inputs)
    if not any(s.problem is None for s in sources):
        for s in sources:
            print(f"warning: {s.problem[1]}", file=sys.stderr)
        return fail_before_job(args, 1, "no input images", "no_input")
    if boxes:
        sources = [s.with_boxes(boxes.get(str(s.path), boxes.get(s.path.name)))
                   if s.path is not None and s.problem is None else s for s in sources]
    appearance = AppearanceConfig(albedo=args.albedo, transfer=args.texture_transfer, lit_texture=args.lit_texture,
                                  photo_texture=args.photo_texture, detail=args.detail,
                                  detail_threshold=args.detail_threshold, detail_condition=args.detail_condition)
    config = PixieConfig(crop=CropConfig(part_convention=args.part_crop_convention), device=args.device,
                         precision=args.precision, speed=args.speed, compile=args.compile, appearance=appearance)
    try:
        engine = Engine.from_data_dir(args.data_dir, config, trust_checkpoint=args.trust_checkpoint)
    except (MissingAssetError, CheckpointError, ModelFileError) as e:
        return fail_before_job(args, 1, str(e), "model_files")

    batch_size = batch_size_for(engine, args.batch_size)
    options = ReconstructOptions(out_dir=args.out, batch_size=batch_size, write_objs=args.obj,
                                 resume=args.resume, max_pixels=int(args.max_megapixels * 1e6),
                                 detector=args.detector, lock_wait=args.lock_timeout,
                                 prepare_workers=args.workers)
    job = ReconstructJob(engine, sources, options, notes=notes)
    show = (lambda ev: json_line(ev.to_dict())) if args.json else Printer()
    for event in job.run():
        show(event)
    return job.finished.exit_code
