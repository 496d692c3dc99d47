"""Turning a user's ``--device`` and ``--precision`` into what runs, with a sentence when it cannot.

* ``--device auto`` picks CUDA, then Apple's MPS, then the CPU.
* ``--precision auto`` picks bf16 where the device runs it natively, else fp32:

  - CUDA: a GPU with bf16 arithmetic (compute capability 8.0 or newer: Ampere, Ada, Hopper, ...);
  - CPU: oneDNN reports bf16 support **and** the processor has bf16 instructions (x86: AVX512-BF16
    or AMX; Arm: the BF16 extension), and no ``ONEDNN_MAX_CPU_ISA`` cap keeps oneDNN below them.
    Without those instructions oneDNN emulates bf16, which is slower than fp32;
  - MPS: macOS 14 or newer (torch's requirement for bf16 on MPS).

Every answer carries its reason, which the engine logs and reports (``Engine.describe``).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: oneDNN's ISA names (``ONEDNN_MAX_CPU_ISA``) whose cap still lets it run bf16 natively
_ONEDNN_BF16_ISAS = {"ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2"}


class DeviceError(ValueError):
    """The requested device is not a device name, or this machine/torch build cannot use it."""


class PrecisionError(DeviceError):
    """The requested precision cannot run on the chosen device."""


@dataclass(frozen=True)
class Support:
    """Whether a device runs a number format natively, and why (a phrase for logs and reports)."""

    native: bool
    reason: str


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision that runs (``fp32``, ``bf16`` or ``fp16``) and why it was chosen."""

    precision: str
    reason: str


# ---------------------------------------------------------------------- probes (mocked in tests)
def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def mkldnn_bf16_supported() -> bool:
    """oneDNN is built in and reports bf16 (natively or emulated with AVX-512)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mkldnn_fp16_supported() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine() -> str:
    return platform.machine().lower()


@lru_cache(maxsize=1)
def cpuinfo_flags() -> frozenset[str]:
    """The ``flags`` of ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def x86_bf16_instructions() -> list[str]:
    """Names of the bf16 instruction sets of this x86 processor (torch's cpuinfo, then /proc/cpuinfo)."""
    found = []
    probes = (("AVX512-BF16", "_is_avx512_bf16_supported", "avx512_bf16"), ("AMX", "_is_amx_tile_supported",
                                                                             "amx_bf16"))
    flags = cpuinfo_flags()
    for name, fn, flag in probes:
        probe = getattr(torch.cpu, fn, None)
        try:
            has = bool(probe()) if probe is not None else False
        except RuntimeError:
            has = False
        if has or flag in flags:
            found.append(name)
    return found


def onednn_isa_cap() -> str | None:
    """``ONEDNN_MAX_CPU_ISA`` (or the older ``DNNL_MAX_CPU_ISA``), upper-cased; None when unset."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap else None


# ---------------------------------------------------------------------- support per device
def cpu_bf16_support() -> Support:
    """Whether this CPU runs bf16 convolutions natively (see the module docstring)."""
    if not mkldnn_bf16_supported():
        return Support(False, "oneDNN reports no bf16 support on this CPU")
    cap = onednn_isa_cap()
    if cap is not None and cap not in _ONEDNN_BF16_ISAS:
        return Support(False, f"ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN below its bf16 instructions")
    arch = machine()
    if arch in ("x86_64", "amd64", "i386", "i686", "x86"):
        isas = x86_bf16_instructions()
        if not isas:
            return Support(False, "this x86 CPU has no AVX512-BF16 or AMX: oneDNN would emulate bf16, "
                                  "slower than fp32")
        return Support(True, f"CPU with {' and '.join(isas)} (oneDNN bf16)")
    if arch in ("arm64", "aarch64"):
        return Support(True, "Arm CPU with the BF16 extension (oneDNN bf16)")
    return Support(False, f"bf16 is not known to be native on {arch or 'this'} CPUs")


def cuda_bf16_support(device: torch.device) -> Support:
    major, minor = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if major >= 8:
        return Support(True, f"{name} (compute capability {major}.{minor}) has bf16 tensor cores")
    return Support(False, f"{name} (compute capability {major}.{minor}) has no bf16 arithmetic (needs 8.0+)")


def mps_bf16_support() -> Support:
    mps = torch.backends.mps
    if mps.is_macos_or_newer(14, 0):
        return Support(True, "MPS on macOS 14+ (bf16 supported by torch)")
    return Support(False, "bf16 on MPS needs macOS 14 or newer")


def bf16_support(device: torch.device) -> Support:
    if device.type == "cuda":
        return cuda_bf16_support(device)
    if device.type == "mps":
        return mps_bf16_support()
    if device.type == "cpu":
        return cpu_bf16_support()
    return Support(False, f"no bf16 path for {device.type}")


# ---------------------------------------------------------------------- resolution
def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``auto`` (CUDA, then MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        DeviceError: with a message naming the choices or what is missing.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if not _DEVICE.match(spec):
        raise DeviceError(f"unknown device {spec!r}; use cpu, cuda, cuda:N, mps or auto")
    if spec == "auto":
        if cuda_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not cuda_available():
            raise DeviceError(f"CUDA was requested but this torch build has no usable GPU (torch {torch.__version__}); "
                              "use --device cpu")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "mps" and not mps_available():
        raise DeviceError("MPS (Apple GPU) was requested but is not available in this torch build; use --device cpu")
    return torch.device(spec)


def resolve_precision(spec: str | None, device: torch.device | str, dtype: str = "float32") -> PrecisionChoice:
    """The precision of the encoders for ``spec`` (``auto``, ``fp32``, ``bf16``, ``fp16``) on ``device``.

    ``auto`` is bf16 where the device runs it natively, else fp32 (always fp32 for a float64 model).
    An explicit ``bf16`` on a CPU without bf16 instructions runs (emulated: as accurate, but slower
    than fp32, 3-4x with the AVX2 kernels) and says so in its reason, which starts with
    ``NOT NATIVE``; the engine logs it as a warning.

    Raises:
        PrecisionError: an unknown name, or a precision the device cannot run.
    """
    device = torch.device(device)
    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise PrecisionError(f"unknown precision {spec!r}; use {', '.join(PRECISIONS)}")
    if dtype == "float64":
        if spec not in ("auto", "fp32"):
            raise PrecisionError(f"precision {spec!r} (autocast) cannot run in float64; use fp32")
        return PrecisionChoice("fp32", "float64 model")
    if spec == "fp32":
        return PrecisionChoice("fp32", "requested")
    if spec == "auto":
        s = bf16_support(device)
        return PrecisionChoice("bf16", f"auto: {s.reason}") if s.native else PrecisionChoice(
            "fp32", f"auto: {s.reason}")
    if spec == "bf16":
        s = bf16_support(device)
        if s.native:
            return PrecisionChoice("bf16", f"requested: {s.reason}")
        if device.type == "cpu":
            return PrecisionChoice("bf16", f"NOT NATIVE, requested anyway: {s.reason}; expect it slower than fp32")
        raise PrecisionError(f"bf16 cannot run here: {s.reason}; use --precision fp32 (or auto)")
    # fp16
    if device.type == "cuda":
        return PrecisionChoice("fp16", "requested")
    if device.type == "mps":
        return PrecisionChoice("fp16", "requested (Apple GPUs run fp16 natively)")
    if mkldnn_fp16_supported():
        return PrecisionChoice("fp16", "requested: oneDNN reports fp16 on this CPU")
    raise PrecisionError("fp16 is not supported on this CPU (oneDNN reports no fp16: it needs AVX512-FP16 or "
                         "AMX-FP16); use --precision bf16, fp32 or auto")
