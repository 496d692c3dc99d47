"""Backend benchmark: the official way against each mode, side by side in one run.

    .venv/bin/python bench/bench_backend.py                    # CPU: official, exact, fast, bf16
    .venv/bin/python bench/bench_backend.py --device cuda      # + the GPU tables
    .venv/bin/python bench/bench_backend.py --sections model stages --rounds 5

Full-size networks with random weights and the full-size synthetic body (written once to
build/bench-data; no licensed files), scikit-image's astronaut photo. One network is loaded and
shared by every mode; every table is measured in interleaved rounds (each round runs each entry
once), so a load on a shared machine hits all entries alike; it prints the median and the range
over the rounds, and ratios of medians.

Modes: ``exact`` (fp32, encoders as loaded), ``fast`` (fp32, batch norm folded, channels-last),
``bf16`` (fast, encoders in bf16 after their first convolution), ``exact-bf16`` (exact with
``torch.autocast``), ``fp16``, ``auto`` (what ``--precision auto`` picks here, fast), and
``fast-compile``, ``bf16-compile``, ``auto-compile`` (the same with ``--compile default``:
``torch.compile`` of the encoders; the warm-up round pays the compilation, once per batch shape).
The official way is upstream's: one image at a time, batch 1, fp32, the encoders as loaded.

Sections:

* ``model``: the model part per person (body crops in, decoded SMPL-X out): the official way
  against each mode at each batch size;
* ``stages``: the per-stage split of each mode at ``--stage-batch``;
* ``e2e``: end to end from image files (load, detect, crop, networks): the official loop
  (scikit-image crops, batch 1) against ``Pixie.predict`` in each mode;
* ``gpu`` (CUDA only): networks-only persons/s at batch 64-512 in fp32 and bf16, and end to end
  from JPEG files with the GPU's utilisation sampled during the run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from pixie_backend.config import PixieConfig  # noqa: E402
from pixie_backend.model import PixieModel  # noqa: E402
from pixie_backend.pipeline import Pixie  # noqa: E402
from pixie_backend.runtime.engine import Engine, ModelFiles  # noqa: E402

MODES = {  # name: (speed, precision, compile)
    "exact": ("exact", "fp32", "off"),
    "fast": ("fast", "fp32", "off"),
    "bf16": ("fast", "bf16", "off"),
    "exact-bf16": ("exact", "bf16", "off"),
    "fp16": ("fast", "fp16", "off"),
    "auto": ("fast", "auto", "off"),
    "fast-compile": ("fast", "fp32", "default"),
    "bf16-compile": ("fast", "bf16", "default"),
    "auto-compile": ("fast", "auto", "default"),
}


# ---------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def interleaved(entries: dict[str, Callable[[], object]], rounds: int, device: torch.device,
                per: dict[str, int] | None = None, warmup: int = 1, label: str = "") -> dict[str, list[float]]:
    """Seconds (divided by ``per[name]``) of each entry in each round; entries alternate within a round."""
    per = per or {}
    first: dict[str, float] = {}
    for w in range(warmup):
        for k, fn in entries.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            if w == 0:
                first[k] = time.perf_counter() - t0
    if label and first and max(first.values()) > 5.0:  # a compilation (or a cold start) worth naming
        print(f"  [{label}] first call (warm-up, not counted), s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in first.items()), file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {k: [] for k in entries}
    for r in range(rounds):
        for k, fn in entries.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append((time.perf_counter() - t0) / per.get(k, 1))
        if label:
            print(f"  [{label}] round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def med(v: list[float]) -> float:
    return statistics.median(v)


def spread(v: list[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    """``median (min-max)``."""
    return f"{fmt.format(med(v) * scale)} ({fmt.format(min(v) * scale)}-{fmt.format(max(v) * scale)})"


# ---------------------------------------------------------------------- set-up
def ensure_data(path: Path, face: bool = True) -> Path:
    """The full-size synthetic folder (``face``: with the face-appearance files, which this script's
    own tables do not use: they time PIXIE's networks; ``bench_appearance.py`` needs them)."""
    from pixie_backend.synthetic_assets import write_synthetic_data

    if not (path / "pixie_model.tar").is_file() or (face and not (path / "deca_model.tar").is_file()):
        print(f"writing full-size synthetic assets to {path} (once, a few minutes)...", file=sys.stderr, flush=True)
        write_synthetic_data(path, body="full", net="full", seed=0, force=True)
    return path


def build_engines(data: Path, device: str, modes: list[str], dtype: str = "float32") -> dict[str, Engine]:
    """One engine per mode, all sharing one loaded network and body model."""
    from pixie_backend.assets import DataFolder
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.checkpoint import load_pixie_net

    folder = DataFolder(data)
    files = ModelFiles(data_dir=folder.root, checkpoint=folder.require("pixie_model"),
                       smplx=folder.require("smplx_model"), extra_joints=folder.require("extra_joints"),
                       j14=folder.require("j14_regressor"), synthetic=folder.is_synthetic)
    net = load_pixie_net(files.checkpoint, device=device)
    smplx = PixieSMPLX.from_files(files.smplx, files.extra_joints, files.j14).to(device)
    engines = {}
    for m in modes:
        speed, precision, compile_mode = MODES[m]
        cfg = PixieConfig(device=device, speed=speed, precision=precision, dtype=dtype, compile=compile_mode)
        engines[m] = Engine(PixieModel(net, smplx, cfg), files)
    return engines


def person_crops(pixie: Pixie, image: np.ndarray, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n body crops (the astronaut and her mirror image, alternating), on the CPU."""
    a = pixie.prepare(image)
    b = pixie.prepare(np.ascontiguousarray(image[:, ::-1]))
    if not (a.result.ok and b.result.ok):
        raise SystemExit(f"the detector found no person in the benchmark photo: {a.result.message}")
    x = torch.cat([a.image[:1], b.image[:1]]).repeat((n + 1) // 2, 1, 1, 1)[:n]
    xh = torch.cat([a.image_hd[:1], b.image_hd[:1]]).repeat((n + 1) // 2, 1, 1, 1)[:n]
    return x, xh


def describe_machine(device: torch.device) -> str:
    from pixie_backend.runtime.device import bf16_support

    s = f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}"
    if device.type == "cuda":
        s += f" ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        s += f", CPU kernels {torch.backends.cpu.get_cpu_capability()}"
    return s + f"; bf16: {bf16_support(device).reason}"


# ---------------------------------------------------------------------- sections
def section_model(engines: dict[str, Engine], official: Engine, x, xh, batches: list[int], rounds: int) -> None:
    dev = official.device
    entries, per = {}, {}
    xd, xhd = x.to(dev), xh.to(dev)
    entries["official (exact fp32, B=1)"] = lambda: official.infer(xd[:1], xhd[:1])
    per["official (exact fp32, B=1)"] = 1
    for b in batches:
        for m, e in engines.items():
            k = f"{m} ({e.precision.precision}), B={b}"
            entries[k] = (lambda e=e, b=b: e.infer(xd[:b], xhd[:b]))
            per[k] = b
    t = interleaved(entries, rounds, dev, per, label="model part")
    base = med(t["official (exact fp32, B=1)"])
    print("\n### Model part: body crops -> decoded SMPL-X, s per person")
    print(f"({rounds} interleaved rounds: median (min-max); speed-up = official median / median)\n")
    print("| mode | s / person | speed-up vs official |")
    print("|---|---|---|")
    for k, v in t.items():
        print(f"| {k} | {spread(v)} | {base / med(v):.2f}x |", flush=True)


def stage_entries(engine: Engine, pixie_cpu: Pixie, image: np.ndarray, x, xh) -> tuple[dict, dict]:
    """Callables for each stage of one mode, on a batch of B persons (B = len(x))."""
    from pixie_backend.preprocess.crop import crop_parts, crop_squares, square_taps

    model, dev = engine.model, engine.device
    net = model.net
    b = x.shape[0]
    xd, xhd = x.to(dev), xh.to(dev)
    with torch.inference_mode():
        raw, _, crops = model.encode(xd, xhd)
    centers, sides = crops.centers, crops.sides
    head = crops.head
    hands = torch.cat([crops.left_hand.flip(-1), crops.right_hand])
    f = torch.randn(b, model.cfg.net.feature_dim, device=dev)

    def heads():
        for key in ("Extractor_head_share", "Extractor_left_hand_share", "Extractor_right_hand_share",
                    "Regressor_body", "Regressor_head_share", "Regressor_head", "Regressor_head_share"):
            net.submodule(key)(f)
        f2 = torch.cat([f, f])
        for key in ("Regressor_hand_share", "Regressor_hand_share", "Regressor_hand_share"):
            net.submodule(key)(f2)
        net.Moderator_head_share(f, f)
        net.Moderator_hand_share(f2, f2)

    entries = {
        "body encoder (HRNet-W48)": lambda: model._encode_images("Encoder_body", xd),
        "part crops (grid_sample)": lambda: crop_parts(xhd, centers, sides, 224),
        "head encoder (ResNet-50)": lambda: model._encode_images("Encoder_head", head),
        "hand encoder (ResNet-50, both hands)": lambda: model._encode_images("Encoder_hand", hands),
        "heads (MLPs, moderators)": heads,
        "SMPL-X x2 (coarse + final)": lambda: (model.decode(raw, with_projection_only=True), model.decode(raw)),
    }
    if dev.type != "cpu":  # the body crops are cut on the device there
        prep = pixie_cpu.prepare(image)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(dev)
        c = prep.result.persons[0].center
        s = prep.result.persons[0].side
        cs = torch.tensor(np.repeat(c[None], b, 0)), torch.full((b,), float(s), dtype=torch.float64)
        entries["body crops on the device (224² + 1024²)"] = lambda: (
            crop_squares(pixels, square_taps(*cs, 224)), crop_squares(pixels, square_taps(*cs, 1024)))
    return entries, {k: b for k in entries}


def section_stages(engines: dict[str, Engine], pixie_cpu: Pixie, image: np.ndarray, x, xh, rounds: int) -> None:
    from pixie_backend.preprocess.image_io import from_array

    b = x.shape[0]
    dev = next(iter(engines.values())).device
    loaded = from_array(image)
    box = pixie_cpu.prepare(image).result.persons[0].box
    entries = {"person detection (mediapipe)": lambda: pixie_cpu.detector.detect(loaded),
               "body crops on the CPU (224² + 1024²)": lambda: pixie_cpu.prepare(image, boxes=[box])}
    per = {k: 1 for k in entries}
    names = list(entries)
    for m, e in engines.items():
        es, ps = stage_entries(e, pixie_cpu, image, x, xh)
        for k, fn in es.items():
            entries[f"{m}|{k}"] = fn
            per[f"{m}|{k}"] = ps[k]
            if k not in names:
                names.append(k)
    with torch.inference_mode():
        t = interleaved(entries, rounds, dev, per, label="stages")
    modes = list(engines)
    print(f"\n### Per-stage time, ms per person (batch of {b}, {rounds} interleaved rounds: median (min-max))\n")
    print("| stage | " + " | ".join(f"{m} ({engines[m].precision.precision})" for m in modes) + " |")
    print("|---|" + "---|" * len(modes))

    def cell(key):
        return spread(t[key], 1000, "{:.0f}") if key in t else "-"

    for n in names:
        if n in t:  # mode-independent stages
            print(f"| {n} | " + " | ".join(cell(n) for _ in modes) + " |")
        else:
            print(f"| {n} | " + " | ".join(cell(f"{m}|{n}") for m in modes) + " |")
    nets = ("body encoder (HRNet-W48)", "head encoder (ResNet-50)", "hand encoder (ResNet-50, both hands)")
    rest = ("part crops (grid_sample)", "heads (MLPs, moderators)", "SMPL-X x2 (coarse + final)")
    for title, keys in (("networks (3 encoders), s/person", nets), ("model part (sum of the stages), s/person",
                                                                    nets + rest)):
        row = []
        for m in modes:
            per_round = [sum(t[f"{m}|{k}"][r] for k in keys) for r in range(rounds)]
            row.append(spread(per_round))
        print(f"| **{title}** | " + " | ".join(row) + " |", flush=True)


def write_images(folder: Path, image: np.ndarray, n: int, ext: str = ".png") -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:04d}{ext}"
        Image.fromarray(image if i % 2 == 0 else np.ascontiguousarray(image[:, ::-1])).save(p, quality=95)
        paths.append(p)
    return paths


def official_loop(engine: Engine, detector, paths: list[Path]) -> None:
    """Upstream's way: one image at a time, scikit-image crops of the first person, batch 1."""
    from pixie_backend.preprocess.image_io import from_array
    from skimage.io import imread
    from skimage.transform import estimate_transform, warp

    for path in paths:
        image = imread(path)[:, :, :3] / 255.0
        det = detector.detect(from_array((image * 255).astype(np.uint8)))
        left, top, right, bottom = det[0].box
        size = int(max(right - left, bottom - top) * 1.1)
        c = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
        src = np.array([[c[0] - size / 2, c[1] - size / 2], [c[0] - size / 2, c[1] + size / 2],
                        [c[0] + size / 2, c[1] - size / 2]])
        crops = []
        for s in (224, 1024):
            t = estimate_transform("similarity", src, np.array([[0, 0], [0, s - 1], [s - 1, 0]]))
            crops.append(torch.tensor(warp(image, t.inverse, output_shape=(s, s)).transpose(2, 0, 1)).float()[None])
        engine.infer(crops[0], crops[1])


def section_e2e(engines: dict[str, Engine], official: Engine, pixie_cpu: Pixie, paths: list[Path],
                base_paths: list[Path], batch: int, rounds: int) -> None:
    dev = official.device
    pixies = {m: Pixie.from_model(e.model, detector="auto") for m, e in engines.items()}

    def run(p: Pixie):
        res = p.predict(paths, batch_size=batch)
        bad = [r.message for r in res if not r.ok]
        if bad:
            raise RuntimeError(bad[0])

    entries = {"official loop (scikit-image crops, exact fp32, B=1)": lambda: official_loop(official,
                                                                                            pixie_cpu.detector,
                                                                                            base_paths)}
    per = {next(iter(entries)): len(base_paths)}
    for m, p in pixies.items():
        k = f"Pixie.predict, {m} ({engines[m].precision.precision}), batch {batch}"
        entries[k] = (lambda p=p: run(p))
        per[k] = len(paths)
    t = interleaved(entries, rounds, dev, per, label="end to end")
    base = med(t[next(iter(entries))])
    print(f"\n### End to end from {paths[0].suffix} files (load, detect, crop, networks), s per image "
          f"({rounds} interleaved rounds: median (min-max))\n")
    print("| mode | s / image | images / s (median) | speed-up vs official |")
    print("|---|---|---|---|")
    for k, v in t.items():
        print(f"| {k} | {spread(v)} | {1 / med(v):.2f} | {base / med(v):.2f}x |", flush=True)
    for p in pixies.values():
        p.close()


class UtilisationSampler:
    """GPU utilisation (percent busy) sampled in a thread: ``torch.cuda.utilization`` (pynvml), else
    ``nvidia-smi``."""

    def __init__(self, device: torch.device, every: float = 0.1):
        self.device, self.every = device, every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.source = "torch.cuda.utilization"
        try:
            torch.cuda.utilization(device)
        except Exception:  # noqa: BLE001 - pynvml missing (or no CUDA): nvidia-smi instead
            self.source = "nvidia-smi" if device.type == "cuda" and shutil.which("nvidia-smi") else "none"

    def _read(self) -> float | None:
        if self.source == "torch.cuda.utilization":
            return float(torch.cuda.utilization(self.device))
        if self.source == "nvidia-smi":
            idx = str(self.device.index or 0)
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", idx], capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0])
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self._read()
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.every)

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def section_gpu(data: Path, device: torch.device, pixie_cpu: Pixie, image: np.ndarray, batches: list[int],
                files: int, rounds: int) -> None:
    from pixie_backend.jobs.sources import ImageSource

    engines = build_engines(data, str(device), ["fast", "bf16"])
    if device.type == "cpu":
        print("\n(the GPU tables on the CPU: a check of this script, not a measurement)")
    x, xh = person_crops(pixie_cpu, image, 2)
    print("\n### GPU: networks only (crops already on the device), persons/s "
          f"({rounds} rounds: median (min-max))\n")
    print("| batch | " + " | ".join(f"{m} ({e.precision.precision})" for m, e in engines.items()) + " |")
    print("|---|" + "---|" * len(engines))
    for b in batches:
        xd = x.to(device).repeat(b // 2, 1, 1, 1)
        xhd = xh.to(device).repeat(b // 2, 1, 1, 1)
        try:
            t = interleaved({m: (lambda e=e, a=xd, ah=xhd: e.infer_batch([(a, ah)])) for m, e in engines.items()},
                            rounds,
                            device, {m: b for m in engines})
        except torch.OutOfMemoryError:
            print(f"| {b} | out of memory |")
            break
        print(f"| {b} | " + " | ".join(f"{1 / med(v):.3g} ({1 / max(v):.3g}-{1 / min(v):.3g})"
                                       for v in t.values()) + " |", flush=True)
        del xd, xhd
        torch.cuda.empty_cache()
    tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-jpeg-"))
    try:
        paths = write_images(tmp, image, files, ".jpg")
        box = [list(map(float, pixie_cpu.prepare(image).result.persons[0].box))]
        mirrored = pixie_cpu.prepare(np.ascontiguousarray(image[:, ::-1])).result.persons[0].box
        boxes = [box if i % 2 == 0 else [list(map(float, mirrored))] for i in range(files)]
        print(f"\n### GPU: end to end from {files} JPEG files on disk ({image.shape[1]}x{image.shape[0]}, one "
              "person each): load, detect, crop on the device, networks, results back on the host\n")
        print("| mode | detection | batch | workers | images/s | GPU busy (mean) |")
        print("|---|---|---|---|---|---|")
        for m, e in engines.items():
            batch = e.suggest_batch_size(image_bytes=image.nbytes)
            for how in ("mediapipe", "given boxes"):
                pix = Pixie.from_model(e.model, detector="auto")
                srcs = [ImageSource.from_path(p, boxes=boxes[i] if how == "given boxes" else None)
                        for i, p in enumerate(paths)]
                pix.predict(srcs[: min(len(srcs), 2 * batch)], batch_size=batch)  # warm-up (detectors, kernels)
                sync(device)
                with UtilisationSampler(device) as util:
                    t0 = time.perf_counter()
                    res = pix.predict(srcs, batch_size=batch)
                    sync(device)
                    dt = time.perf_counter() - t0
                ok = sum(r.ok for r in res)
                busy = f"{util.mean:.0f} % ({util.source})" if util.mean is not None else "not available"
                print(f"| {m} ({e.precision.precision}) | {how} | {batch} | {pix.prepare_workers} | "
                      f"{ok / dt:.3g} | {busy} |", flush=True)
                pix.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    ap.add_argument("--modes", nargs="+", default=None, choices=list(MODES),
                    help="default: exact fast bf16")
    ap.add_argument("--sections", nargs="+", default=None, choices=("model", "stages", "e2e", "gpu"),
                    help="default: model stages e2e (+ gpu on CUDA)")
    ap.add_argument("--batches", nargs="+", type=int, default=None, help="model part (default: CPU 1 8; GPU 1 8 64)")
    ap.add_argument("--stage-batch", type=int, default=None, help="default: 8 (CPU), 64 (GPU)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=8, help="end to end: images per mode and round")
    ap.add_argument("--baseline-images", type=int, default=4, help="end to end: images of the official loop")
    ap.add_argument("--e2e-batch", type=int, default=8)
    ap.add_argument("--gpu-batches", nargs="+", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--gpu-files", type=int, default=512, help="JPEG files for the GPU end-to-end table")
    ap.add_argument("--data-dir", default=str(ROOT / "build" / "bench-data"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type != "cpu"
    modes = args.modes or ["exact", "fast", "bf16"]
    sections = args.sections or (["model", "stages", "e2e"] + (["gpu"] if device.type == "cuda" else []))
    if "gpu" in sections and device.type == "mps":
        raise SystemExit("the gpu section measures CUDA (utilisation via NVML); use --device cuda")
    batches = args.batches or ([1, 8, 64] if gpu else [1, 8])
    data = ensure_data(Path(args.data_dir), face=False)
    from skimage import data as skdata

    image = skdata.astronaut()
    print(describe_machine(device))
    need_modes = {"model", "stages", "e2e"} & set(sections)
    engines = build_engines(data, str(device), sorted(set(modes) | {"exact"}, key=list(MODES).index)) \
        if need_modes else {}
    official = engines.get("exact")
    engines = {m: engines[m] for m in modes if m in engines}
    pixie_cpu = Pixie.from_model(official.model if official else build_engines(data, "cpu", ["fast"])["fast"].model,
                                 detector="auto")
    print(f"detector: {pixie_cpu.detector_name}; modes: " + ", ".join(
        f"{m} = {e.config.speed} {e.precision.precision}"
        + (f" compile={e.config.compile}" if e.config.compile != "off" else "")
        + f" ({e.precision.reason})" for m, e in engines.items()))
    if "model" in sections:
        x, xh = person_crops(pixie_cpu, image, max(batches))
        section_model(engines, official, x, xh, batches, args.rounds)
    if "stages" in sections:
        x, xh = person_crops(pixie_cpu, image, args.stage_batch or (64 if gpu else 8))
        section_stages(engines, pixie_cpu, image, x, xh, args.rounds)
    if "e2e" in sections:
        tmp = Path(tempfile.mkdtemp(prefix="pixie-bench-"))
        try:
            paths = write_images(tmp, image, args.images)
            section_e2e(engines, official, pixie_cpu, paths, paths[: args.baseline_images], args.e2e_batch,
                        args.rounds)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if "gpu" in sections:  # on a CPU only when asked for (a check of this script)
        engines.clear()
        official = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        section_gpu(data, device, pixie_cpu, image, args.gpu_batches, args.gpu_files, args.rounds)
    pixie_cpu.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
