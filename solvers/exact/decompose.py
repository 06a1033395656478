r"""One count constraint over many rows: bounds and masks from per-row value curves.

A layer (or global) budget Σ_o |m_o| ≤ K couples the rows o = 1..p of a layer-wise problem
whose loss is a sum over rows, OPT = min Σ_o f_o(m_o). With v_o(k) = min {f_o(m) : |m| ≤ k},
nonincreasing in k,

    OPT = min { Σ_o v_o(k_o) : Σ_o k_o ≤ K }.

Each row is solved at a few counts g (its *grid*) with a proven bound b_o(g) ≤ v_o(g) and a
mask of value u_o(g) ≥ v_o(g). Since v_o is nonincreasing, every k ≤ g has
v_o(k) ≥ v_o(g) ≥ b_o(g), so the step function

    β_o(k) = max {b_o(g) : g in the grid, g ≥ k}   (``top_o`` above the largest g)

(bounds without a mask, e.g. of the row's continuous relaxation at count g, join the max
the same way)
is a lower bound on v_o, and

    allocation bound  B = min { Σ_o β_o(k_o) : Σ_o k_o ≤ K } ≤ OPT,
    Lagrangian bound  L(λ) = Σ_o min_k [β_o(k) + λ k] − λK ≤ B   for every λ ≥ 0

(the Lagrangian dual of the count constraint, evaluated on the proven curves). The mask
is the best allocation of the solved masks: min Σ_o u_o(g_o) over grid counts with
Σ g_o ≤ K. Both minimisations are exact dynamic programmes over the count (O(p·K·|grid|)).
Where B's allocation uses a count that is not in a row's grid, solving the row there is
what can raise B: :func:`refine` names those counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Curve:
    """One row's solved counts: count → (bound, value, mask); ``relaxed``: count → a bound
    without a mask; a bound ``top`` valid for every count (e.g. 0); and ``n``, the largest
    count that matters (the row's active weights)."""

    n: int
    top: float
    points: dict[int, tuple[float, float, np.ndarray]] = field(default_factory=dict)
    relaxed: dict[int, float] = field(default_factory=dict)

    def steps(self) -> list[tuple[int, float]]:
        """(k, β(k)) at the smallest k of each step of β, k from 0 to n: the only counts a
        minimiser of Σ β needs."""
        known = {g: b for g, b in self.relaxed.items()}
        for g, (b, _, _) in self.points.items():
            known[g] = max(b, known.get(g, -np.inf))
        grid = sorted(known)
        out, prev, suffix = [], -1, self.top
        bounds = {}
        for g in reversed(grid):  # β(k) = max of the bounds at the counts ≥ k
            suffix = max(suffix, known[g])
            bounds[g] = suffix
        for g in grid:
            out.append((prev + 1, bounds[g]))
            prev = g
        if prev < self.n:
            out.append((prev + 1, self.top))
        return out

    def solved(self) -> list[tuple[int, float]]:
        """(k, value of the solved mask) for every solved count."""
        return [(g, v[1]) for g, v in sorted(self.points.items())]


def allocate(options: Sequence[Sequence[tuple[int, float]]], K: int) -> tuple[float, list[int]]:
    """min Σ_o cost_o subject to Σ_o k_o ≤ K, choosing one (k, cost) per row from
    ``options``; returns the minimum and the chosen option index per row (exact DP), or
    (inf, []) when no choice fits."""
    best = np.zeros(K + 1)
    choices = []
    for opts in options:
        new = np.full(K + 1, np.inf)
        pick = np.full(K + 1, -1, dtype=np.int32)
        for j, (k, cost) in enumerate(opts):
            if k > K:
                continue
            cand = np.full(K + 1, np.inf)
            cand[k:] = best[:K + 1 - k] + cost
            better = cand < new
            new[better], pick[better] = cand[better], j
        best = new
        choices.append(pick)
    c = int(np.argmin(best))
    total = float(best[c])
    if not np.isfinite(total):
        return np.inf, []
    chosen = []
    for opts, pick in zip(reversed(options), reversed(choices)):
        j = int(pick[c])
        chosen.append(j)
        c -= opts[j][0]
    return total, chosen[::-1]


def lagrangian_bound(curves: Sequence[Curve], K: int, iters: int = 200) -> tuple[float, float]:
    """max over λ ≥ 0 of L(λ) (see module docstring), by bisection on its supergradient
    Σ k_o(λ) − K; returns (L(λ), λ). Any λ gives a valid bound."""
    steps = [c.steps() for c in curves]

    def dual(lam: float) -> tuple[float, int]:
        total, count = -lam * K, 0
        for st in steps:
            vals = [b + lam * k for k, b in st]
            j = int(np.argmin(vals))
            total += vals[j]
            count += st[j][0]
        return total, count

    lo, hi = 0.0, max(max(b for _, b in st) for st in steps) + 1.0  # at hi every row prefers k = 0
    best = dual(0.0)[0], 0.0
    if dual(0.0)[1] <= K:
        return best
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        val, count = dual(mid)
        best = max(best, (val, mid))
        lo, hi = (mid, hi) if count > K else (lo, mid)
    return best


def allocation_bound(curves: Sequence[Curve], K: int) -> tuple[float, list[int]]:
    """B (see module docstring) and the count per row of its minimiser."""
    steps = [c.steps() for c in curves]
    total, chosen = allocate(steps, K)
    return total, [st[j][0] for st, j in zip(steps, chosen)]


def best_allocation(curves: Sequence[Curve], K: int) -> tuple[float, list[int]]:
    """The solved masks' best allocation: (Σ value, the solved count per row)."""
    solved = [c.solved() for c in curves]
    total, chosen = allocate(solved, K)
    return total, [s[j][0] for s, j in zip(solved, chosen)]


def refine(curves: Sequence[Curve], counts: Sequence[int]) -> list[tuple[int, int]]:
    """(row, count) pairs to solve next: for each row whose count in the bound's allocation
    ``counts`` is unsolved, that count (the left end of a step of β) and the middle of the
    step, so that a step is at least halved per round."""
    todo = set()
    for o, (c, k) in enumerate(zip(curves, counts)):
        if k not in c.points:
            right = min((g for g in (*c.points, *c.relaxed) if g > k), default=c.n)
            todo.update({(o, k), (o, (k + right) // 2)})
    return sorted(todo)
