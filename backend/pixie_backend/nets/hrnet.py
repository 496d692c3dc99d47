"""HRNet-W48 body encoder with the ExPose head (``Encoder_body``).

Architecture (for the released widths 48/96/192/384):

* stem: two 3x3/2 convs (3->64->64); ``layer1``: 4 Bottlenecks (out 256); stage2 (1 module,
  2 branches), stage3 (4 modules, 3 branches), stage4 (3 modules, 4 branches), 4 BasicBlocks per
  branch; multi-resolution fusion after every module.
* head: branch 0/1/2 are brought to 7x7 by ``subsample_4/3/2`` (stride-2 3x3 convs *with bias* +
  BN + ReLU), concatenated with branch 3 (1536 channels), then ``conv_layers``: 5 Bottlenecks whose
  ``downsample`` is a single bias-free 1x1 conv (no BN), then the spatial mean -> 2048.

Module and parameter names reproduce the checkpoint's (``encoder.stage3.2.fuse_layers.1.0.0.weight``,
``encoder.conv_layers.0.downsample.weight``, ...).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck, conv1x1, conv3x3
from .resnet import IMAGENET_MEAN, IMAGENET_STD


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by all-to-all fusion (upsample or stride-2 convs)."""

    def __init__(self, widths: tuple[int, ...], num_blocks: int):
        super().__init__()
        self.num_branches = len(widths)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w, w) for _ in range(num_blocks)]) for w in widths
        )
        fuse_layers = []
        for i, wi in enumerate(widths):
            row: list[nn.Module | None] = []
            for j, wj in enumerate(widths):
                if j > i:  # lower resolution -> 1x1 conv + BN + nearest upsample
                    row.append(nn.Sequential(
                        conv1x1(wj, wi), nn.BatchNorm2d(wi),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                    ))
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> (i - j) stride-2 3x3 convs, ReLU on all but the last
                    steps = [
                        _conv_bn(wj, wi if k == i - j - 1 else wj, 3, 2, relu=k < i - j - 1)
                        for k in range(i - j)
                    ]
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(self.relu(y))
        return out


def _transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Adapt ``prev`` branch widths to ``cur``; new branches come from the last previous one."""
    layers: list[nn.Module | None] = []
    for i, w in enumerate(cur):
        if i < len(prev):
            layers.append(None if prev[i] == w else _conv_bn(prev[i], w, 3, 1, relu=True))
        else:
            n_new = i + 1 - len(prev)
            steps = [
                _conv_bn(prev[-1], w if k == n_new - 1 else prev[-1], 3, 2, relu=True)
                for k in range(n_new)
            ]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def _subsample(cin: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` x (3x3/2 conv with bias, doubling channels, + BN + ReLU)."""
    layers: list[nn.Module] = []
    for _ in range(num_layers):
        layers += [
            nn.Conv2d(cin, 2 * cin, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(2 * cin),
            nn.ReLU(inplace=True),
        ]
        cin *= 2
    return nn.Sequential(*layers)


class HighResolutionNet(nn.Module):
    """HRNet trunk + ExPose head: (B, 3, H, W) -> (B, feature_dim) (H = W = 224 gives 7x7 before pooling)."""

    def __init__(
        self,
        stem: int = 64,
        widths: tuple[int, int, int, int] = (48, 96, 192, 384),
        modules: tuple[int, int, int] = (1, 4, 3),
        num_blocks: int = 4,
        feature_dim: int = 2048,
        head_layers: int = 5,
    ):
        super().__init__()
        self.conv1 = conv3x3(3, stem, stride=2)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = conv3x3(stem, stem, stride=2)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(conv1x1(stem, stem * 4), nn.BatchNorm2d(stem * 4))
        self.layer1 = nn.Sequential(
            Bottleneck(stem, stem, downsample=down),
            *[Bottleneck(stem * 4, stem) for _ in range(1, num_blocks)],
        )
        w2, w3, w4 = widths[:2], widths[:3], widths
        self.transition1 = _transition((stem * 4,), w2)
        self.stage2 = nn.Sequential(*[HighResolutionModule(w2, num_blocks) for _ in range(modules[0])])
        self.transition2 = _transition(w2, w3)
        self.stage3 = nn.Sequential(*[HighResolutionModule(w3, num_blocks) for _ in range(modules[1])])
        self.transition3 = _transition(w3, w4)
        self.stage4 = nn.Sequential(*[HighResolutionModule(w4, num_blocks) for _ in range(modules[2])])
        self.subsample_4 = _subsample(widths[0], 3)
        self.subsample_3 = _subsample(widths[1], 2)
        self.subsample_2 = _subsample(widths[2], 1)
        in_dims = widths[0] * 8 + widths[1] * 4 + widths[2] * 2 + widths[3]
        head = []
        for _ in range(head_layers):
            head.append(Bottleneck(in_dims, feature_dim // 4, downsample=conv1x1(in_dims, feature_dim)))
            in_dims = feature_dim
        self.conv_layers = nn.Sequential(*head)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, t in enumerate(transition):
            src = ys[i] if i < len(ys) else ys[-1]
            out.append(src if t is None else t(src))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        ys = self.stage2(self._apply_transition(self.transition1, [x]))
        ys = self.stage3(self._apply_transition(self.transition2, ys))
        ys = self.stage4(self._apply_transition(self.transition3, ys))
        feat = torch.cat(
            [self.subsample_4(ys[0]), self.subsample_3(ys[1]), self.subsample_2(ys[2]), ys[3]], dim=1
        )
        return self.conv_layers(feat).mean(dim=(2, 3))


class HRNEncoder(nn.Module):
    """ImageNet normalisation + :class:`HighResolutionNet`. (B, 3, 224, 224) in [0, 1] -> (B, feature_dim)."""

    def __init__(self, **kwargs):
        super().__init__()
        self.encoder = HighResolutionNet(**kwargs)
        self.register_buffer("MEAN", torch.tensor(IMAGENET_MEAN)[None, :, None, None])
        self.register_buffer("STD", torch.tensor(IMAGENET_STD)[None, :, None, None])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder((image - self.MEAN) / self.STD)
