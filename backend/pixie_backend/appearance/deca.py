"""DECA's networks (Feng, Feng, Black, Bolkart, SIGGRAPH 2021) under the key names of the released
``deca_model.tar``, and its strict loading.

The checkpoint is a dict of three module state dicts:

* ``E_flame`` — ResNet-50 (``encoder.*``, torchvision names without ``fc``, stride on the 3x3
  convolution, ``AvgPool2d(7)``) + MLP ``layers.{0,2}`` 2048 → 1024 → 236: FLAME shape (100), albedo
  (50), expression (50), pose (6: global 3 + jaw 3, axis-angle), camera (3), SH light (27).
* ``E_detail`` — the same encoder with a 128-d output: the detail code.
* ``D_detail`` — the detail generator: ``l1.0`` Linear(181 → 128·8·8), then ``conv_blocks``:
  BatchNorm(128), five times [bilinear x2 upsample, conv 3x3, BatchNorm(C, **eps = 0.8**),
  LeakyReLU(0.2)] with C = 128, 64, 64, 32, 16, a conv 3x3 to one channel and tanh; times
  ``max_z = 0.01``. Input: ``[jaw pose (3, axis-angle), expression (50), detail code (128)]``;
  output: (B, 1, 256, 256) displacement in FLAME UV, metres.

DECA's encoders take RGB in [0, 1] **without** ImageNet normalisation (unlike PIXIE's).
``nn.BatchNorm2d(C, 0.8)`` in DECA's code passes 0.8 as ``eps`` (the second positional argument),
which is reproduced here; a "fixed" eps of 1e-5 would change every output.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_state_strict, read_checkpoint
from ..nets.resnet import ResNetTrunk

log = logging.getLogger(__name__)

#: Top-level keys of ``deca_model.tar``.
DECA_KEYS: tuple[str, ...] = ("E_flame", "E_detail", "D_detail")
#: ``E_flame`` output layout (DECA ``cfg.model.param_list`` with its ``n_*`` sizes), in order.
FLAME_CODE_LAYOUT: tuple[tuple[str, int], ...] = (
    ("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27),
)
NUM_DETAIL = 128  #: detail code size (``n_detail``)
NUM_EXPRESSION = 50
NUM_JAW = 3
MAX_Z = 0.01  #: ``max_z``: tanh output scale, metres
DETAIL_SIZE = 256  #: side of the displacement map
INPUT_SIZE = 224
_INIT_SIZE = 8  #: generator's first feature map (``32 // 4``)
_LEAKY = 0.2
_QUIRK_EPS = 0.8  #: ``nn.BatchNorm2d(C, 0.8)``


@dataclass(frozen=True)
class DecaConfig:
    """Network widths. The defaults are DECA's; tests shrink them (same key names)."""

    resnet_base: int = 64
    resnet_layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    mlp_hidden: int = 1024
    #: generator widths: after ``l1``, then after each of the five upsampling blocks
    generator_channels: tuple[int, int, int, int, int, int] = (128, 128, 64, 64, 32, 16)

    @classmethod
    def tiny(cls) -> DecaConfig:
        # ResNet base 8: at batch 1 a base-2 ResNet can take a slow CPU convolution path (erratic; up to 10x)
        return cls(resnet_base=8, resnet_layers=(1, 1, 1, 1), mlp_hidden=16, generator_channels=(16, 16, 8, 8, 8, 8))


class DecaEncoder(nn.Module):
    """ResNet-50 + MLP: (B, 3, 224, 224) RGB in [0, 1] -> (B, out)."""

    def __init__(self, out: int, cfg: DecaConfig):
        super().__init__()
        self.encoder = ResNetTrunk(cfg.resnet_base, cfg.resnet_layers)
        self.layers = nn.Sequential(
            nn.Linear(self.encoder.out_dim, cfg.mlp_hidden), nn.ReLU(), nn.Linear(cfg.mlp_hidden, out)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"DECA encoders need 224x224 crops, got {tuple(images.shape[-2:])}")
        return self.layers(self.encoder(images))


def _generator_blocks(channels: tuple[int, ...]) -> nn.Sequential:
    """``conv_blocks`` with DECA's indices: 0 BN; per stage Upsample, Conv, BN(eps 0.8), LeakyReLU;
    then Conv to one channel (index 21) and Tanh (22)."""
    mods: list[nn.Module] = [nn.BatchNorm2d(channels[0])]
    for cin, cout in zip(channels[:-1], channels[1:], strict=True):
        mods += [
            nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(cin, cout, 3, stride=1, padding=1),
            nn.BatchNorm2d(cout, eps=_QUIRK_EPS),
            nn.LeakyReLU(_LEAKY, inplace=True),
        ]
    mods += [nn.Conv2d(channels[-1], 1, 3, stride=1, padding=1), nn.Tanh()]
    return nn.Sequential(*mods)


class DetailGenerator(nn.Module):
    """``D_detail``: (B, 181) [jaw (3, axis-angle), expression (50), detail code (128)] ->
    (B, 1, 256, 256) displacement, metres (before DECA's fixed displacement is added)."""

    def __init__(self, channels: tuple[int, ...] = DecaConfig.generator_channels):
        super().__init__()
        latent = NUM_JAW + NUM_EXPRESSION + NUM_DETAIL
        self.channels = tuple(channels)
        self.l1 = nn.Sequential(nn.Linear(latent, self.channels[0] * _INIT_SIZE ** 2))
        self.conv_blocks = _generator_blocks(self.channels)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.l1(latent).view(latent.shape[0], self.channels[0], _INIT_SIZE, _INIT_SIZE)
        return self.conv_blocks(x) * MAX_Z


class DecaNet(nn.Module):
    """The three networks of ``deca_model.tar`` under their checkpoint keys."""

    def __init__(self, cfg: DecaConfig | None = None):
        super().__init__()
        cfg = cfg or DecaConfig()
        self.cfg = cfg
        self.E_flame = DecaEncoder(sum(n for _, n in FLAME_CODE_LAYOUT), cfg)
        self.E_detail = DecaEncoder(NUM_DETAIL, cfg)
        self.D_detail = DetailGenerator(cfg.generator_channels)

    def submodule(self, key: str) -> nn.Module:
        if key not in DECA_KEYS:
            raise KeyError(f"{key!r} is not a DECA checkpoint key")
        return getattr(self, key)

    def checkpoint_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """State in the official layout ``{key: module.state_dict()}``."""
        return {key: self.submodule(key).state_dict() for key in DECA_KEYS}

    def flame_code(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``E_flame`` output split by :data:`FLAME_CODE_LAYOUT` (``light`` stays (B, 27))."""
        code = self.E_flame(images)
        out, start = {}, 0
        for name, n in FLAME_CODE_LAYOUT:
            out[name] = code[:, start:start + n]
            start += n
        return out

    def displacement(self, detail_code: torch.Tensor, expression: torch.Tensor, jaw_aa: torch.Tensor) -> torch.Tensor:
        """``D_detail([jaw, exp, code])``: (B, 1, 256, 256) metres."""
        return self.D_detail(torch.cat([jaw_aa, expression, detail_code], dim=1))


def load_deca_net(path: str | os.PathLike, cfg: DecaConfig | None = None, trust_pickle: bool = False) -> DecaNet:
    """Build DECA's networks and load ``deca_model.tar`` strictly (eval mode, CPU).

    Raises:
        CheckpointError: unreadable file, or any missing, unexpected or mis-shaped key (named).
    """
    ckpt = read_checkpoint(path, trust_pickle=trust_pickle, site="deca.is.tue.mpg.de")
    with torch.device("meta"):
        net = DecaNet(cfg)
    net = net.to_empty(device="cpu")
    for name, buf in net.named_buffers():
        if name.endswith("num_batches_tracked"):
            buf.zero_()
    load_state_strict(net, ckpt, source=str(path), keys=DECA_KEYS, what="DECA's deca_model.tar")
    return net.eval()


def save_deca_checkpoint(net: DecaNet, path: str | os.PathLike) -> None:
    """Write ``net`` in the official layout (a dict of three module state dicts)."""
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(net.checkpoint_state(), tmp)
    os.replace(tmp, path)


__all__ = [
    "DECA_KEYS", "FLAME_CODE_LAYOUT", "CheckpointError", "DecaConfig", "DecaEncoder", "DecaNet",
    "DetailGenerator", "load_deca_net", "save_deca_checkpoint",
]
