"""ResNet-50 head/hand encoder (``Encoder_head``, ``Encoder_hand``).

State-dict names are torchvision's ``resnet50`` without ``fc``, under ``encoder.``, plus the
``MEAN``/``STD`` normalisation buffers. The pooling is a fixed ``AvgPool2d(7)``: inputs must be
224x224 (a 256x256 input would give a 4x larger feature and break every regressor).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Bottleneck, conv1x1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


class ResNetTrunk(nn.Module):
    """conv1 7x7/2, maxpool, four Bottleneck stages, AvgPool2d(7): (B, 3, 224, 224) -> (B, 32·base)."""

    def __init__(self, base: int = 64, layers: tuple[int, int, int, int] = (3, 4, 6, 3)):
        super().__init__()
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(base, layers[0])
        self.layer2 = self._make_layer(base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(base * 8, layers[3], stride=2)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.out_dim = base * 8 * Bottleneck.expansion

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        seq = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        seq += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class ResnetEncoder(nn.Module):
    """Normalises RGB in [0, 1] with ImageNet statistics, then runs the trunk.

    (B, 3, 224, 224) -> (B, feature_dim).
    """

    def __init__(self, base: int = 64, layers: tuple[int, int, int, int] = (3, 4, 6, 3)):
        super().__init__()
        self.encoder = ResNetTrunk(base, layers)
        self.register_buffer("MEAN", torch.tensor(IMAGENET_MEAN)[None, :, None, None])
        self.register_buffer("STD", torch.tensor(IMAGENET_STD)[None, :, None, None])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"ResNet encoder needs 224x224 crops, got {tuple(image.shape[-2:])}")
        return self.encoder((image - self.MEAN) / self.STD)
