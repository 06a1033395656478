"""Sparse transfer: adapt a (sparse) network trained on task A to task B.

``mode="linear"``: linear fine-tuning: the network's features (the inputs of its head, computed
once in eval mode) stay fixed and a new head is trained on them. ``mode="full"``: full
fine-tuning: every weight is trained with the mask fixed (pruned weights stay exactly zero);
the new head is dense.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from maskopt.data import Dataset
from maskopt.train import TrainResult, check_masks, train

MODES = ("linear", "full")


def class_subset(data: Dataset, classes: Sequence[int]) -> Dataset:
    """The samples of ``data`` (both splits) whose label is in ``classes``, relabelled
    0..len(classes)−1 in the order given (e.g. digits 5–9 → 0–4)."""
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or not all(0 <= c < data.num_classes for c in classes):
        raise ValueError(f"classes must be distinct labels in [0, {data.num_classes}); got {classes}.")
    relabel = torch.full((data.num_classes,), -1, dtype=torch.int64)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))

    def part(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = relabel[y] >= 0
        return x[keep], relabel[y[keep]]

    (x, y), (xt, yt) = part(data.x, data.y), part(data.x_test, data.y_test)
    return Dataset(f"{data.name}[{','.join(map(str, classes))}]", x, y, xt, yt, len(classes))


def last_linear(model: nn.Module) -> str:
    """The name of the model's last ``nn.Linear`` module (its classifier head)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear module to replace; name its head with head=.")
    return names[-1]


def transfer(model: nn.Module, data: Dataset, mode: str = "full", *, masks: Mapping[str, torch.Tensor] | None = None,
             head: str | None = None, validation: tuple[torch.Tensor, torch.Tensor] | None = None,
             seed: int = 0, **options) -> TrainResult:
    """A copy of ``model`` (trained on task A; not modified) adapted to ``data`` (task B).

    Args:
        mode: ``"linear"`` (features fixed, new head trained) or ``"full"`` (every weight
            trained, ``masks`` fixed).
        masks: parameter name → bool mask of ``model`` (e.g. a MaskSet or a sparse training
            result's ``masks``): in full mode pruned weights stay exactly zero; in linear mode
            they are checked to be zero. Masks of the head are dropped (the new head is
            dense). None: no mask.
        head: the name of the ``nn.Linear`` module replaced by a fresh
            ``Linear(in, data.num_classes)`` drawn from ``seed`` (default: the last Linear).
        validation: ``(x, y)`` of task B, evaluated beside the test split (to choose a step).
        options: :func:`maskopt.train.train`'s (``steps``/``epochs``, ``lr``, ...; ``seed``
            also orders the batches).

    Returns: the :class:`~maskopt.train.TrainResult`; its ``model`` is the whole adapted
    network (linear mode: its history is the head's training on the fixed features).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a maskopt.data.Dataset of task B; got {type(data).__name__}.")
    adapted = copy.deepcopy(model)
    head = last_linear(adapted) if head is None else head
    old = adapted.get_submodule(head)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"head {head!r} is a {type(old).__name__}; transfer replaces an nn.Linear.")
    gen = torch.Generator().manual_seed(seed)
    new = nn.Linear(old.in_features, data.num_classes, bias=old.bias is not None).to(old.weight.device)
    with torch.no_grad():  # torch's default initialization, drawn on the CPU from the seed
        bound = 1.0 / old.in_features ** 0.5
        for p in new.parameters():
            p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))
    parent, _, leaf = head.rpartition(".")
    setattr(adapted.get_submodule(parent) if parent else adapted, leaf, new)
    kept = {n: m for n, m in (masks or {}).items() if not n.startswith(f"{head}.")}
    if mode == "full":
        return train(adapted, data, masks=kept, validation=validation, seed=seed, **options)
    for n, m in check_masks(adapted, kept).items():  # the fixed features must be the sparse network's
        if bool((adapted.get_parameter(n).detach() * ~m).any()):
            raise ValueError(f"parameter {n!r} has non-zero weights where its mask prunes them; apply the masks to "
                             "the model first (e.g. a sparse training result's model).")
    features = _features(adapted, new)
    feats = Dataset(f"{data.name} features", features(data.x), data.y, features(data.x_test), data.y_test,
                    data.num_classes)
    val = None if validation is None else (features(validation[0]), validation[1])
    result = train(new, feats, validation=val, seed=seed, **options)
    return TrainResult(adapted.eval(), result.history, result.steps, result.samples, result.time)


def _features(model: nn.Module, head: nn.Linear):
    """x ↦ the inputs of ``head`` in ``model``'s forward pass (eval mode, no gradients)."""
    def features(x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda mod, inp, res: out.append(inp[0].detach()))
        model.eval()
        try:
            with torch.no_grad():
                for i in range(0, x.shape[0], 4096):
                    model(x[i : i + 4096].to(head.weight.device))
        finally:
            hook.remove()
        return torch.cat(out).cpu()

    return features
