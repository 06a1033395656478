"""Weight initialisations for the Linear and Conv layers of a model."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from torch import nn

from maskopt.models._util import check_kwargs, fork_seed
from maskopt.models.resnet import BasicBlock

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

_ACTIVATIONS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "relu": lambda z, slope: np.maximum(z, 0.0),
    "leaky_relu": lambda z, slope: np.where(z > 0, z, slope * z),
    "tanh": lambda z, slope: np.tanh(z),
    "linear": lambda z, slope: z,
}


def gaussian_second_moment(activation: str = "relu", negative_slope: float = 0.01, points: int = 64) -> float:
    """E_{u~N(0,1)}[φ(u)²] = (2π)^(-1/2) ∫ φ(u)² exp(-u²/2) du by ``points``-node Gauss–Hermite
    quadrature (probabilists' weight, ``numpy.polynomial.hermite_e``). ReLU gives 1/2, linear 1,
    leaky ReLU (1 + slope²)/2 (exact for an even number of nodes, which are symmetric about 0)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; known: {sorted(_ACTIVATIONS)}.")
    nodes, weights = hermegauss(points)
    values = _ACTIVATIONS[activation](nodes, negative_slope)
    return float(weights @ values**2 / math.sqrt(2 * math.pi))


def fan_in(layer: nn.Module) -> int:
    """Inputs summed into one output: ``in_features`` for Linear, ``in_channels / groups ·
    ∏ kernel_size`` for Conv (the number of elements of ``weight[0]``)."""
    return layer.weight[0].numel()


def residual_branch_ends(model: nn.Module) -> list[nn.Module]:
    """The last layer of every residual branch of ``model``: the layers returned by
    ``residual_branch_ends()`` of each submodule that defines it, and ``bn2`` of each ResNet
    ``BasicBlock``. Empty for a plain chain."""
    ends: list[nn.Module] = []
    for module in model.modules():
        if hasattr(module, "residual_branch_ends"):
            ends += module.residual_branch_ends()
        elif isinstance(module, BasicBlock):
            ends.append(module.bn2)
    return ends


def _is_affine_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and module.affine


def _kaiming_normal(weight: torch.Tensor, nonlinearity: str = "relu", negative_slope: float = 0.0) -> None:
    nn.init.kaiming_normal_(weight, a=negative_slope, nonlinearity=nonlinearity)


def _kaiming_uniform(weight: torch.Tensor, nonlinearity: str = "relu", negative_slope: float = 0.0) -> None:
    nn.init.kaiming_uniform_(weight, a=negative_slope, nonlinearity=nonlinearity)


def _xavier_normal(weight: torch.Tensor, gain: float = 1.0) -> None:
    nn.init.xavier_normal_(weight, gain=gain)


def _xavier_uniform(weight: torch.Tensor, gain: float = 1.0) -> None:
    nn.init.xavier_uniform_(weight, gain=gain)


_PER_WEIGHT: dict[str, Callable[..., None]] = {
    "kaiming_normal": _kaiming_normal,
    "kaiming_uniform": _kaiming_uniform,
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
}


def vr_gaussian(
    model: nn.Module, activation: str = "relu", negative_slope: float = 0.01, reduction: float | None = None
) -> None:
    """Variance-reduced Gaussian initialisation, in place. Every Linear/Conv weight gets

        W_ij ~ N(0, r_l / (fan_in_l · m_φ)),   m_φ = E_{u~N(0,1)}[φ(u)²]   (``gaussian_second_moment``)

    with ``fan_in`` as in :func:`fan_in` and biases 0. The reduction r_l is 1/B (or
    ``reduction`` when given) for the last layer of each of the model's B residual branches
    (:func:`residual_branch_ends`) and 1 for every other layer, so r_l = 1 throughout a plain
    chain. A BatchNorm that ends a branch gets γ = √r, β = 0 instead, since it sets the
    branch's output variance itself.

    Why: a pre-activation z = W φ(h) has E[z²] = fan_in · Var(W) · E[φ(h)²]. For h ~ N(0, q) and
    a positively homogeneous φ (relu, leaky_relu, linear) E[φ(h)²] = q · m_φ, so every layer
    maps E[z²] = q to r_l · q: variance is preserved through a chain of any depth (for tanh,
    q = 1 is the fixed point). Every layer's input is treated as a φ-activation, the first
    included (as Kaiming does). A residual stream s_{k+1} = s_k + F_k(s_k) with branches scaled
    to E[F_k²] = E[s_k²]/B grows to (1 + 1/B)^B E[s_0²] < e · E[s_0²] over the B branches
    (Fixup / SkipInit reasoning: the sum of B branches must not grow with B). Examples: a ReLU
    MLP gets N(0, 2/fan_in) everywhere (= Kaiming normal); ResNet-20 (B = 9) gets
    N(0, 2/fan_in) convs and γ = 1/3 on each block's ``bn2``; the MNIST-1D MLP has B = 1, r = 1.
    """
    second_moment = gaussian_second_moment(activation, negative_slope)
    ends = residual_branch_ends(model)
    if reduction is None:
        reduction = 1.0 / len(ends) if ends else 1.0
    elif not ends:
        raise ValueError("reduction scales the residual branches, but the model has none (see residual_branch_ends).")
    elif reduction <= 0:
        raise ValueError(f"reduction must be positive; got {reduction}.")
    if bad := [type(m).__name__ for m in ends if not isinstance(m, WEIGHTED) and not _is_affine_batch_norm(m)]:
        raise ValueError(f"A residual branch must end in a Linear/Conv layer or an affine BatchNorm; got {bad}.")
    end_ids = {id(m) for m in ends}
    with torch.no_grad():
        for module in model.modules():
            r = reduction if id(module) in end_ids else 1.0
            if isinstance(module, WEIGHTED):
                module.weight.normal_(0.0, math.sqrt(r / (fan_in(module) * second_moment)))
            elif id(module) in end_ids:  # an affine BatchNorm
                module.weight.fill_(math.sqrt(r))
            else:
                continue
            if module.bias is not None:
                module.bias.zero_()


SCHEMES = (*_PER_WEIGHT, "vr_gaussian")


def initialize(model: nn.Module, scheme: str, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Re-initialise the weights of every Linear/Conv layer of ``model`` in place by ``scheme``
    and set their biases to 0; returns ``model``. Other parameters (BatchNorm) are left alone,
    except as :func:`vr_gaussian` says.

    Schemes and their keyword options: ``"kaiming_normal"``/``"kaiming_uniform"``
    (``nonlinearity="relu"``, ``negative_slope=0.0``; fan_in mode), ``"xavier_normal"``/
    ``"xavier_uniform"`` (``gain=1.0``), ``"vr_gaussian"`` (``activation="relu"``,
    ``negative_slope=0.01``, ``reduction=None``; see :func:`vr_gaussian`). With ``seed``, the
    weights are drawn from generators seeded with it (CPU, or the CUDA devices the model is on)
    and torch's global generators are left as they were.
    """
    devices = {p.device for p in model.parameters()}
    if scheme == "vr_gaussian":
        check_kwargs("initialize('vr_gaussian')", vr_gaussian, kwargs, model)
        with fork_seed(seed, devices):
            vr_gaussian(model, **kwargs)
        return model
    if scheme not in _PER_WEIGHT:
        raise ValueError(f"Unknown initialisation {scheme!r}; known: {', '.join(SCHEMES)}.")
    init = _PER_WEIGHT[scheme]
    check_kwargs(f"initialize({scheme!r})", init, kwargs, torch.empty(0))
    with fork_seed(seed, devices), torch.no_grad():
        for module in model.modules():
            if isinstance(module, WEIGHTED):
                init(module.weight, **kwargs)
                if module.bias is not None:
                    module.bias.zero_()
    return model
