"""Turning a user's ``--device`` into a ``torch.device``, with a sentence when it cannot be used."""

from __future__ import annotations

import re

import torch

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class DeviceError(ValueError):
    """The requested device is not a device name, or this machine/torch build cannot use it."""


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``auto`` (CUDA if usable, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        DeviceError: with a message naming the choices or what is missing.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if not _DEVICE.match(spec):
        raise DeviceError(f"unknown device {spec!r}; use cpu, cuda, cuda:N, mps or auto")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"CUDA was requested but this torch build has no usable GPU (torch {torch.__version__}); "
                              "use --device cpu")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS (Apple GPU) was requested but is not available in this torch build; use --device cpu")
    return torch.device(spec)
