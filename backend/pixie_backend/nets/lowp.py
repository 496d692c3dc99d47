"""Encoders that run in bf16 (or fp16) after their first convolution.

The encoders take RGB in [0, 1], normalise it with ImageNet statistics and start with one small
convolution (3 input channels). Rounding the image itself to bf16 (8 significant bits) would add
an error as large as re-quantising the photo to 8 bits, and rounding the ImageNet constants would
bias every pixel; so the normalisation and the first convolution stay in the input's precision
(about 1 % of an encoder's work) and everything after it runs in the low precision, with weights
cast once (after batch-norm folding) instead of at every call as ``torch.autocast`` would.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class CastOutput(nn.Module):
    """Runs ``module`` as it is and casts its output to ``dtype``."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).to(self.dtype)


def first_conv_name(module: nn.Module) -> str:
    """Qualified name of the first ``Conv2d`` in registration order (the stem convolution)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    raise ValueError(f"{type(module).__name__} has no Conv2d")


def low_precision_copy(encoder: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``encoder`` whose layers after the first convolution run in ``dtype``.

    The top-level buffers (the normalisation constants) and the first convolution keep their
    dtype; the first convolution's output is cast to ``dtype``. The encoder's output is in ``dtype``.
    """
    m = copy.deepcopy(encoder)
    name = first_conv_name(m)
    parent_name, _, attr = name.rpartition(".")
    parent = m.get_submodule(parent_name) if parent_name else m
    first = getattr(parent, attr)
    keep = {k: b for k, b in m._buffers.items() if b is not None}
    setattr(parent, attr, nn.Identity())  # out of the way while the rest is cast
    m.to(dtype)
    setattr(parent, attr, CastOutput(first, dtype))
    for k, b in keep.items():
        m._buffers[k] = b
    return m
