"""Backend benchmark: per-stage times and images/s, batched, against a sequential batch-1 loop.

    .venv/bin/python bench/bench_backend.py [--device cpu|cuda] [--batches 1 8 32 64] [--images 64]

Uses the full-size networks with random weights and the full-size synthetic body (written once to
build/bench-data; no licensed files). Prints one table per device/precision:

* stages: person detection, body crops (224 + 1024), body encoder, part crops, head encoder, hand
  encoder (both hands), heads (regressors/extractors/moderators), SMPL-X (two evaluations);
* end to end: images/s through ``Pixie.predict`` (load, detect, crop, networks) with people from
  several images batched together;
* baseline: the official way — one image at a time, scikit-image crops, batch-1 networks without
  channels-last — measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from pixie_backend.config import PixieConfig  # noqa: E402
from pixie_backend.pipeline import Pixie  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeat: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ensure_data(path: Path) -> Path:
    from pixie_backend.synthetic_assets import write_synthetic_data

    if not (path / "pixie_model.tar").is_file() or not (path / "deca_model.tar").is_file():  # face files too
        print(f"writing full-size synthetic assets to {path} (once)...", flush=True)
        write_synthetic_data(path, body="full", net="full", seed=0, force=True)
    return path


def stage_table(pixie: Pixie, image: np.ndarray, batch: int) -> dict[str, float]:
    """Seconds per batch for each stage."""
    model, dev = pixie.model, pixie.device
    net = model.net
    prep = pixie.prepare(image)
    x = prep.image.repeat(batch, 1, 1, 1).to(dev)
    xh = prep.image_hd.repeat(batch, 1, 1, 1).to(dev)
    out = {}
    out["detect"] = timeit(lambda: pixie.detector.detect(_loaded(image)), torch.device("cpu"), 3) * batch
    out["body crops"] = timeit(lambda: pixie.prepare(image, boxes=[prep.result.persons[0].box]),
                               torch.device("cpu"), 3) * batch
    with torch.inference_mode():  # the caller chooses inference mode (the model does not)
        out["body encoder"] = timeit(lambda: model._encode_images("Encoder_body", x), dev)
        raw, _, crops = model.encode(x, xh)
        centers, sides = crops.centers.to(dev), crops.sides.to(dev)
        from pixie_backend.preprocess.crop import crop_parts

        out["part crops"] = timeit(lambda: crop_parts(xh, centers, sides, 224), dev)
        head = crops.head.to(dev)
        hands = torch.cat([crops.left_hand, crops.right_hand]).to(dev)
        out["head encoder"] = timeit(lambda: model._encode_images("Encoder_head", head), dev)
        out["hand encoder"] = timeit(lambda: model._encode_images("Encoder_hand", hands), dev)
        f = torch.randn(batch, model.cfg.net.feature_dim, device=dev)

        def heads():
            for key in ("Extractor_head_share", "Extractor_left_hand_share", "Extractor_right_hand_share",
                        "Regressor_body", "Regressor_head_share", "Regressor_head", "Regressor_head_share"):
                net.submodule(key)(f)
            f2 = torch.cat([f, f])
            for key in ("Regressor_hand_share", "Regressor_hand_share", "Regressor_hand_share"):
                net.submodule(key)(f2)
            net.Moderator_head_share(f, f)
            net.Moderator_hand_share(f2, f2)

        out["heads"] = timeit(heads, dev)
        out["SMPL-X x2"] = timeit(lambda: (model.decode(raw, with_projection_only=True), model.decode(raw)), dev)
    return out


def _loaded(image):
    from pixie_backend.preprocess.image_io import from_array

    return from_array(image)


def end_to_end(pixie: Pixie, paths: list[Path], batch: int) -> float:
    """Images per second through Pixie.predict (files on disk, detector included)."""
    pixie.predict(paths[: min(len(paths), batch)], batch_size=batch)  # warm-up
    sync(pixie.device)
    t0 = time.perf_counter()
    res = pixie.predict(paths, batch_size=batch)
    sync(pixie.device)
    assert all(r.ok for r in res), [r.message for r in res if not r.ok]
    return len(paths) / (time.perf_counter() - t0)


def official_way(pixie: Pixie, paths: list[Path]) -> float:
    """Images per second the upstream way: one image at a time, scikit-image crops, batch 1."""
    from skimage.io import imread
    from skimage.transform import estimate_transform, warp

    model = pixie.model

    def one(path):
        image = imread(path)[:, :, :3] / 255.0
        det = pixie.detector.detect(_loaded((image * 255).astype(np.uint8)))
        left, top, right, bottom = det[0].box  # upstream keeps the first person only
        size = int(max(right - left, bottom - top) * 1.1)
        c = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
        src = np.array([[c[0] - size / 2, c[1] - size / 2], [c[0] - size / 2, c[1] + size / 2],
                        [c[0] + size / 2, c[1] - size / 2]])
        crops = []
        for s in (224, 1024):
            t = estimate_transform("similarity", src, np.array([[0, 0], [0, s - 1], [s - 1, 0]]))
            crops.append(torch.tensor(warp(image, t.inverse, output_shape=(s, s)).transpose(2, 0, 1)).float()[None])
        with torch.inference_mode():
            model(crops[0].to(pixie.device), crops[1].to(pixie.device))

    one(paths[0])
    sync(pixie.device)
    t0 = time.perf_counter()
    for p in paths:
        one(p)
    sync(pixie.device)
    return len(paths) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precisions", nargs="+", default=None, help="default: fp32 (CPU); fp32 bf16 (CUDA)")
    ap.add_argument("--speeds", nargs="+", default=["exact", "fast"], choices=["exact", "fast"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32, 64])
    ap.add_argument("--images", type=int, default=64, help="images for the end-to-end runs")
    ap.add_argument("--baseline-images", type=int, default=8)
    ap.add_argument("--data-dir", default=str(ROOT / "build" / "bench-data"))
    ap.add_argument("--no-stages", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    precisions = args.precisions or (["fp32", "bf16"] if device.type == "cuda" else ["fp32"])
    data = ensure_data(Path(args.data_dir))
    from skimage import data as skdata
    from skimage.io import imsave

    image = skdata.astronaut()
    tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-"))
    paths = []
    for i in range(max(args.images, max(args.batches))):
        p = tmp / f"img{i:03d}.png"
        imsave(p, image if i % 2 == 0 else image[:, ::-1].copy(), check_contrast=False)
        paths.append(p)
    cpu_info = f"{torch.get_num_threads()} threads"
    gpu_info = torch.cuda.get_device_name(0) if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, device {device} {gpu_info} ({cpu_info})")
    for precision, speed in [(p, s) for p in precisions for s in args.speeds]:
        pixie = Pixie(data, PixieConfig(device=str(device), precision=precision, speed=speed), detector="auto")
        print(f"\n## {device.type} {precision} speed={speed}  (detector: {pixie.detector.name})", flush=True)
        if not args.no_stages:
            print("\nper-stage time per image, ms (batch of B persons, divided by B)")
            rows = {b: stage_table(pixie, image, b) for b in args.batches}
            names = list(next(iter(rows.values())))
            print("| stage | " + " | ".join(f"B={b}" for b in args.batches) + " |")
            print("|---|" + "---|" * len(args.batches))
            for n in names:
                print(f"| {n} | " + " | ".join(f"{rows[b][n] / b * 1000:.1f}" for b in args.batches) + " |",
                      flush=True)
        print("\nend to end (files -> detection -> crops -> networks), images/s and s/image")
        print("| mode | images/s | s/image |")
        print("|---|---|---|")
        if speed == args.speeds[0]:
            base = official_way(pixie, paths[: args.baseline_images])
            print(f"| sequential batch-1 loop (official way, {speed}) | {base:.2f} | {1 / base:.3f} |", flush=True)
        for b in args.batches:
            n = max(args.images, b)
            ips = end_to_end(pixie, paths[:n], b)
            print(f"| Pixie.predict batch {b} | {ips:.2f} | {1 / ips:.3f} |", flush=True)
        if device.type == "cuda":
            print("\nnetwork throughput on pre-cropped batches (persons/s)")
            for b in (64, 128, 256):
                x = torch.rand(b, 3, 224, 224, device=device)
                xh = torch.rand(b, 3, 1024, 1024, device=device)
                dt = timeit(lambda px=pixie, a=x, ah=xh: px.predict_crops(a, ah), device, repeat=5)
                print(f"| crops batch {b} | {b / dt:.0f} persons/s |")
        pixie.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
