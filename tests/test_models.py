"""Architectures: shapes, parameter counts from the papers, forward/backward on CPU."""

from __future__ import annotations

import torch

from maskopt.models.resnet import ResNet20


def test_resnet20_has_the_papers_parameter_count_and_trains():
    model = ResNet20()
    n = sum(p.numel() for p in model.parameters())
    assert 0.26e6 < n < 0.28e6  # He et al. 2016, Table 6: 0.27 M
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
