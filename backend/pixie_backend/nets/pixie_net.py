"""``PixieNet``: the 13 networks of the checkpoint under one root module.

Each attribute is named exactly like its top-level key in ``pixie_model.tar``, so
``PixieNet.state_dict()`` is the checkpoint with the key joined to its module keys by a dot, and
``.to()``, ``.eval()`` and ``state_dict()`` work on everything at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import constants as C
from ..config import NetConfig
from .hrnet import HRNEncoder
from .mlp import MLP, TempSoftmaxFusion
from .resnet import ResnetEncoder


def layout_width(layout: Sequence[tuple[str, int]]) -> int:
    return sum(width for _, width in layout)


def split_outputs(x: torch.Tensor, layout: Sequence[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Slice a regressor output (B, N) into named parts, in layout order."""
    out, start = {}, 0
    for name, width in layout:
        out[name] = x[:, start:start + width]
        start += width
    if start != x.shape[1]:
        raise ValueError(f"regressor output has {x.shape[1]} values, layout expects {start}")
    return out


class PixieNet(nn.Module):
    """Encoders, extractors, regressors and moderators, named as in the checkpoint."""

    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        cfg = cfg or NetConfig()
        if cfg.resnet_base * 32 != cfg.feature_dim:
            raise ValueError("resnet_base * 32 must equal feature_dim (the ResNet output width)")
        d, h = cfg.feature_dim, cfg.mlp_hidden
        self.Encoder_body = HRNEncoder(
            stem=cfg.hrnet_stem, widths=cfg.hrnet_widths, modules=cfg.hrnet_modules,
            num_blocks=cfg.hrnet_blocks, feature_dim=d, head_layers=cfg.head_conv_layers,
        )
        self.Encoder_head = ResnetEncoder(cfg.resnet_base, cfg.resnet_layers)
        self.Encoder_hand = ResnetEncoder(cfg.resnet_base, cfg.resnet_layers)
        self.Regressor_body = MLP([d, h, layout_width(C.BODY_OUTPUTS)])
        self.Regressor_head = MLP([d, h, layout_width(C.HEAD_OUTPUTS)])
        self.Regressor_head_share = MLP([d, h, h, layout_width(C.HEAD_SHARE_OUTPUTS)])
        self.Regressor_hand = MLP([d, h, layout_width(C.HAND_OUTPUTS)])
        self.Regressor_hand_share = MLP([d, h, h, layout_width(C.HAND_SHARE_OUTPUTS)])
        self.Extractor_head_share = MLP([d, d])
        self.Extractor_left_hand_share = MLP([d, d])
        self.Extractor_right_hand_share = MLP([d, d])
        self.Moderator_head_share = TempSoftmaxFusion(d, h)
        self.Moderator_hand_share = TempSoftmaxFusion(d, h)

    def submodule(self, key: str) -> nn.Module:
        """The network stored under checkpoint key ``key``."""
        if key not in C.CHECKPOINT_KEYS:
            raise KeyError(f"{key!r} is not a PIXIE checkpoint key")
        return getattr(self, key)

    def checkpoint_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """State in the official checkpoint layout: ``{key: module.state_dict()}``."""
        return {key: self.submodule(key).state_dict() for key in C.CHECKPOINT_KEYS}
