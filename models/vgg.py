"""VGG-11/16 with batch norm for 32×32 inputs (Simonyan & Zisserman 2015, configurations A and
D; CIFAR-style classifier as in Frankle & Carbin 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

POOL = 0  # marks a 2×2 max pool in a configuration
CONFIGS: dict[str, tuple[int, ...]] = {
    "vgg11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
}


class VGG(nn.Module):
    """3×3 conv–BatchNorm–ReLU layers with the widths in ``config`` (``POOL`` = 2×2 max pool),
    global average pooling and one ``Linear`` to ``num_classes``: inputs (N, in_channels, 32, 32)
    → logits (N, num_classes). VGG-11: 9.2 M parameters, VGG-16: 14.7 M."""

    def __init__(self, config: Sequence[int], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in config:
            if width == POOL:
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def vgg11(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-11 (configuration A) with batch norm."""
    return VGG(CONFIGS["vgg11"], num_classes, in_channels)


def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-16 (configuration D) with batch norm."""
    return VGG(CONFIGS["vgg16"], num_classes, in_channels)
