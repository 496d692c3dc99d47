"""Random, deterministic, *plausible* weights for :class:`PixieNet` (synthetic ``pixie_model.tar``).

Used for tests, the self-test and the benchmark: no licensed weights are involved. Every tensor is
drawn from ``numpy.random.default_rng(seed)`` (stable across platforms and torch versions).
Batch-norm statistics are then calibrated on fixed synthetic images so activations stay O(1), and
the final regressor layers are given biases that decode to a plausible person (upright, arms
lowered, camera framing the body), so that renders and rigs built from random weights are legible.
The output is still **not a reconstruction**.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import constants as C
from ..config import NetConfig
from .pixie_net import PixieNet


#: 6D (interleaved) of a rotation matrix: columns 0 and 1 interleaved.
def _to6d(r: np.ndarray) -> np.ndarray:
    return np.stack([r[:, 0], r[:, 1]], axis=-1).reshape(6)


def _rz(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


_FLIP_X = np.diag([1.0, -1.0, -1.0])  # 180° about X: the PIXIE frame's upright body
_IDENTITY_6D = _to6d(np.eye(3))


def _body_bias() -> np.ndarray:
    """Regressor_body output bias: camera framing a 1.7 m body, upright, arms lowered ~60°."""
    cam = np.array([1.07, 0.0, 0.25])
    glob = _to6d(_FLIP_X)
    part = np.tile(_IDENTITY_6D, (17, 1))
    slot_of = {C.PARTBODY_SLOTS[i] + 1: i for i in range(17)}  # SMPL-X joint -> partbody row
    part[slot_of[C.JOINT_INDEX["left_shoulder"]]] = _to6d(_rz(-60))
    part[slot_of[C.JOINT_INDEX["right_shoulder"]]] = _to6d(_rz(60))
    part[slot_of[C.JOINT_INDEX["left_elbow"]]] = _to6d(_rz(-15))
    part[slot_of[C.JOINT_INDEX["right_elbow"]]] = _to6d(_rz(15))
    return np.concatenate([cam, glob, part.reshape(-1), _IDENTITY_6D])


def _head_share_bias() -> np.ndarray:
    return np.concatenate([np.zeros(C.NUM_BETAS), np.zeros(C.NUM_EXPRESSION), _to6d(_FLIP_X), [0.08, 0, 0]])


def _hand_share_bias() -> np.ndarray:
    # absolute right wrist: the lowered right arm's orientation, D·Rz(75°); the same prediction,
    # mirrored, is the lowered left arm (D·Rz(θ)·D = Rz(-θ)).
    wrist = _to6d(_FLIP_X @ _rz(75))
    fingers = np.tile(_to6d(_rz(12)), (15, 1)).reshape(-1)  # slightly curled
    return np.concatenate([wrist, fingers])


def _head_bias() -> np.ndarray:
    light = np.zeros((9, 3))
    light[0] = 2.5
    light[2] = -0.4  # a little light from above (y down in the PIXIE frame)
    return np.concatenate([[1.0, 0, 0], np.zeros(C.NUM_TEX), light.reshape(-1)])


#: Target std of each regressor's outputs around its bias.
_OUTPUT_STD = {
    "Regressor_body": 0.05,
    "Regressor_head": 0.1,
    "Regressor_head_share": 0.1,
    "Regressor_hand": 0.05,
    "Regressor_hand_share": 0.05,
}
_OUTPUT_BIAS = {
    "Regressor_body": _body_bias,
    "Regressor_head": _head_bias,
    "Regressor_head_share": _head_share_bias,
    "Regressor_hand": lambda: np.array([1.0, 0.0, 0.0]),
    "Regressor_hand_share": _hand_share_bias,
}


#: Batch-norm gain after calibration. Below 1 the random network is in the ordered (contractive)
#: regime, so feature magnitudes stay similar across very different inputs.
BN_GAIN = 0.5
#: Gain of the last BN of every residual branch and of the HRNet fusion paths: small, so each block
#: stays close to its shortcut and input perturbations are not amplified exponentially with depth
#: (a random deep network is otherwise chaotic: 1e-7 input noise would change its outputs by %).
RESIDUAL_GAIN = 0.05
FUSION_GAIN = 0.3


class _Rng:
    def __init__(self, seed: int):
        self.g = np.random.default_rng(seed)

    def normal(self, shape, std: float) -> torch.Tensor:
        return torch.from_numpy(self.g.standard_normal(size=tuple(shape), dtype=np.float32) * np.float32(std))


def _init_layers(net: nn.Module, rng: _Rng) -> None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.data.copy_(rng.normal(m.weight.shape, math.sqrt(2.0 / fan_in)))
            if m.bias is not None:
                m.bias.data.copy_(rng.normal(m.bias.shape, 0.01))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.copy_(BN_GAIN * (1.0 + rng.normal(m.weight.shape, 0.05)))
            m.bias.data.copy_(rng.normal(m.bias.shape, 0.05))
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
            m.num_batches_tracked.zero_()
        elif isinstance(m, nn.Linear):
            m.weight.data.copy_(rng.normal(m.weight.shape, math.sqrt(2.0 / m.in_features)))
            m.bias.data.copy_(rng.normal(m.bias.shape, 0.01))


def _damp_residual_branches(net: nn.Module) -> None:
    from .blocks import BasicBlock, Bottleneck
    from .hrnet import HighResolutionModule

    for m in net.modules():
        if isinstance(m, Bottleneck):
            m.bn3.weight.data.mul_(RESIDUAL_GAIN / BN_GAIN)
        elif isinstance(m, BasicBlock):
            m.bn2.weight.data.mul_(RESIDUAL_GAIN / BN_GAIN)
        elif isinstance(m, HighResolutionModule):
            for bn in m.fuse_layers.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.weight.data.mul_(FUSION_GAIN / BN_GAIN)


def _calibration_images(rng: _Rng, n: int, size: int = 224) -> torch.Tensor:
    """Random images in [0, 1] with a natural-image-like 1/f spectrum plus pixel noise:
    (n, 3, size, size) float64. Broad spectra keep the calibrated statistics valid for photographs."""
    img = torch.zeros(n, 3, size, size, dtype=torch.float64)
    cells = 4
    while cells <= size:
        octave = torch.nn.functional.interpolate(
            rng.normal((n, 3, cells, cells), 1.0).double(), size=(size, size), mode="bilinear", align_corners=False
        )
        img += octave * (4.0 / cells) ** 0.5
        cells *= 2
    img = img / img.std(dim=(1, 2, 3), keepdim=True) + rng.normal(img.shape, 0.3).double()
    return torch.sigmoid(1.5 * img)


@torch.no_grad()
def _calibrate_bn(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Set every BN's running statistics to the batch statistics of ``images``; returns features."""
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch -> exactly its statistics
    encoder.train()
    encoder(images)
    encoder.eval()
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
    return encoder(images)


@torch.no_grad()
def _fit_final_layer(mlp: nn.Module, feats: torch.Tensor, std: float, bias: np.ndarray) -> None:
    """Scale the last Linear so outputs on ``feats`` have ``std`` per unit, centred on ``bias``."""
    last = [m for m in mlp.modules() if isinstance(m, nn.Linear)][-1]
    hidden = mlp.layers[:-1](feats) if len(mlp.layers) > 1 else feats
    out = hidden @ last.weight.T
    scale = std / out.std(dim=0).clamp_min(1e-6)
    last.weight.mul_(scale[:, None])
    mean = (hidden @ last.weight.T).mean(dim=0)
    last.bias.copy_(torch.from_numpy(bias).to(mean.dtype) - mean)


@torch.no_grad()
def random_pixie_net(cfg: NetConfig | None = None, seed: int = 0, calibrate: bool = True) -> PixieNet:
    """A :class:`PixieNet` with deterministic, plausible random weights (eval mode, CPU)."""
    cfg = cfg or NetConfig()
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)  # only the (overwritten) default init consumes torch's RNG
        net = PixieNet(cfg)
    finally:
        torch.random.set_rng_state(torch_state)
    rng = _Rng(seed)
    _init_layers(net, rng)
    _damp_residual_branches(net)
    for key, t in (("Moderator_head_share", 1.3), ("Moderator_hand_share", 0.9)):
        net.submodule(key).temperature.fill_(t)  # != 1, so a decode that ignores it is caught
    if not calibrate:
        return net.eval()
    # Calibrate in float64, then round once to float32: the calibration runs the networks, whose
    # float32 results change in the last bits with the thread count and the CPU's kernels; in
    # float64 that noise is 1e-16 and the final rounding to float32 removes it, so a seed gives
    # the same bytes on every machine.
    _calibrate(net.double(), cfg, rng)
    return net.float().eval()


def _calibrate(net: PixieNet, cfg: NetConfig, rng: _Rng) -> None:
    """BN statistics, extractors, regressor and moderator scales, fitted on random images (in
    the network's dtype)."""
    f_body = _calibrate_bn(net.Encoder_body, _calibration_images(rng, 8))
    part_imgs = _calibration_images(rng, 8)
    f_head = _calibrate_bn(net.Encoder_head, part_imgs)
    f_hand = _calibrate_bn(net.Encoder_hand, part_imgs.flip(-1))
    stats = {name: (f.mean(dim=0), f.std().clamp_min(1e-12)) for name, f in
             (("body", f_body), ("head", f_head), ("hand", f_hand))}
    d = cfg.feature_dim
    # Extractors map the body feature into the part feature's distribution (near identity), so the
    # extractor, part and fused features that the share regressors read are on one scale.
    for key, part in (("Extractor_head_share", "head"), ("Extractor_left_hand_share", "hand"),
                      ("Extractor_right_hand_share", "hand")):
        lin = net.submodule(key).layers[0]
        (mu_b, sd_b), (mu_p, sd_p) = stats["body"], stats[part]
        lin.weight.copy_((torch.eye(d) * 0.8 + rng.normal((d, d), 0.3 / math.sqrt(d))).to(sd_p.dtype) * (sd_p / sd_b))
        lin.bias.copy_(mu_p - lin.weight @ mu_b)
    # Every MLP reading a feature standardises it in its first layer, and its last layer is fitted so
    # that outputs spread by a chosen std around a plausible bias.
    for key, part, feats in (("Regressor_body", "body", f_body), ("Regressor_head", "head", f_head),
                             ("Regressor_head_share", "head", f_head), ("Regressor_hand", "hand", f_hand),
                             ("Regressor_hand_share", "hand", f_hand)):
        mlp = net.submodule(key)
        _fold_standardisation(mlp.layers[0], *stats[part])
        _fit_final_layer(mlp, feats, _OUTPUT_STD[key], _OUTPUT_BIAS[key]())
    # Moderators read [extractor feature, part feature]; the part weight spreads around 0.6 so that
    # both sides of the 0.7 hand threshold occur.
    for key, part, f_part in (("Moderator_head_share", "head", f_head), ("Moderator_hand_share", "hand", f_hand)):
        mod = net.submodule(key)
        mu, sd = stats[part]
        _fold_standardisation(mod.layers[0], torch.cat([mu, mu]), sd)
        x = torch.cat([f_part.roll(1, dims=0), f_part], dim=1)
        last = mod.layers[-1]
        hidden = mod.layers[:-1](x)
        logits = hidden @ last.weight.T
        last.weight.mul_(0.6 / (logits[:, 1] - logits[:, 0]).std().clamp_min(1e-6) / mod.temperature)
        last.bias.copy_(torch.tensor([0.0, 0.5]) / mod.temperature - (hidden @ last.weight.T).mean(0))


@torch.no_grad()
def _fold_standardisation(lin: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make ``lin(x)`` compute ``lin((x - mean) / std)`` (per-unit mean, one scalar std)."""
    lin.weight.div_(std)
    lin.bias.sub_(lin.weight @ mean)


def state_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes, in state-dict order): equal
    for equal weights whatever the file format or torch version that saves them."""
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
