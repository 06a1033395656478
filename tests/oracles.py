"""Known-optimum fixtures shared by every solver's tests: tiny random instances whose
optimum brute force certifies, and an independent numpy evaluation of the objective."""

from __future__ import annotations

import itertools

import numpy as np

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
