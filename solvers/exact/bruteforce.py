"""Brute-force oracle: enumerate every mask within a budget and keep the best.

The feasible set is the product over scope units of all subsets of size ≤ cap of the
unit's weights, so the number of candidates is Π_U Σ_{j ≤ cap_U} C(|U|, j). Masks are
enumerated in a fixed order and the first one with the smallest objective is returned.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

Unit = tuple[int, int, int]  # (start, stop, cap) over the flattened mask


class TooManyCandidatesError(ValueError):
    """The brute-force enumeration would exceed its candidate limit."""


def count_candidates(units: Sequence[Unit]) -> int:
    """Number of masks within the budget: Π_U Σ_{j ≤ cap_U} C(|U|, j)."""
    return math.prod(sum(math.comb(stop - start, j) for j in range(min(cap, stop - start) + 1))
                     for start, stop, cap in units)


def _unit_subsets(size: int, cap: int) -> np.ndarray:
    rows = [np.zeros(size, dtype=bool)]
    for j in range(1, min(cap, size) + 1):
        for combo in itertools.combinations(range(size), j):
            row = np.zeros(size, dtype=bool)
            row[list(combo)] = True
            rows.append(row)
    return np.stack(rows)


def bruteforce(
    objective_batch: Callable[[np.ndarray], np.ndarray],
    n: int,
    units: Sequence[Unit],
    max_candidates: int,
    chunk: int = 4096,
) -> tuple[np.ndarray, float, int]:
    """Minimise ``objective_batch`` over all masks within the budget ``units``.

    Args:
        objective_batch: maps a (B, n) bool array of flattened masks to (B,) objectives.
        n: length of the flattened mask; weights outside every unit are never kept.
        units: scope units (start, stop, cap).
        max_candidates: refuse (TooManyCandidatesError) above this many masks.

    Returns: (best mask (n,) bool, its objective, number of masks evaluated).
    """
    total = count_candidates(units)
    if total > max_candidates:
        raise TooManyCandidatesError(
            f"Brute force would enumerate {total:,} masks, above max_candidates={max_candidates:,}. "
            "Use method='exact' (MILP with a proven bound) or raise max_candidates."
        )
    subsets = [_unit_subsets(stop - start, cap) for start, stop, cap in units]
    radix = [len(s) for s in subsets]
    best_mask, best_val = np.zeros(n, dtype=bool), math.inf
    for first in range(0, total, chunk):
        idx = np.arange(first, min(first + chunk, total))
        batch = np.zeros((len(idx), n), dtype=bool)
        rest = idx.copy()
        for (start, stop, _), subs, r in zip(reversed(units), reversed(subsets), reversed(radix)):
            batch[:, start:stop] = subs[rest % r]
            rest //= r
        vals = np.asarray(objective_batch(batch), dtype=np.float64)
        j = int(np.argmin(vals))
        if vals[j] < best_val:
            best_mask, best_val = batch[j].copy(), float(vals[j])
    return best_mask, best_val, total
