"""Training networks: dense teacher ensembles and masked tickets.

In masked training the pruned weights stay exactly zero: they are zeroed before the first
step, their gradients are zeroed before every optimizer step (so momentum and Adam moments
never see them) and they are zeroed again after it (so weight decay cannot revive them).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from maskopt.data import Dataset
from maskopt.device import resolve_device

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainResult:
    """The trained ``model`` and one ``history`` record per evaluation: ``step`` (optimizer
    steps so far), ``epoch`` (passes over the training data, fractional), ``train_loss``
    (mean training loss since the previous record), ``train_acc`` / ``test_loss`` /
    ``test_acc`` (accuracies in %, on the whole split, in eval mode; the accuracies only
    for class labels, the test entries only when test data was given, ``val_loss`` /
    ``val_acc`` likewise when a ``validation`` split was given; ``train_acc`` for a
    :class:`~maskopt.data.Dataset` and for a training ``DataLoader`` over a map-style dataset,
    whose dataset is read in order by a loader of its own, so the training batches and the
    random state they draw from are untouched). ``steps``: optimizer steps taken; ``samples``:
    training samples processed (Σ batch sizes); ``time``: seconds."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    samples: int = 0
    time: float = 0.0

    def best(self, key: str = "test_acc") -> float:
        """The largest value of ``key`` over the history (e.g. the maximum test accuracy)."""
        values = [h[key] for h in self.history if h.get(key) is not None]
        if not values:
            raise ValueError(f"no {key!r} in the history; keys: {sorted(self.history[0]) if self.history else []}.")
        return max(values)

    def final(self, key: str = "test_acc") -> float:
        """The last recorded value of ``key``."""
        values = [h[key] for h in self.history if h.get(key) is not None]
        if not values:
            raise ValueError(f"no {key!r} in the history.")
        return values[-1]

    def chosen(self, by: str = "val_acc") -> dict:
        """The history record of the first evaluation with the largest ``by``: the step a
        validation split chooses (``chosen()["test_acc"]`` is the test accuracy there, which,
        unlike :meth:`best`, is not selected on the test set)."""
        records = [h for h in self.history if h.get(by) is not None]
        if not records:
            raise ValueError(f"no {by!r} in the history (train with validation=(x, y) to record val_acc).")
        return max(records, key=lambda h: h[by])  # max keeps the first of equal values


def check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``masks`` as bool tensors keyed by parameter names of ``model``; raises ValueError on an
    unknown name or a wrong shape."""
    params = dict(model.named_parameters())
    out = {}
    for name, m in masks.items():
        if name not in params:
            raise ValueError(f"mask {name!r} names no parameter of the model; its parameters: {list(params)}.")
        if tuple(m.shape) != tuple(params[name].shape):
            raise ValueError(f"mask {name!r} has shape {tuple(m.shape)}; "
                             f"the parameter has {tuple(params[name].shape)}.")
        out[name] = torch.as_tensor(m).to(device=params[name].device, dtype=torch.bool)
    return out


def mask_gradients(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradients of pruned weights (before an optimizer step, so its moments never
    see them); ``params`` and ``masks`` keyed alike, masks on the parameters' devices."""
    with torch.no_grad():
        for name, m in masks.items():
            if params[name].grad is not None:
                params[name].grad.mul_(m)


def zero_pruned(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Set pruned weights to exactly zero (after an optimizer step, so weight decay cannot
    revive them)."""
    with torch.no_grad():
        for name, m in masks.items():
            params[name].mul_(m.to(params[name].device))


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float, momentum: float | None = None,
                   weight_decay: float = 0.0, fused: bool | None = None) -> torch.optim.Optimizer:
    """``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``, default 0.9; Adam's have no
    momentum option, so giving one is refused) over ``params``; ``fused`` selects Adam's
    one-pass implementation (None: torch's default). The one optimizer factory of maskopt:
    training runs and mask-score training both build theirs here."""
    if momentum is not None and name != "sgd":
        raise ValueError(f"momentum applies to optimizer='sgd'; {name!r} has its own moment estimates (drop it).")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9 if momentum is None else momentum,
                               weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {name!r}.")


def _batches(data, batch_size: int, shuffle: bool, seed: int) -> tuple[Iterator, int, tuple | None]:
    """(endless training batches, batches per epoch, (train split, test split)); a split is
    ``(x, y)`` tensors, a loader, or None."""
    if isinstance(data, Dataset):
        return data.batches(batch_size, shuffle, seed), math.ceil(data.x.shape[0] / batch_size), \
            ((data.x, data.y), (data.x_test, data.y_test))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        train_loader, test_loader = data
        try:
            per_epoch = len(train_loader)
        except TypeError:
            raise ValueError("the training loader must have a length (e.g. a torch DataLoader).") from None

        def endless():
            while True:
                yield from train_loader

        return endless(), per_epoch, (_in_order(train_loader), test_loader)
    raise TypeError("data must be a maskopt.data.Dataset or a pair (train_loader, test_loader or None).")


def _in_order(loader) -> DataLoader | None:
    """A single-process loader reading a training ``DataLoader``'s map-style dataset in order,
    to measure the accuracy on the whole split without using the training loader's iterator
    (persistent workers would reset it mid-epoch) or its generator; None for any other
    iterable (it may be a one-pass stream), which then reports no ``train_acc``."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    return DataLoader(loader.dataset, batch_size=loader.batch_size or 256, collate_fn=loader.collate_fn)


def _to(y, device: torch.device):
    """``y`` (a tensor, None, or a tuple of them) on ``device``."""
    if isinstance(y, (tuple, list)):
        return tuple(_to(v, device) for v in y)
    return y.to(device) if isinstance(y, torch.Tensor) else y


def _evaluate(model: nn.Module, split, loss_fn, labels: bool, device: torch.device) -> tuple[float, float | None]:
    """(mean loss, accuracy in % or None) of ``model`` on a split: (x, y) tensors or a loader."""
    chunks = ([(split[0][i : i + 4096], split[1][i : i + 4096]) for i in range(0, split[0].shape[0], 4096)]
              if isinstance(split, tuple) else split)
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in chunks:
            x, y = x.to(device), y.to(device)
            out = model(x)
            total += float(loss_fn(out, y)) * x.shape[0]
            if labels:
                correct += int((out.argmax(dim=1) == y).sum())
            count += x.shape[0]
    if count == 0:
        raise ValueError("cannot evaluate on an empty split.")
    return total / count, (100.0 * correct / count if labels else None)


def train(
    model: nn.Module,
    data,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float | None = None,
    weight_decay: float = 0.0,
    shuffle: bool = True,
    eval_every: int | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    on_step: Callable[[int], None] | None = None,
    validation=None,
    device: str = "cpu",
    seed: int = 0,
    verbose: bool = True,
) -> TrainResult:
    """Train ``model`` in place (moved to ``device``) and return it with its history.

    Args:
        data: a :class:`~maskopt.data.Dataset` (batches drawn in memory, reshuffled every
            epoch from ``seed``; test split evaluated) or ``(train_loader, test_loader)``
            of ``(x, y)`` batches (``test_loader`` may be None).
        masks: parameter name → bool mask (same shape); pruned weights stay exactly zero.
        steps / epochs: training length, exactly one of them (epochs may be fractional).
        eval_every: steps between evaluations (default: once per epoch); always after the
            last step.
        momentum: SGD's (default 0.9); refused for Adam/AdamW.
        loss_fn: ``loss_fn(logits, y)`` → mean loss; default cross-entropy on class labels
            (the only case in which accuracies are reported).
        on_step: called with the step number after every optimizer step (e.g. to record
            weights during training).
        validation: a held-out split, ``(x, y)`` tensors or a loader of ``(x, y)`` batches,
            evaluated with the test split (``val_loss`` / ``val_acc`` in the history; it
            never affects training): to choose a step without the test set
            (:meth:`TrainResult.chosen`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``: the model and the masks
            move there, and so does every batch (inputs and targets, or tuples of them) and
            every evaluated split, chunk by chunk.
        seed: the batch order of a Dataset (a CPU generator: the same order on every
            device); a loader keeps its own.
        verbose: a progress bar over the steps.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=.")
    if epochs is not None and not epochs > 0:
        raise ValueError(f"epochs must be > 0; got {epochs}.")
    if batch_size < 1 or not lr > 0:
        raise ValueError(f"need batch_size ≥ 1 and lr > 0; got {batch_size}, {lr}.")
    dev = resolve_device(device)
    model.to(dev)
    batches, per_epoch, (train_split, test_split) = _batches(data, batch_size, shuffle, seed)
    total = int(steps) if steps is not None else max(1, round(float(epochs) * per_epoch))
    if total < 0:
        raise ValueError(f"steps must be ≥ 0; got {total}.")
    every = per_epoch if eval_every is None else eval_every
    if every < 1:
        raise ValueError(f"eval_every must be ≥ 1; got {eval_every}.")
    labels = loss_fn is None
    loss_fn = loss_fn or nn.functional.cross_entropy
    masks = check_masks(model, masks) if masks is not None else {}
    params = dict(model.named_parameters())
    zero_pruned(params, masks)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    history, running, since, samples = [], 0.0, 0, 0
    t0 = time.perf_counter()
    bar = tqdm(range(total), desc="train", disable=not verbose, leave=False)
    for step in bar:
        model.train()
        x, y = next(batches)
        loss = loss_fn(model(x.to(dev)), _to(y, dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mask_gradients(params, masks)
        opt.step()
        zero_pruned(params, masks)
        if on_step is not None:
            on_step(step + 1)
        running += float(loss.detach())
        samples += x.shape[0]
        since += 1
        if (step + 1) % every == 0 or step == total - 1:
            model.eval()
            record = {"step": step + 1, "epoch": (step + 1) / per_epoch, "train_loss": running / since}
            if labels and train_split is not None:
                with torch.random.fork_rng(devices=[]):  # random transforms in the dataset leave the RNG as it was
                    record["train_acc"] = _evaluate(model, train_split, loss_fn, True, dev)[1]
            if test_split is not None:
                record["test_loss"], record["test_acc"] = _evaluate(model, test_split, loss_fn, labels, dev)
            if validation is not None:
                with torch.random.fork_rng(devices=[]):
                    record["val_loss"], record["val_acc"] = _evaluate(model, validation, loss_fn, labels, dev)
            history.append(record)
            running, since = 0.0, 0
            if verbose:
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in ("train_loss", "test_acc")})
    bar.close()
    model.eval()
    return TrainResult(model, history, total, samples, time.perf_counter() - t0)


@dataclass
class Trainer:
    """Repeated training runs of one ``model`` from given states, as iterative pruning needs.

    ``names``: its maskable parameters; ``options``: :func:`train`'s keyword options
    (``steps`` or ``epochs``, ``lr``, ...) used by every run unless overridden. The model
    moves to ``options["device"]`` at once, so hooks (``on_step``) may keep buffers beside
    its parameters.
    """

    model: nn.Module
    data: object
    names: Sequence[str]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    options: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model.to(resolve_device(self.options.get("device", "cpu")))

    def run(self, masks: Mapping[str, torch.Tensor] | None, state: Mapping[str, torch.Tensor], **override
            ) -> TrainResult:
        """Load ``state`` (a ``state_dict``) and train with ``masks`` fixed (None = dense)."""
        self.model.load_state_dict(state)
        options = {**self.options, **override}
        if "steps" in override:
            options.pop("epochs", None)
        if "epochs" in override:
            options.pop("steps", None)
        return train(self.model, self.data, masks=masks, loss_fn=self.loss_fn, **options)

    def state(self) -> dict[str, torch.Tensor]:
        """A detached CPU copy of the model's ``state_dict``."""
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def weights(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the maskable parameters."""
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().cpu().clone() for n in self.names}


def train_ticket(model: nn.Module, masks: Mapping[str, torch.Tensor], data, epochs: float | None = 20,
                 steps: int | None = None, **options) -> TrainResult:
    """Train a copy of ``model`` from its current weights (its initialization) with ``masks``
    fixed: pruned weights are zero and stay exactly zero. ``model`` itself is not modified.

    ``masks`` maps parameter names (``state_dict`` names, e.g. a :class:`~maskopt.MaskSet`)
    to bool tensors; every other option is :func:`train`'s. Give ``steps=`` instead of
    ``epochs`` with ``epochs=None``.
    """
    if steps is not None:
        epochs = None
    return train(copy.deepcopy(model), data, masks=masks, steps=steps, epochs=epochs, **options)


_TEACHERS_FORMAT = "maskopt-teachers/1"


def train_teachers(
    data,
    architectures: Sequence[str | tuple[str, Mapping]] = ("mlp",),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: float = 20,
    path: str | os.PathLike | None = None,
    **options,
) -> list[nn.Module]:
    """Train an ensemble: one model per (architecture, seed), each built by
    :func:`maskopt.models.create` after ``torch.manual_seed(seed)`` and trained with
    :func:`train` (``options``; the batch order is seeded by the same seed).

    Args:
        architectures: registry names or ``(name, kwargs)`` pairs, e.g.
            ``[("mlp", {"in_features": 64, "hidden": [128], "num_classes": 10})]``.
        path: when given, the ensemble is saved there (see :func:`save_teachers`).

    Returns: the trained models in eval mode, ordered by architecture then seed.
    """
    from maskopt import models

    if not architectures or not seeds:
        raise ValueError("train_teachers needs at least one architecture and one seed.")
    specs = [(a, {}) if isinstance(a, str) else (a[0], dict(a[1])) for a in architectures]
    teachers, meta = [], []
    for name, kwargs in specs:
        for seed in seeds:
            torch.manual_seed(seed)
            model = models.create(name, **kwargs)
            result = train(model, data, epochs=epochs, seed=seed, **options)
            teachers.append(result.model.eval())
            last = result.history[-1] if result.history else {}
            meta.append({"name": name, "kwargs": kwargs, "seed": seed, "test_acc": last.get("test_acc")})
    if path is not None:
        save_teachers(path, teachers, meta)
    return teachers


def save_teachers(path: str | os.PathLike, teachers: Sequence[nn.Module], specs: Sequence[Mapping]) -> None:
    """Write an ensemble to one safetensors file, atomically: tensor ``"{i}/{key}"`` holds
    ``state_dict`` entry ``key`` of teacher ``i``; the metadata holds the specs (JSON list of
    ``{"name", "kwargs", ...}`` that rebuild each architecture with :func:`maskopt.models.create`)."""
    from safetensors.torch import save_file

    from maskopt.report import atomic_path

    if len(teachers) != len(specs):
        raise ValueError(f"{len(teachers)} teachers but {len(specs)} specs.")
    tensors = {f"{i}/{k}": v.detach().cpu().contiguous() for i, t in enumerate(teachers)
               for k, v in t.state_dict().items()}
    meta = {"format": _TEACHERS_FORMAT, "specs": json.dumps(list(specs), default=str)}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, tmp, metadata=meta)


def load_teachers(path: str | os.PathLike) -> list[nn.Module]:
    """The ensemble written by :func:`save_teachers` / :func:`train_teachers`, in eval mode."""
    from maskopt import models
    from maskopt.report import read_tagged

    tensors, meta = read_tagged(path, _TEACHERS_FORMAT, "maskopt teacher file")
    try:
        out = []
        for i, spec in enumerate(json.loads(meta["specs"])):
            model = models.create(spec["name"], **spec["kwargs"])
            prefix = f"{i}/"
            model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            out.append(model.eval())
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable maskopt teacher file ({type(err).__name__}: {err}).") from err
    return out
