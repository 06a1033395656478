"""Built-in synthetic instances with a planted (known) mask."""

from __future__ import annotations

import numpy as np

from maskopt.budget import Budget, count_for_density
from maskopt.masks import MaskSet
from maskopt.problems import LayerwiseProblem


def planted_layerwise(
    n_samples: int = 40,
    n_in: int = 20,
    n_out: int = 1,
    density: float = 0.25,
    noise: float = 0.1,
    seed: int = 0,
    loss: str = "l1",
    scope: str = "global",
    bias: bool = False,
) -> tuple[LayerwiseProblem, MaskSet]:
    """A layer-wise problem whose target comes from a planted mask.

    inputs X ~ N(0, 1) of shape (n_samples, n_in); weight W ~ N(0, 1/n_in) of shape
    (n_out, n_in); every row of the planted mask keeps ``count_for_density(density, n_in)``
    weights chosen uniformly; target = X (M ⊙ W)ᵀ (+ b) + ε with ε ~ N(0, σ²),
    σ = noise · std(X (M ⊙ W)ᵀ). The budget is ``Budget(density=density, scope=scope)``,
    which the planted mask meets. With ``noise=0`` the planted mask has objective 0.

    Returns: (problem, planted mask).
    """
    if n_samples < 1 or n_in < 1 or n_out < 1:
        raise ValueError("n_samples, n_in and n_out must be positive.")
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0; got {noise}.")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_in))
    W = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
    k = count_for_density(density, n_in)
    M = np.zeros((n_out, n_in), dtype=bool)
    for o in range(n_out):
        M[o, rng.choice(n_in, size=k, replace=False)] = True
    b = rng.standard_normal(n_out) if bias else None
    clean = X @ (M * W).T + (0.0 if b is None else b)
    scale = float(np.std(clean)) if np.std(clean) > 0 else 1.0
    target = clean + noise * scale * rng.standard_normal(clean.shape)
    problem = LayerwiseProblem(X, W, target, Budget(density=density, scope=scope), loss=loss, bias=b)
    return problem, MaskSet({"weight": M}, method="planted", budget=problem.budget)
