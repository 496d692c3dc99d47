"""The options that choose how the model runs, shared by ``reconstruct``, ``reconstruct-video`` and
``serve``: ``--device``, ``--precision``, ``--speed``, ``--batch-size``, ``--workers`` and
``--compile``. One definition, so the three commands pick the same device and precision for the
same flags (README: Options; docs/devices.md)."""

from __future__ import annotations

import argparse

#: ``--precision`` when not given (README: Benchmarks has the measurements behind it)
DEFAULT_PRECISION = "auto"
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def batch_size_arg(text: str) -> int | str:
    """``--batch-size``: a number, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, not {text!r}") from None


def add_model_options(p: argparse.ArgumentParser, *, batch_help: str = "persons per network batch",
                      workers: bool = True, speed_help: str | None = None) -> None:
    """Add the options to a command's parser (``workers=False``: the command has no preparers of its own)."""
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto: CUDA, then MPS, then the CPU (default: auto)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=DEFAULT_PRECISION,
                   help="precision of the three CNN encoders (heads and SMPL-X stay fp32); auto: bf16 where "
                        "the device runs it natively (CUDA compute capability 8+, a CPU with AVX512-BF16 or "
                        f"AMX, MPS on macOS 14+), else fp32 (default: {DEFAULT_PRECISION})")
    p.add_argument("--speed", choices=("exact", "fast"), default="fast",
                   help=speed_help or "fast: batch norm folded into the convolutions and channels-last encoders "
                                      "(15-20%% faster; differs from exact by float rounding); exact: the float "
                                      "order closest to upstream PIXIE, as the Python API uses by default "
                                      "(default: fast)")
    p.add_argument("--batch-size", type=batch_size_arg, default="auto",
                   help=f"{batch_help}, or auto: 8 on the CPU, from the free memory on a GPU (default: auto)")
    if workers:
        p.add_argument("--workers", "--prepare-workers", dest="workers", type=int, default=None,
                       help="threads that load, detect and crop ahead of the networks, each with its own detector "
                            "(default: 1 on the CPU, one per core but one, up to 8, for a GPU)")
    p.add_argument("--compile", choices=COMPILE_MODES, default="off",
                   help="torch.compile the encoders with this mode (reduce-overhead adds CUDA graphs); needs "
                        "Triton on CUDA or a C++ compiler on the CPU, and minutes of warm-up (default: off)")


def check_model_args(args: argparse.Namespace) -> None:
    """Check the options and resolve ``--device`` (``args.device`` becomes the device that runs).

    Raises:
        ValueError: one sentence naming the option (the commands turn it into exit code 2).
    """
    from ..runtime.device import resolve_device, resolve_precision

    if args.batch_size != "auto" and args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as e:
        raise ValueError(f"--device: {e}") from None
    try:
        resolve_precision(args.precision, args.device)
    except ValueError as e:
        raise ValueError(f"--precision: {e}") from None


def batch_size_for(engine, batch_size: int | str) -> int:
    """``--batch-size`` for a loaded engine (``auto``: :meth:`Engine.suggest_batch_size`)."""
    return engine.suggest_batch_size() if batch_size == "auto" else int(batch_size)
