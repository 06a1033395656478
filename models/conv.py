"""Convolutional networks: the MNIST-1D 1-D CNN, LeNet-5 and Conv-2/4/6 of Frankle & Carbin."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv1d_length(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class CNN1D(nn.Module):
    """The 1-D CNN of MNIST-1D (Greydanus 2020, ``ConvBase`` in greydanus/mnist1d
    ``notebooks/models.py``): three ReLU ``Conv1d`` layers with ``channels`` channels
    (kernel 5/3/3, stride 2, padding 1) and a linear classifier on the flattened features.

    Inputs (N, length) or (N, 1, length) (default length 40) → logits (N, num_classes);
    5.2 K parameters at the defaults.
    """

    def __init__(self, num_classes: int = 10, length: int = 40, channels: int = 25) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        for conv in (self.conv1, self.conv2, self.conv3):
            length = _conv1d_length(length, conv.kernel_size[0], conv.stride[0], conv.padding[0])
        self.linear = nn.Linear(channels * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], 1, -1)
        for conv in (self.conv1, self.conv2, self.conv3):
            h = torch.relu(conv(h))
        return self.linear(h.flatten(1))


def _classifier(in_features: int, hidden: Sequence[int], num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(in_features, h), nn.ReLU()]
        in_features = h
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: conv 5×5 6 (padding 2), pool,
    conv 5×5 16, pool, FC 120, 84, num_classes. Inputs (N, in_channels, size, size) (default
    1×28×28) → logits (N, num_classes); 61.7 K parameters at the defaults."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = (size // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet-5 needs inputs of at least 12×12; got size={size}.")
        self.classifier = _classifier(16 * side * side, (120, 84), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ConvNet(nn.Module):
    """Conv-2/4/6 of Frankle & Carbin (2019, Figure 2): for each width in ``widths`` two 3×3
    convolutions (padding 1) with ReLU then a 2×2 max pool; then FC 256, 256, num_classes with
    ReLU. Inputs (N, in_channels, size, size) (default 3×32×32) → logits (N, num_classes).
    Widths (64,), (64, 128), (64, 128, 256) give Conv-2 (4.3 M parameters), Conv-4 (2.4 M) and
    Conv-6 (2.26 M; Figure 2 prints 1.7 M, which its own layer list contradicts)."""

    def __init__(self, widths: Sequence[int], num_classes: int = 10, in_channels: int = 3, size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
                channels = width
            layers.append(nn.MaxPool2d(2))
            size //= 2
        if size < 1:
            raise ValueError(f"{len(widths)} poolings need inputs of at least {2 ** len(widths)}×{2 ** len(widths)}.")
        self.features = nn.Sequential(*layers)
        self.classifier = _classifier(channels * size * size, (256, 256), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv2(num_classes: int = 10, in_channels: int = 3, size: int = 32) -> ConvNet:
    """Conv-2: conv 64, 64, pool; FC 256, 256, num_classes."""
    return ConvNet((64,), num_classes, in_channels, size)


def conv4(num_classes: int = 10, in_channels: int = 3, size: int = 32) -> ConvNet:
    """Conv-4: conv 64, 64, pool, 128, 128, pool; FC 256, 256, num_classes."""
    return ConvNet((64, 128), num_classes, in_channels, size)


def conv6(num_classes: int = 10, in_channels: int = 3, size: int = 32) -> ConvNet:
    """Conv-6: conv 64, 64, pool, 128, 128, pool, 256, 256, pool; FC 256, 256, num_classes."""
    return ConvNet((64, 128, 256), num_classes, in_channels, size)
