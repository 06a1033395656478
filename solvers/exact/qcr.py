r"""Quadratic convex reformulation (QCR) of one row's L2 mask problem.

One row (Gram form, see :func:`maskopt.solvers.exact.layerwise.gram_form`) is the
cardinality-constrained binary quadratic program

    min f(m) = mᵀQm + 2qᵀm + γ   over m ∈ {0,1}^n, Σm ≤ k,      Q = AᵀA ⪰ 0, q = Aᵀa.

Because m_i² = m_i on binaries, for every u ∈ ℝⁿ

    f(m) = ℓ_u(m) := mᵀ(Q − diag u)m + (2q + u)ᵀm + γ    for every binary m,

so the MILP may minimise ℓ_u instead of f: same optimum, same incumbents. When
Q − diag u ⪰ 0, ℓ_u is convex and its continuous relaxation over
P = {0 ≤ m ≤ 1, Σm ≤ k} is a lower bound that grows with u (Billionnet & Elloumi 2007,
"Using a mixed integer quadratic programming solver for the unconstrained quadratic 0-1
problem"; Billionnet, Elloumi & Lambert 2012 for linear constraints). Choices of u:

- ``"sdp"``: the dual of the constraints diag(Z) = z of the Shor relaxation
      min ⟨Q, Z⟩ + 2qᵀz + γ  s.t. [[1, zᵀ], [z, Z]] ⪰ 0, diag Z = z, Σz ≤ k, z ≤ 1,
  for which the continuous bound of ℓ_u equals the SDP bound (cvxpy with Clarabel, SCS
  as a second try); about a second for n = 40, far too slow for n in the hundreds.
- ``"eig"``: u = λ_min(Q)·1 (no extra dependency; weak when Q is ill-conditioned).

Nothing here has to be trusted: u only changes the model, never the set of feasible masks
or their values. The solver's u is made exact for convexity by lowering it until
Q − diag u ⪰ 0 in floating point (:func:`convexified`), and the factor LᵀL that the MILP
uses differs from Q − diag u by E; the bounds account for min(0, λ_min(E))·k. The bound
of the continuous relaxation (:func:`relaxation_bound`) is a Frank–Wolfe certificate at
any point of P, valid whatever its accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRENGTHEN = ("none", "eig", "sdp")


@dataclass
class Convexified:
    """The convex form ‖L m‖² + linᵀm + γ of ℓ_u; on a binary m it differs from f(m) by
    mᵀEm with E = Q − diag u − LᵀL (rounding), and mᵀEm ≥ −err·Σm.

    Attributes:
        u: the diagonal shift (n,).
        L: (r, n) factor with LᵀL ≈ Q − diag u (PSD).
        lin: 2q + u (n,).
        err: max(0, −λ_min(E)) ≥ 0; a bound of this form minus err·k is a bound on f.
        point: a point of P near the relaxation's minimiser (for the first tangents), or None.
    """

    u: np.ndarray
    L: np.ndarray
    lin: np.ndarray
    err: float
    point: np.ndarray | None


def _shor_shift(Q: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """u from the Shor SDP's dual (see module docstring) and the SDP's z; raises on failure."""
    import cvxpy as cp

    n = len(q)
    Y = cp.Variable((n + 1, n + 1), PSD=True)
    z, Z = Y[0, 1:], Y[1:, 1:]
    diag = cp.diag(Z) == z
    cons = [Y[0, 0] == 1, diag, cp.sum(z) <= k, z <= 1]
    prob = cp.Problem(cp.Minimize(cp.trace(Q @ Z) + 2 * q @ z), cons)
    last: Exception | None = None
    for solver in ("CLARABEL", "SCS"):
        try:
            prob.solve(solver=solver)
        except Exception as e:  # a numerical failure of one conic solver: try the next
            last = e
            continue
        if prob.status in ("optimal", "optimal_inaccurate") and diag.dual_value is not None:
            return -np.asarray(diag.dual_value, dtype=float), np.clip(np.asarray(z.value, dtype=float), 0.0, 1.0)
    raise RuntimeError(f"the Shor SDP failed ({prob.status}): {last}")


def convexified(Q: np.ndarray, q: np.ndarray, k: int, method: str, A: np.ndarray) -> Convexified:
    """ℓ_u for ``method`` in :data:`STRENGTHEN` (see the module docstring; ``"none"``: u = 0
    with the factor L = A, Q = AᵀA, exact)."""
    n = len(q)
    point = None
    if method == "none":
        return Convexified(np.zeros(n), A, 2.0 * q, 0.0, None)
    if method == "sdp":
        u, point = _shor_shift(Q, q, k)
    elif method == "eig":
        u = np.full(n, max(float(np.linalg.eigvalsh(Q)[0]), 0.0))
    else:
        raise ValueError(f"strengthen must be one of {STRENGTHEN}; got {method!r}.")
    lam_min = float(np.linalg.eigvalsh(Q - np.diag(u))[0])
    if lam_min < 0:  # the solver's u is a little too large: lower it until Q − diag u ⪰ 0
        u = u + 2.0 * lam_min
    lam, V = np.linalg.eigh(Q - np.diag(u))
    keep = lam > 0
    L = np.sqrt(lam[keep])[:, None] * V[:, keep].T
    E = Q - np.diag(u) - L.T @ L
    err = max(0.0, -float(np.linalg.eigvalsh(E)[0]))  # mᵀEm ≥ −err·‖m‖² = −err·Σm on binaries
    return Convexified(u, L, 2.0 * q + u, err, point)


def relaxation_value(c: Convexified, m: np.ndarray, gamma: float) -> tuple[float, np.ndarray]:
    """ℓ_u(m) and its gradient at a real point m (n,)."""
    Lm = c.L @ m
    return float(Lm @ Lm + c.lin @ m + gamma), 2.0 * (c.L.T @ Lm) + c.lin


def _lmo(grad: np.ndarray, k: int) -> np.ndarray:
    """argmin of gradᵀm over P = {0 ≤ m ≤ 1, Σm ≤ k}: the ≤ k most negative entries."""
    m = np.zeros_like(grad)
    neg = np.flatnonzero(grad < 0)
    m[neg[np.argsort(grad[neg])[:k]]] = 1.0
    return m


def relaxation_bound(c: Convexified, gamma: float, k: int, start: np.ndarray | None = None,
                     iters: int = 300) -> tuple[float, np.ndarray]:
    """A proven lower bound on min f over binaries with Σm ≤ k, and the point it came from.

    Minimises the convex ℓ_u over P by Frank–Wolfe with exact line search (``iters`` steps
    from ``start`` or 0); at the best point m̂ the bound is the Frank–Wolfe certificate
    ℓ_u(m̂) + min_{m∈P} ∇ℓ_u(m̂)ᵀ(m − m̂) (valid for any m̂ by convexity), minus err·k.
    """
    m = np.zeros(len(c.lin)) if start is None else np.asarray(start, float).copy()
    best = -np.inf
    best_m = m
    for _ in range(iters):
        val, grad = relaxation_value(c, m, gamma)
        s = _lmo(grad, k)
        cert = val + float(grad @ (s - m))
        if cert > best:
            best, best_m = cert, m.copy()
        dvec = s - m
        Ld = c.L @ dvec
        curv = float(Ld @ Ld)
        slope = float(grad @ dvec)
        if slope >= -1e-15 * max(1.0, abs(val)):
            break
        step = 1.0 if curv <= 0 else min(1.0, -slope / (2.0 * curv))
        m = m + step * dvec
    return best - c.err * k, best_m
