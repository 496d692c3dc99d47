"""A short check of the CUDA path, for a session that has a GPU (about 5-8 minutes on an H100/H200).

    .venv/bin/python bench/gpu_check.py                       # everything, figures to stdout
    .venv/bin/python bench/gpu_check.py --out gpu-check.md    # and into a file
    .venv/bin/python bench/gpu_check.py --device cpu --smoke  # the script's own logic, on any machine

1. the machine: torch, GPU, memory, and what ``auto`` picks (device, precision, batch size);
2. correctness: ``tests/backend/test_gpu.py`` in a child process (float64 on the GPU equals float64
   on the CPU through the whole image pipeline; device crops; fp32 against the CPU; bf16 within the
   CPU's bound; no host syncs on the GPU path; batch size from memory);
3. full-size synthetic assets in build/bench-data (written once: 1-3 minutes);
4. the model part: the official way (exact fp32, batch 1) against fast fp32 and bf16 at batch 1,
   8 and 64, side by side (``bench_backend.py``'s ``model`` section);
5. networks-only persons/s at batch 64-512 in fp32 and bf16, and end to end from JPEG files on disk
   with the GPU's utilisation (``bench_backend.py``'s ``gpu`` section).

Each part prints its wall time; parts that would not fit in ``--budget`` seconds are skipped and
named.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(BENCH))

import bench_backend as bb  # noqa: E402


class Tee:
    def __init__(self, path: Path | None):
        self.file = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115 - closed in main

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()


def machine(device: torch.device, out: Tee) -> None:
    from pixie_backend.runtime.device import bf16_support, resolve_device, resolve_precision

    out("## Machine\n")
    out(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        out(f"- GPU: {p.name}, compute capability {p.major}.{p.minor}, {total / 2**30:.0f} GiB "
            f"({free / 2**30:.0f} GiB free)")
    auto = resolve_device("auto")
    out(f"- auto device: {auto}; auto precision: {resolve_precision('auto', auto)}")
    out(f"- bf16 on {device}: {bf16_support(device).reason}")


def run_tests(out: Tee, smoke: bool) -> bool:
    out("\n## Correctness: tests/backend/test_gpu.py\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-s", "-p", "no:cacheprovider", "tests/backend/test_gpu.py"]
    if smoke:
        cmd += ["-k", "batch_size"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT)])}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    keep = [x for x in lines if "bf16 - fp32" in x or "SKIPPED" in x or x.startswith(("FAILED", "ERROR", "E "))]
    out("```\n" + "\n".join(keep[-40:] + lines[-1:]) + "\n```")
    return proc.returncode == 0


def captured(fn, *args, **kwargs) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(*args, **kwargs)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check (default: 480)")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, not the GPU")
    ap.add_argument("--data-dir", default=str(ROOT / "build" / "bench-data"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch; use --device cpu --smoke to check the script itself")
        return 2
    t_start = time.perf_counter()
    out = Tee(args.out)
    out(f"# GPU check ({time.strftime('%Y-%m-%d %H:%M')})\n")
    machine(device, out)
    ok = True

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    parts = [("tests", 120), ("data", 150), ("model", 90), ("gpu", 150)]  # seconds each needs on an H100
    timings = {}
    for name, need in parts:
        if left() < need and name != "tests" and not args.smoke:
            out(f"\n(skipped {name}: {left():.0f} s left of the budget, it needs about {need} s)")
            continue
        t0 = time.perf_counter()
        try:
            if name == "tests" and not args.skip_tests:
                ok &= run_tests(out, args.smoke)
            elif name == "data" and not args.smoke:
                bb.ensure_data(Path(args.data_dir), face=False)
            elif name == "model":
                out("\n## Model part (bench_backend.py --sections model)\n")
                argv_model = ["--device", str(device), "--sections", "model", "--rounds", "3", "--modes", "fast",
                              "bf16", "--batches", "1", "8", "64", "--data-dir", args.data_dir]
                if args.smoke:
                    argv_model[argv_model.index("--rounds") + 1] = "1"
                    argv_model[argv_model.index("--batches") + 1:argv_model.index("--data-dir")] = ["2"]
                out(captured(bb.main, argv_model))
            elif name == "gpu":
                out("\n## GPU throughput (bench_backend.py --sections gpu)\n")
                argv_gpu = ["--device", str(device), "--sections", "gpu", "--rounds", "3", "--gpu-files", "512",
                            "--data-dir", args.data_dir]
                if args.smoke:
                    argv_gpu += ["--rounds", "1", "--gpu-files", "4", "--gpu-batches", "2"]
                out(captured(bb.main, argv_gpu))
        except Exception as e:  # noqa: BLE001 - report and go on with the next part
            ok = False
            out(f"\n**{name} failed: {type(e).__name__}: {e}**")
        timings[name] = time.perf_counter() - t0
    out("\n## Wall time\n")
    out(", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; total {time.perf_counter() - t_start:.0f} s")
    if out.file:
        out.file.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
