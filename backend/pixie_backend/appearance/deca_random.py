"""Random, deterministic, plausible weights for DECA's networks (a synthetic ``deca_model.tar``).

Tests, the self-test and the benchmark use them; no licensed weights are involved. Every tensor is
drawn from ``numpy.random.default_rng(seed)`` (as :mod:`pixie_backend.nets.random_init`), batch-norm
statistics are calibrated on synthetic images and latents, and the last layers are scaled so that
the outputs look like DECA's: expression codes of about ±0.3, a small jaw opening, a detail code of
unit scale, and a displacement of a few millimetres (tanh well away from saturation). **Not a
reconstruction.**
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..nets.random_init import _calibrate_bn, _calibration_images, _damp_residual_branches, _init_layers, _Rng
from . import deca as D

#: Target std of the generator's pre-tanh output on its calibration latents (photos give about twice as much:
#: ≈ 1.5 mm of displacement, tanh far from saturation).
PRE_TANH_STD = 0.08


def _flame_bias() -> np.ndarray:
    bias = np.zeros(sum(n for _, n in D.FLAME_CODE_LAYOUT))
    start = 0
    for name, n in D.FLAME_CODE_LAYOUT:
        if name == "pose":
            bias[start + 3] = 0.05  # jaw slightly open (axis-angle about x)
        if name == "cam":
            bias[start] = 8.0
        start += n
    return bias


@torch.no_grad()
def _fit_last_linear(enc: D.DecaEncoder, feats: torch.Tensor, std: float, bias: np.ndarray) -> None:
    last = enc.layers[2]
    hidden = enc.layers[1](enc.layers[0](feats))
    out = hidden @ last.weight.T
    last.weight.mul_((std / out.std(dim=0).clamp_min(1e-6))[:, None])
    last.bias.copy_(torch.from_numpy(bias).to(hidden.dtype) - (hidden @ last.weight.T).mean(dim=0))


@torch.no_grad()
def random_deca_net(cfg: D.DecaConfig | None = None, seed: int = 0) -> D.DecaNet:
    """A :class:`~pixie_backend.appearance.deca.DecaNet` with deterministic plausible weights (eval, CPU)."""
    cfg = cfg or D.DecaConfig()
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        net = D.DecaNet(cfg)
    finally:
        torch.random.set_rng_state(state)
    rng = _Rng(seed + 4242)
    _init_layers(net, rng)
    _damp_residual_branches(net)
    # Calibrate in float64 and round once to float32 (as ``random_pixie_net``): the same bytes for
    # a seed on every machine and thread count.
    _calibrate(net.double(), rng)
    return net.float().eval()


def _calibrate(net: D.DecaNet, rng: _Rng) -> None:
    """BN statistics and output scales, fitted on random images and latents (float64)."""
    images = _calibration_images(rng, 8)
    for enc, std, bias in ((net.E_flame, 0.15, _flame_bias()), (net.E_detail, 1.0, np.zeros(D.NUM_DETAIL))):
        feats = _calibrate_bn(enc.encoder, images)
        first = enc.layers[0]
        mu, sd = feats.mean(dim=0), feats.std().clamp_min(1e-12)
        first.weight.div_(sd)
        first.bias.sub_(first.weight @ mu)
        _fit_last_linear(enc, feats, std, bias)
    # generator: calibrate its batch norms on latents like the ones it will see, then scale the
    # last convolution so that tanh stays in its linear range
    gen = net.D_detail
    latent = torch.cat([rng.normal((16, D.NUM_JAW), 0.05), rng.normal((16, D.NUM_EXPRESSION), 0.3),
                        rng.normal((16, D.NUM_DETAIL), 1.0)], dim=1).double()
    gen.l1[0].weight.mul_(1.0 / math.sqrt(2.0))
    _calibrate_generator(gen, latent)
    x = gen.l1(latent).view(latent.shape[0], -1, D._INIT_SIZE, D._INIT_SIZE)
    pre = gen.conv_blocks[:-1](x)
    last = gen.conv_blocks[-2]
    scale = PRE_TANH_STD / pre.std().clamp_min(1e-9)
    last.weight.mul_(scale)
    last.bias.mul_(scale)
    last.bias.sub_((gen.conv_blocks[:-1](x)).mean())


@torch.no_grad()
def _calibrate_generator(gen: D.DetailGenerator, latent: torch.Tensor) -> None:
    for m in gen.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    gen.train()
    gen(latent)
    gen.eval()
    for m in gen.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
            m.num_batches_tracked.zero_()


def write_random_deca(path: str | Path, cfg: D.DecaConfig | None = None, seed: int = 0) -> Path:
    """Write a random ``deca_model.tar`` in the official layout."""
    path = Path(path)
    D.save_deca_checkpoint(random_deca_net(cfg, seed), path)
    return path
