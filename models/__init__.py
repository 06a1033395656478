"""maskopt.models: architectures and initialisations.

``create(name, **kwargs)`` builds a registered architecture (``names()`` lists them);
``initialize(model, scheme)`` re-initialises its Linear/Conv weights. Input shapes:

=============  ==========================  ==========================================
name           inputs                      source
=============  ==========================  ==========================================
mlp            (N, in_features) or any     configurable fully connected ReLU network
lenet300       (N, 1, 28, 28) / (N, 784)   LeNet-300-100 (Frankle & Carbin 2019)
mnist1d_mlp    (N, 40)                     40-500-500-10 with residual (Greydanus 2020)
cnn1d          (N, 40) / (N, 1, 40)        MNIST-1D ConvBase (Greydanus 2020)
lenet5         (N, 1, 28, 28)              LeNet-5 (LeCun et al. 1998), ReLU, max pool
conv2/4/6      (N, 3, 32, 32)              Conv-2/4/6 (Frankle & Carbin 2019)
resnet20       (N, 3, 32, 32)              ResNet-20 (He et al. 2016)
vgg11/vgg16    (N, 3, 32, 32)              VGG with batch norm, CIFAR classifier
=============  ==========================  ==========================================

Every model returns logits (N, num_classes) and is built from Linear, Conv1d/Conv2d,
BatchNorm, ReLU and pooling only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from maskopt.models._util import check_kwargs, fork_seed
from maskopt.models.conv import CNN1D, ConvNet, LeNet5, conv2, conv4, conv6
from maskopt.models.init import SCHEMES, gaussian_second_moment, initialize, residual_branch_ends, vr_gaussian
from maskopt.models.mlp import MNIST1DMLP, lenet300, mlp
from maskopt.models.resnet import ResNet20
from maskopt.models.vgg import VGG, vgg11, vgg16

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "lenet300": lenet300,
    "mnist1d_mlp": MNIST1DMLP,
    "cnn1d": CNN1D,
    "lenet5": LeNet5,
    "conv2": conv2,
    "conv4": conv4,
    "conv6": conv6,
    "resnet20": ResNet20,
    "vgg11": vgg11,
    "vgg16": vgg16,
}


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def create(name: str, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword options ``kwargs``
    (e.g. ``num_classes``). With ``seed``, the parameters are drawn from a generator seeded with
    it (same seed, same model) and torch's global generator is left as it was."""
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(names())}.")
    builder = _MODELS[name]
    check_kwargs(f"create({name!r})", builder, kwargs)
    with fork_seed(seed):
        return builder(**kwargs)


__all__ = [
    "CNN1D", "MNIST1DMLP", "SCHEMES", "VGG", "ConvNet", "LeNet5", "ResNet20", "create",
    "gaussian_second_moment", "initialize", "names", "residual_branch_ends", "vr_gaussian",
]
