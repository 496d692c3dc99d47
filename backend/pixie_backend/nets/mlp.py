"""Fully connected heads: regressors, extractors and moderators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _linear_stack(channels: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and nothing after the last (keys layers.0, .2, ...)."""
    layers: list[nn.Module] = []
    for i in range(len(channels) - 1):
        layers.append(nn.Linear(channels[i], channels[i + 1]))
        if i < len(channels) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """``Regressor_*`` and ``Extractor_*``: (B, C_in) -> (B, C_out)."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.layers = _linear_stack(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TempSoftmaxFusion(nn.Module):
    """``Moderator_*``: weighs a body-derived feature against a part-crop feature.

    ``w = softmax(temperature · MLP([x, y]))``; ``w[:, 0]`` is the body weight, ``w[:, 1]`` the part
    weight, and the fused feature is ``w0·x + w1·y``.
    """

    def __init__(self, feature_dim: int, hidden: int):
        super().__init__()
        self.layers = _linear_stack([2 * feature_dim, hidden, hidden, 2])
        self.temperature = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, C) feature from the body (extractor output).
            y: (B, C) feature from the part crop.

        Returns:
            fused (B, C) and weights (B, 2) = [body, part].
        """
        w = F.softmax(self.layers(torch.cat([x, y], dim=1)) * self.temperature, dim=1)
        return w[:, [0]] * x + w[:, [1]] * y, w
