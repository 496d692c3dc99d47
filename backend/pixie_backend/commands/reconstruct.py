"""``pixie-backend reconstruct``: images, folders and globs in; result files out.

Exit codes: 0 every image succeeded; 3 some images failed (the others were written);
1 nothing could be processed (no inputs, missing model files, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_PARTIAL = 3


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("reconstruct", help="reconstruct every person in the given images",
                       description="Reconstruct every person in the given images into result files "
                                   "(<name>.pixie.npz, see docs/result-format.md) and quick-look OBJs.")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns (quote globs)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--data-dir", help="model data folder (default: $PIXIE_DATA_DIR, then the user folder)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="encoder precision; bf16/fp16 autocast applies on CUDA only (default: fp32)")
    p.add_argument("--speed", choices=("exact", "fast"), default="fast",
                   help="fast: batch norm folded into the convolutions and channels-last encoders "
                        "(15-20%% faster; differs from exact by float rounding); exact: the float order "
                        "closest to upstream PIXIE, as the Python API uses by default (default: fast)")
    p.add_argument("--batch-size", type=int, default=8, help="persons per network batch (default: 8)")
    p.add_argument("--detector", choices=("auto", "mediapipe", "opencv", "none"), default="auto",
                   help="person detector; 'none' treats each image as a person crop (default: auto)")
    p.add_argument("--boxes", help="JSON file {image file name or path: [[x1, y1, x2, y2], ...]}; "
                                   "listed images use these boxes instead of the detector")
    p.add_argument("--part-crop-convention", choices=("kornia_legacy", "kornia09"), default="kornia_legacy",
                   help="pixel convention of the head/hand crops (see README: Fidelity)")
    p.add_argument("--obj", action=argparse.BooleanOptionalAction, default=True,
                   help="also write <name>_p<k>.obj quick-look meshes (default: on)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip images whose result file is already complete (default: on)")
    p.add_argument("--max-megapixels", type=float, default=100.0, help="refuse larger images (default: 100)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of pixie_model.tar if the safe loader refuses it")
    p.add_argument("--json-progress", action="store_true",
                   help="print one JSON object per image on stdout (for the Blender add-on)")
    p.set_defaults(func=run)
    return p


def _emit(args, record: dict, line: str) -> None:
    from tqdm import tqdm

    if args.json_progress:
        print(json.dumps(record), flush=True)
    else:
        tqdm.write(line, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..assets import MissingAssetError
    from ..body.smplx_layer import ModelFileError
    from ..checkpoint import CheckpointError
    from ..config import CropConfig, PixieConfig
    from ..export.writer import ResultWriter, is_complete_result, output_names
    from ..pipeline import Pixie, gather_images
    from ..preprocess.detector import DetectorUnavailable

    paths, problems = gather_images(args.inputs)
    for msg in problems:
        print(f"warning: {msg}", file=sys.stderr)
    if not paths:
        print("error: no input images", file=sys.stderr)
        return 1
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: CUDA was requested but this torch build has no usable GPU "
              f"(torch {torch.__version__}); use --device cpu", file=sys.stderr)
        return 1
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 1
    boxes_by_key = _read_boxes(args.boxes) if args.boxes else {}
    config = PixieConfig(crop=CropConfig(part_convention=args.part_crop_convention), device=device,
                         precision=args.precision, speed=args.speed)
    try:
        pixie = Pixie(args.data_dir, config, detector=args.detector, trust_checkpoint=args.trust_checkpoint)
        writer = ResultWriter(pixie, args.out, write_objs=args.obj)
    except (MissingAssetError, CheckpointError, ModelFileError, DetectorUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if writer.synthetic:
        print("NOTE: the data folder holds SYNTHETIC assets (random weights): the output is not a "
              "reconstruction.", file=sys.stderr)

    names = output_names(paths)
    todo = []
    skipped = 0
    for path, name in zip(paths, names, strict=True):
        if args.resume and is_complete_result(writer.result_path(name)):
            skipped += 1
            _emit(args, {"image": str(path), "status": "skipped", "result": str(writer.result_path(name))},
                  f"skip   {path} (result exists)")
            continue
        todo.append((path, name))
    boxes = [boxes_by_key.get(str(p), boxes_by_key.get(p.name)) for p, _ in todo] if boxes_by_key else None

    ok = failed = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", disable=args.json_progress or not todo, file=sys.stderr)
    try:
        for r in pixie.iter_predict([p for p, _ in todo], boxes, batch_size=args.batch_size,
                                    max_pixels=int(args.max_megapixels * 1e6)):
            path, name = todo[r.index]
            record = {"image": str(path), "index": r.index, "status": r.status}
            if r.ok:
                try:
                    files = writer.write(r, name)
                except OSError as e:
                    r.status, r.message = "error", f"could not write the result: {e}"
                else:
                    record.update(persons=len(r.persons), result=str(files[0]),
                                  timings={k: round(v, 4) for k, v in r.timings.items()})
                    ok += 1
                    _emit(args, record, f"ok     {path}: {len(r.persons)} person(s) -> {files[0]}")
            if not r.ok:
                failed += 1
                record.update(status="error", message=r.message)
                _emit(args, record, f"ERROR  {r.message}")
            writer.log_status(record)
            bar.update(1)
    finally:
        bar.close()
        pixie.close()
    dt = time.perf_counter() - t0
    summary = {"summary": True, "ok": ok, "failed": failed, "skipped": skipped, "seconds": round(dt, 2),
               "out": str(Path(args.out))}
    if args.json_progress:
        print(json.dumps(summary), flush=True)
    else:
        print(f"done: {ok} ok, {failed} failed, {skipped} skipped in {dt:.1f} s -> {args.out}", file=sys.stderr)
    if failed and not ok and not skipped:
        return 1
    return EXIT_PARTIAL if failed else 0


def _read_boxes(path: str) -> dict[str, list[list[float]]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"error: {path} must hold a JSON object {{image: [[x1, y1, x2, y2], ...]}}")
    return {str(k): v for k, v in data.items()}
