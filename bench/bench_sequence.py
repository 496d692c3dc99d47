"""Sequence-job benchmark: frames/s end to end on a synthetic clip, with the per-stage split, and
whether decoding and detection overlap with the networks.

    .venv/bin/python bench/bench_sequence.py [--frames 300] [--device cpu] [--detector mediapipe]
                                             [--threads N] [--runs prefetch8 prefetch1 serial]

Uses the full-size networks with random weights and the full-size synthetic body (written once to
build/bench-data, as bench_backend.py does; no licensed files), and the synthetic ``walk`` clip
(one person walking, 640x360, 30 fps) written once as an MJPG video to build/bench-clip. The
sequence job runs on the video three times in one process, side by side:

* ``prefetch, batch 8``: the default: decoding, detection and cropping on their own threads ahead
  of the networks, batches of 8 persons spanning frames;
* ``prefetch, batch 1``: the same overlap without batching across frames;
* ``serial``: ``prefetch=False``: decode, detect, crop, networks, track, commit, one frame after
  the other (each frame its own batch).

Per run it prints frames/s (the frames stage: first frame started to last frame committed), the
seconds per frame of each stage (summed over frames from the job's own ``item_done`` timings), and
their sum against the wall time per frame: a sum above the wall time is work that overlapped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

STAGES = ("decode", "detect", "crop", "model", "proposals", "write", "track")


def ensure_data(path: Path) -> Path:
    from pixie_backend.synthetic_assets import write_synthetic_data

    if not (path / "pixie_model.tar").is_file():
        print(f"writing full-size synthetic assets to {path} (once)...", flush=True)
        write_synthetic_data(path, body="full", net="full", seed=0, force=True)
    return path


def ensure_clip(data: Path, frames: int, out: Path) -> Path:
    """The walk clip as an MJPG video (rendered once per frame count)."""
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.sequence.synthetic_clip import make_clip

    video = out / f"walk_{frames}.avi"
    if not video.is_file():
        print(f"rendering the {frames}-frame synthetic clip to {video} (once)...", flush=True)
        t0 = time.perf_counter()
        body = PixieSMPLX.from_files(data / "SMPLX_NEUTRAL_2020.npz", data / "smplx_extra_joints.yaml",
                                     data / "SMPLX_to_J14.pkl")
        clip = make_clip(body, "walk", num_frames=frames, seed=0)
        clip.write_video(video)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    return video


def run(engine, video: Path, label: str, **options) -> dict:
    from pixie_backend.jobs.sequence import SequenceJob, SequenceOptions

    with tempfile.TemporaryDirectory() as tmp:
        job = SequenceJob(engine, video, SequenceOptions(tmp, **options))
        t_first = t_last = None
        stages = dict.fromkeys(STAGES, 0.0)
        frames = persons = proposals = 0
        statuses: dict[str, int] = {}
        t0 = time.perf_counter()
        for ev in job.run():
            if ev.kind == "started":
                t_first = time.perf_counter()
            elif ev.kind == "item_done":
                t_last = time.perf_counter()
                frames += 1
                persons += ev.details["persons"]
                proposals += ev.details["proposals"]
                statuses[ev.details["status"]] = statuses.get(ev.details["status"], 0) + 1
                for k, v in ev.details["timings"].items():
                    if k in stages:
                        stages[k] += v
            elif ev.kind == "item_error":
                t_last = time.perf_counter()
                frames += 1
                statuses["error"] = statuses.get("error", 0) + 1
        total = time.perf_counter() - t0
        assert job.finished.exit_code == 0, job.finished.to_json()
    wall = t_last - t_first
    return {"label": label, "frames": frames, "wall": wall, "total": total, "stages": stages, "persons": persons,
            "proposals": proposals, "statuses": statuses}


def main() -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--detector", default="mediapipe")
    p.add_argument("--data", type=Path, default=ROOT / "build" / "bench-data")
    p.add_argument("--clip-dir", type=Path, default=ROOT / "build" / "bench-clip")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's, one per core); 1 leaves a core to decoding and detection")
    p.add_argument("--runs", nargs="+", default=["prefetch8", "prefetch1", "serial"],
                   choices=["prefetch8", "prefetch1", "serial", "prefetch64"])
    args = p.parse_args()

    from pixie_backend.config import PixieConfig
    from pixie_backend.runtime.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    data = ensure_data(args.data)
    args.clip_dir.mkdir(parents=True, exist_ok=True)
    video = ensure_clip(data, args.frames, args.clip_dir)
    engine = Engine.from_data_dir(data, PixieConfig(device=args.device, precision=args.precision, speed="fast"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores (load average "
          f"{load:.1f}), device {engine.device}, {args.frames}-frame walk clip (640x360 MJPG), detector "
          f"{args.detector}", flush=True)
    configs = {
        "prefetch8": ("prefetch, batch 8", {"batch_size": 8}),
        "prefetch64": ("prefetch, batch 64", {"batch_size": 64}),
        "prefetch1": ("prefetch, batch 1", {"batch_size": 1}),
        "serial": ("serial (no prefetch)", {"batch_size": 1, "prefetch": False}),
    }
    results = []
    for name in args.runs:
        label, opts = configs[name]
        print(f"running: {label} ...", flush=True)
        r = run(engine, video, label, detector=args.detector, **opts)
        results.append(r)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"  {r['frames'] / r['wall']:.3f} frames/s, {r['wall']:.1f} s, statuses {r['statuses']}, "
              f"{r['persons']} persons, {r['proposals']} proposals (load average {load:.1f})", flush=True)

    print()
    head = "| stage, ms per frame | " + " | ".join(r["label"] for r in results) + " |"
    print(head)
    print("|---" * (len(results) + 1) + "|")
    for s in STAGES:
        print(f"| {s} | " + " | ".join(f"{1000 * r['stages'][s] / r['frames']:.0f}" for r in results) + " |")
    print("| **sum of stages** | " + " | ".join(
        f"{1000 * sum(r['stages'].values()) / r['frames']:.0f}" for r in results) + " |")
    print("| **wall time** | " + " | ".join(f"{1000 * r['wall'] / r['frames']:.0f}" for r in results) + " |")
    print("| **frames/s** | " + " | ".join(f"{r['frames'] / r['wall']:.2f}" for r in results) + " |")
    print("\nmodel: each frame's share of its batch's network time; decode: reading the video (reader thread);")
    print("detect, crop: the preparation thread; write: the frame's commit; track: the tracker.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
