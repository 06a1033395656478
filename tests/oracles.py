"""Known-optimum fixtures shared by every solver's tests: tiny random instances whose
optimum brute force certifies, and an independent numpy evaluation of the objective."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable

import numpy as np
import torch

import maskopt as mo


def numpy_loss(problem: mo.LayerwiseProblem, mask: np.ndarray) -> float:
    """Σ|r| or Σr² of r = X (M ⊙ W)ᵀ + b − T, computed with numpy (independent of torch)."""
    X, W, T = problem.inputs.numpy(), problem.weight.numpy(), problem.target.numpy()
    b = 0.0 if problem.bias is None else problem.bias.numpy()
    r = X @ (np.asarray(mask, dtype=float) * W).T + b - T
    return float(np.abs(r).sum() if problem.loss == "l1" else np.square(r).sum())


def random_layerwise(seed: int, n: int, d: int, p: int, budget: mo.Budget, loss: str, bias: bool):
    """A random (not planted) tiny layer-wise problem."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((p, d))
    T = rng.standard_normal((n, p))
    b = rng.standard_normal(p) if bias else None
    return mo.LayerwiseProblem(X, W, T, budget, loss=loss, bias=b)


def tiny_instances():
    """(id, problem) pairs covering losses, scopes, bias, and budgets of 0 and of all weights."""
    budgets = [
        mo.Budget(k=0),
        mo.Budget(density=1.0),
        mo.Budget(density=0.4),
        mo.Budget(k=3),
        mo.Budget(k=1, scope="row"),
        mo.Budget(density=0.5, scope="row"),
        mo.Budget(sparsity=0.5, scope="layer"),
    ]
    out = []
    for i, (loss, bias, budget) in enumerate(itertools.product(("l1", "l2"), (False, True), budgets)):
        p = 1 if i % 3 == 0 else 2
        prob = random_layerwise(seed=i, n=5 + i % 4, d=4 if p == 2 else 6, p=p, budget=budget, loss=loss, bias=bias)
        out.append((f"{loss}-bias{int(bias)}-{budget.scope}-{i}", prob))
    return out


# ---------------------------------------------------------------- an enumerator and objectives independent of maskopt
# Nothing below calls maskopt's budget, objective or solver code: the scope units, the
# feasible masks and the losses are written again from their definitions (README), so a
# fault in maskopt cannot hide in its own oracle.

Unit = tuple[np.ndarray, int]  # (flat indices of the unit's weights, cap)


def scope_units(shapes: dict[str, tuple[int, ...]], scope: str, k: int) -> list[Unit]:
    """The scope units of ``Budget(k=k, scope=scope)`` over masks concatenated in the order
    of ``shapes`` (row-major): one unit of every weight (global), one per parameter
    (layer), one per slice ``param[j]`` (row); each keeps at most ``k``."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    starts = np.cumsum([0, *sizes])
    if scope == "global":
        return [(np.arange(starts[-1]), k)]
    if scope == "layer":
        return [(np.arange(a, b), k) for a, b in zip(starts, starts[1:])]
    if scope == "row":
        out = []
        for a, shape in zip(starts, shapes.values()):
            per_row = int(np.prod(shape[1:]))
            out += [(np.arange(a + j * per_row, a + (j + 1) * per_row), k) for j in range(shape[0])]
        return out
    raise ValueError(scope)


def count_masks(units: list[Unit]) -> int:
    """Π_U Σ_{j ≤ cap_U} C(|U|, j): the number of masks within the budget."""
    return math.prod(sum(math.comb(len(idx), j) for j in range(min(cap, len(idx)) + 1)) for idx, cap in units)


def enumerate_masks(n: int, units: list[Unit]) -> np.ndarray:
    """Every mask (M, n) bool that keeps at most ``cap`` weights of each unit (weights in
    no unit are never kept), each exactly once: the product over units of their subsets."""
    per_unit = []
    for idx, cap in units:
        subsets = [c for j in range(min(cap, len(idx)) + 1) for c in itertools.combinations(idx.tolist(), j)]
        per_unit.append(subsets)
    masks = np.zeros((math.prod(len(s) for s in per_unit), n), dtype=bool)
    for row, choice in enumerate(itertools.product(*per_unit)):
        for kept in choice:
            masks[row, list(kept)] = True
    return masks


def layerwise_losses(problem: mo.LayerwiseProblem, masks: np.ndarray) -> np.ndarray:
    """(M,) Σ|r| or Σr² for masks (M, out·in): r = X (M ⊙ W)ᵀ + b − T, in numpy."""
    X, W, T = problem.inputs.numpy(), problem.weight.numpy(), problem.target.numpy()
    b = 0.0 if problem.bias is None else problem.bias.numpy()
    M = masks.reshape(len(masks), *W.shape).astype(float)
    r = np.einsum("ni,moi->mno", X, M * W) + b - T
    return np.abs(r).sum(axis=(1, 2)) if problem.loss == "l1" else np.square(r).sum(axis=(1, 2))


def mlp_logits(module, x: np.ndarray, masks: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Logits of an ``nn.Sequential`` of Linear/ReLU in numpy float64, for a batch of masks
    ``{state_dict name: (M, *shape)}`` (unmasked parameters used whole): (M, N, K); without
    masks (N, K)."""
    masks = masks or {}
    batch = next(iter(masks.values())).shape[0] if masks else None
    h = x if batch is None else np.broadcast_to(x, (batch, *x.shape))
    for name, layer in module.named_children():
        if type(layer).__name__ == "ReLU":
            h = np.maximum(h, 0.0)
            continue
        W = layer.weight.detach().double().numpy()
        b = None if layer.bias is None else layer.bias.detach().double().numpy()
        W = W * masks.get(f"{name}.weight", 1.0)
        h = np.einsum("...ni,...oi->...no", h, W) if batch is not None else h @ W.T
        if b is not None:
            mb = masks.get(f"{name}.bias")
            h = h + (b if mb is None else (mb * b)[:, None, :])
    return h


def network_losses(problem: mo.DistillProblem, masks: np.ndarray, teachers, x: np.ndarray) -> np.ndarray:
    """(M,) Σ|s − t| (l1) or max|s − t| (linf) of the masked student for flat masks (M, n)
    (concatenated in the order of ``problem.params``), t the mean of the teachers' logits,
    every network evaluated in numpy from its own weights."""
    target = np.mean([mlp_logits(t, x) for t in teachers], axis=0)
    named, split, at = dict(problem.student.named_parameters()), {}, 0
    for name in problem.params:
        size = named[name].numel()
        split[name] = masks[:, at : at + size].reshape(len(masks), *named[name].shape).astype(float)
        at += size
    diff = np.abs(mlp_logits(problem.student, x, split) - target)
    return diff.sum(axis=(1, 2)) if problem.loss == "l1" else diff.max(axis=(1, 2))


@dataclasses.dataclass(frozen=True)
class KnownOptimum:
    """A tiny instance with every feasible mask enumerated and valued by the oracle above."""

    id: str
    problem: mo.Problem
    scope: str  # the budget is Budget(k=k, scope=scope)
    k: int
    masks: np.ndarray  # (M, n) every mask within the budget, flat in the order of mask_shapes()
    losses: np.ndarray  # (M,) their objectives, computed in numpy
    n_expected: int  # count_masks(units): what the enumeration must have visited
    losses_of: Callable[[np.ndarray], np.ndarray]  # the oracle: flat masks (M, n) -> (M,) objectives

    @property
    def optimum(self) -> float:
        return float(self.losses.min())

    def as_masks(self, flat: np.ndarray) -> dict[str, torch.Tensor]:
        """A flat mask as ``{name: bool tensor}`` in the problem's shapes."""
        out, at = {}, 0
        for name, shape in self.problem.mask_shapes().items():
            size = int(np.prod(shape))
            out[name] = torch.from_numpy(np.asarray(flat[at : at + size]).reshape(shape).copy())
            at += size
        return out

    def oracle_loss(self, masks) -> float:
        """The oracle's objective of ``{name: tensor}`` masks."""
        flat = np.concatenate([np.asarray(masks[n]).reshape(-1) for n in self.problem.mask_shapes()])
        return float(self.losses_of(flat[None])[0])


def _known(id_: str, problem: mo.Problem, scope: str, k: int, losses_of) -> KnownOptimum:
    units = scope_units(problem.mask_shapes(), scope, k)
    n = sum(int(np.prod(s)) for s in problem.mask_shapes().values())
    masks = enumerate_masks(n, units)
    return KnownOptimum(id_, problem, scope, k, masks, losses_of(masks), count_masks(units), losses_of)


@functools.cache
def known_layerwise() -> tuple[KnownOptimum, ...]:
    """Layer-wise instances (random, not planted: the optimum is no mask a solver could
    guess): L1 and L2 × global/layer/row budgets on a 2×6 layer, and four 2×9 layers
    (L1/L2 × global/row) on which the 1-opt local search seeding the MILP misses the
    optimum, so that a solver stopped early holds an incumbent above it."""
    out = []
    for i, (loss, scope) in enumerate(itertools.product(("l1", "l2"), ("global", "layer", "row"))):
        k = 2 if scope == "row" else 4
        prob = random_layerwise(seed=50 + i, n=12, d=6, p=2, budget=mo.Budget(k=k, scope=scope), loss=loss,
                                bias=i % 2 == 1)
        out.append(_known(f"layerwise-{loss}-{scope}", prob, scope, k, lambda m, p=prob: layerwise_losses(p, m)))
    for loss, scope, seed in (("l1", "global", 300), ("l1", "row", 301), ("l2", "global", 306), ("l2", "row", 306)):
        k = 5 if scope == "global" else 3
        prob = random_layerwise(seed=seed, n=10, d=9, p=2, budget=mo.Budget(k=k, scope=scope), loss=loss, bias=False)
        out.append(_known(f"layerwise-{loss}-{scope}-2x9", prob, scope, k, lambda m, p=prob: layerwise_losses(p, m)))
    return tuple(out)


def _mlp(sizes, seed):
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        mods += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    return torch.nn.Sequential(*mods).double()


@functools.cache
def known_network() -> tuple[KnownOptimum, ...]:
    """Distillation instances (3-3-2 ReLU student, two 3-5-2 teachers, 6 samples), L1 and
    L∞ × global/layer/row budgets over the two weight matrices."""
    out = []
    for i, (loss, scope) in enumerate(itertools.product(("l1", "linf"), ("global", "layer", "row"))):
        k = {"global": 6, "layer": 3, "row": 1}[scope]
        student, teachers = _mlp((3, 3, 2), 60 + i), [_mlp((3, 5, 2), 70 + i + t) for t in range(2)]
        x = np.random.default_rng(80 + i).standard_normal((6, 3))
        prob = mo.DistillProblem(student, teachers, x, mo.Budget(k=k, scope=scope), loss=loss)
        out.append(_known(f"network-{loss}-{scope}", prob, scope, k,
                          lambda m, p=prob, t=teachers, x=x: network_losses(p, m, t, x)))
    return tuple(out)
