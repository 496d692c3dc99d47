"""Benchmark: Reconstruct from Image, click to avatar, and the service's throughput.

    .venv/bin/python bench/bench_service.py --data-dir synthetic-full     # made with make-synthetic (full)
    .venv/bin/python bench/bench_service.py                               # makes it (about 3 minutes)

1. **Click to avatar** (headless Blender, the add-on enabled from this repository, Backend Python
   = this interpreter): the operator's path, ``start_task`` + ``pump`` until the avatars are in the
   scene. *Cold*: the first click starts the backend and loads the model; *warm*: later clicks
   (another photo each) on the running backend. Split into backend start + model load, the job on
   the service (detection, crops, networks, writing), fetching the result and the model package,
   and building the avatars.
2. **Throughput**: one service (batched engine), 8 clients that each send one photo at the same
   time, against the same 8 photos as 8 sequential single calls (submit, wait, fetch, next), and a
   direct ``Pixie.predict`` per photo in this process for the network time.

Full-size synthetic assets (the released network widths with random weights, the 10,475-vertex
mannequin), the CPU, scikit-image's astronaut in 8 crops (one person each), mediapipe detection.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def photos(folder: Path, n: int = 8) -> list[Path]:
    import numpy as np
    from PIL import Image
    from skimage import data

    a = data.astronaut()
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        y, x = rng.integers(0, 60, size=2)
        crop = a[y : y + 450, x : x + 440][:, :: (1 if i % 2 else -1)]
        p = folder / f"photo{i}.jpg"
        Image.fromarray(np.ascontiguousarray(crop)).save(p, quality=92)
        out.append(p)
    return out


def ensure_data(data_dir: Path | None, tmp: Path) -> Path:
    if data_dir is not None:
        return data_dir
    d = tmp / "synthetic-full"
    print("making full-size synthetic assets (about 3 minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "pixie_backend", "make-synthetic", "--out", str(d)], check=True)
    return d


# --------------------------------------------------------------------------------------------------


def click_to_avatar(data_dir: Path, images: list[Path], tmp: Path, warm_clicks: int) -> list[dict]:
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "blender-user")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
    import addon_utils

    addon_utils.enable("pixie_blender", default_set=True)
    from pixie_blender.operators import backend as bops
    from pixie_blender.operators import reconstruct as rec

    prefs = bops.addon_preferences(bpy.context)
    prefs.backend_python, prefs.data_dir, prefs.backend_device = sys.executable, str(data_dir), "CPU"
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp / "bench.blend"))
    rows = []
    try:
        for i, image in enumerate(images[: 1 + warm_clicks]):
            t0 = time.perf_counter()
            task = rec.start_task(bpy.context, [str(image)])
            marks: dict[str, float] = {}
            while not rec.pump():
                state = task.progress.state
                if state not in marks:
                    marks[state] = time.perf_counter() - t0
                time.sleep(0.005)
            total = time.perf_counter() - t0
            level, text = rec.STATE.report
            assert level == "INFO", text
            p = rec.STATE.last
            running = marks.get("running", 0.0)
            rows.append(
                {
                    "click": "cold" if i == 0 else "warm",
                    "total": total,
                    "until_running": running,
                    "job": p.job_seconds or 0.0,
                    "model": p.timings.get("model", 0.0),
                    "rest": total - running - (p.job_seconds or 0.0),
                    "text": text,
                }
            )
    finally:
        addon_utils.disable("pixie_blender", default_set=True)
    return rows


# --------------------------------------------------------------------------------------------------


def throughput(data_dir: Path, images: list[Path], tmp: Path) -> dict:
    from pixie_blender.client.service_client import ServiceClient
    from tests.support.service import start_server

    s = start_server(data_dir, "--device", "cpu", stderr_path=tmp / "serve.txt", timeout=300)
    try:
        client = ServiceClient(s.url, s.token, timeout=600, stream_timeout=600)
        while client.health()["model"]["state"] == "loading":
            time.sleep(0.2)
        blobs = [(p.name, p.read_bytes()) for p in images]

        def one(item) -> float:
            t0 = time.perf_counter()
            c = ServiceClient(s.url, s.token, timeout=600, stream_timeout=600)
            job = c.submit_reconstruct([item])
            evs = list(c.events(job["id"]))
            assert evs[-1]["status"] == "ok", evs[-1]
            c.download_file(job["id"], f"{Path(item[0]).stem}.pixie.npz", tmp / "dl" / item[0])
            c.delete(job["id"])
            return time.perf_counter() - t0

        one(blobs[0])  # warm-up: first batch, package written once
        t0 = time.perf_counter()
        seq = [one(b) for b in blobs]
        t_seq = time.perf_counter() - t0
        before = client.health()["model"]["batches"]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(blobs)) as pool:
            par = list(pool.map(one, blobs))
        t_par = time.perf_counter() - t0
        after = client.health()["model"]["batches"]
    finally:
        s.stop()
    return {
        "sequential_s": t_seq,
        "sequential_each": statistics.median(seq),
        "concurrent_s": t_par,
        "concurrent_each": statistics.median(par),
        "batches": after["run"] - before["run"],
        "largest": after["largest"],
        "n": len(blobs),
    }


def direct(data_dir: Path, images: list[Path]) -> float:
    from pixie_backend.config import PixieConfig
    from pixie_backend.pipeline import Pixie

    pixie = Pixie(data_dir, PixieConfig(device="cpu", speed="fast"))
    pixie.predict([images[0]])
    t0 = time.perf_counter()
    for p in images:
        [r] = pixie.predict([p])
        assert r.ok, r.message
    return (time.perf_counter() - t0) / len(images)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, help="full-size synthetic (or real) model files")
    ap.add_argument("--warm-clicks", type=int, default=3)
    ap.add_argument("--skip-click", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-service-"))
    data_dir = ensure_data(args.data_dir, tmp)
    images = photos(tmp / "photos")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; data {data_dir}")
    if not args.skip_click:
        rows = click_to_avatar(data_dir, images, tmp, args.warm_clicks)
        print(
            "\nclick -> avatar in the scene (s); 'until running': backend start, model load, upload; "
            "'job': on the backend (detection, crops, networks, writing), of which 'networks'; "
            "'rest': fetching the result (and the model package once) and building the avatar"
        )
        print(f"{'click':<6} {'total':>7} {'until running':>14} {'job':>7} {'networks':>9} {'rest':>7}")
        for r in rows:
            print(
                f"{r['click']:<6} {r['total']:7.2f} {r['until_running']:14.2f} {r['job']:7.2f} {r['model']:9.2f} "
                f"{r['rest']:7.2f}"
            )
    if not args.skip_throughput:
        net = direct(data_dir, images)
        t = throughput(data_dir, images, tmp)
        n = t["n"]
        print(f"\nthroughput, {n} photos of one person each")
        print(f"{'':<34} {'wall s':>7} {'photos/s':>9} {'s per call (median)':>20}")
        print(
            f"{'8 sequential single calls':<34} {t['sequential_s']:7.2f} {n / t['sequential_s']:9.2f} "
            f"{t['sequential_each']:20.2f}"
        )
        print(
            f"{'8 concurrent clients':<34} {t['concurrent_s']:7.2f} {n / t['concurrent_s']:9.2f} "
            f"{t['concurrent_each']:20.2f}"
        )
        print(f"{'direct Pixie.predict (in process)':<34} {net * n:7.2f} {1 / net:9.2f} {net:20.2f}")
        print(f"concurrent: {t['batches']} batches for {n} persons (largest {t['largest']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
