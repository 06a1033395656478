r"""Classical solvers of the LASSO  min_x ½‖A x − y‖² + λ‖x‖₁  on a batch of rows ``y (batch, m)``.

ISTA:   x⁺ = η_{λ/L}(x − A^T(A x − y)/L),   η_θ(z) = sign(z)·max(|z| − θ, 0),  L = ‖A‖₂².
FISTA:  the same step taken at z = x + (t_{k−1} − 1)/t_k · (x − x_prev)  (Beck & Teboulle).

With continuation, iteration k uses λ_k = max(λ, λ₀·ρ^k) instead of λ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from maskopt.solvers.unrolled.problem import nmse_db, nmse_db_per_sample


def lipschitz(A: torch.Tensor) -> float:
    """L = ‖A‖₂² (largest eigenvalue of AᵀA), the Lipschitz constant of the LASSO gradient."""
    return float(torch.linalg.matrix_norm(A.double(), ord=2) ** 2)


def shrink(z: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """Soft thresholding η_θ(z) = sign(z)·max(|z| − θ, 0) (θ broadcasts against z)."""
    return torch.sign(z) * torch.clamp(z.abs() - theta, min=0.0)


@dataclass(frozen=True)
class Continuation:
    """λ continuation: iteration k uses max(λ, lam0·decay^k)."""

    lam0: float
    decay: float

    def __post_init__(self) -> None:
        if self.lam0 <= 0 or not 0.0 < self.decay <= 1.0:
            raise ValueError(f"need lam0 > 0 and 0 < decay <= 1, got lam0={self.lam0}, decay={self.decay}.")


@dataclass
class ProxTrace:
    """x: the last iterate ``(batch, n)``; nmse_db, nmse_db_per_sample: NMSE (dB, aggregate and
    per-sample mean) after each iteration, empty unless the true x was given."""

    x: torch.Tensor
    nmse_db: list[float]
    nmse_db_per_sample: list[float]


def _proximal_gradient(A: torch.Tensor, y: torch.Tensor, lam: float, iters: int, accelerate: bool,
                       continuation: Continuation | None, x_true: torch.Tensor | None) -> ProxTrace:
    if lam < 0 or iters < 0:
        raise ValueError(f"need lam >= 0 and iters >= 0, got lam={lam}, iters={iters}.")
    L = lipschitz(A)
    x = y.new_zeros(y.shape[0], A.shape[1])
    z, t = x, 1.0
    trace, trace_per_sample = [], []
    for k in range(iters):
        lam_k = lam if continuation is None else max(lam, continuation.lam0 * continuation.decay ** k)
        x_new = shrink(z - ((z @ A.T - y) @ A) / L, lam_k / L)
        if accelerate:
            t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            z = x_new + ((t - 1.0) / t_new) * (x_new - x)
            t = t_new
        else:
            z = x_new
        x = x_new
        if x_true is not None:
            trace.append(nmse_db(x, x_true))
            trace_per_sample.append(nmse_db_per_sample(x, x_true))
    return ProxTrace(x, trace, trace_per_sample)


def ista(A: torch.Tensor, y: torch.Tensor, lam: float, iters: int, *, continuation: Continuation | None = None,
         x_true: torch.Tensor | None = None) -> ProxTrace:
    """``iters`` ISTA iterations from x = 0 for ``y (batch, m)`` and ``A (m, n)``."""
    return _proximal_gradient(A, y, lam, iters, False, continuation, x_true)


def fista(A: torch.Tensor, y: torch.Tensor, lam: float, iters: int, *, continuation: Continuation | None = None,
          x_true: torch.Tensor | None = None) -> ProxTrace:
    """``iters`` FISTA iterations from x = 0 for ``y (batch, m)`` and ``A (m, n)``."""
    return _proximal_gradient(A, y, lam, iters, True, continuation, x_true)


def lasso_cvxpy(A: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Reference LASSO solution ``(n,)`` for one ``y (m,)`` with cvxpy (its default conic solver)."""
    import cvxpy as cp

    x = cp.Variable(A.shape[1])
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - y) + lam * cp.norm1(x))).solve()
    if x.value is None:
        raise RuntimeError("cvxpy returned no solution for the LASSO reference.")
    return np.asarray(x.value)
