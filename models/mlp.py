"""Fully connected networks: a configurable MLP (LeNet-300-100 is one) and the residual MLP of
the MNIST-1D lottery-ticket experiment."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
}


def activation_module(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; known: {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


def mlp(
    in_features: int,
    hidden: Sequence[int] = (100,),
    num_classes: int = 10,
    bias: bool = True,
    activation: str = "relu",
) -> nn.Sequential:
    """Flatten, then ``Linear``–activation pairs for each width in ``hidden``, then a
    ``Linear`` to ``num_classes``: inputs (N, *) with ``in_features`` elements per sample →
    logits (N, num_classes).

    A plain ``nn.Sequential`` (slicing, e.g. ``model[:-1]``, works), so a ReLU MLP is a
    student the exact network MILP accepts.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), activation_module(activation)]
        width = h
    layers.append(nn.Linear(width, num_classes, bias=bias))
    return nn.Sequential(*layers)


def lenet300(num_classes: int = 10, in_features: int = 784) -> nn.Sequential:
    """LeNet-300-100 (Frankle & Carbin 2019, Figure 2: 266 K parameters): inputs (N, 1, 28, 28)
    or (N, 784) → logits (N, num_classes)."""
    return mlp(in_features, (300, 100), num_classes)


class MNIST1DMLP(nn.Module):
    """The MLP of the MNIST-1D lottery-ticket experiment (Greydanus 2020, repository
    greydanus/mnist1d: ``SparseMLP`` in ``notebooks/5. lottery_tickets.ipynb``, the same as
    ``MLPBase`` in ``notebooks/models.py``; hidden_size=500 in that experiment)::

        h = relu(linear1(x))
        h = h + relu(linear2(h))      # the residual connection
        logits = linear3(h)

    Inputs (N, in_features) (default 40) → logits (N, num_classes); 276 K parameters at the
    default 40-500-500-10.
    """

    def __init__(self, in_features: int = 40, hidden: int = 500, num_classes: int = 10) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear1(x.flatten(1)))
        h = h + torch.relu(self.linear2(h))
        return self.linear3(h)

    def residual_branch_ends(self) -> list[nn.Module]:
        """The layer whose (activated) output is added to the stream (see ``initialize``)."""
        return [self.linear2]
