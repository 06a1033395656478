"""Swap local search on a hard mask (the optional ``polish`` after a relaxation).

From a mask within the budget, each pass evaluates, with the problem's own objective,
every move in a candidate set and applies the best improving one; it stops when no move
improves by more than a relative 1e-12 or after ``max_passes``. Moves inside one scope
unit u: swap a kept weight for a pruned one, drop a kept weight (the budget is an upper
bound), or add a pruned weight when u has room. Candidates: per unit, the r kept weights
with the lowest scores and the r pruned weights with the highest (r chosen so that a pass
evaluates at most ``max_candidates`` masks; all of them when the unit is small enough, which
makes the pass an exact 1-opt neighbourhood).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from maskopt.solvers.relax.core import Segments


def polish(
    mask: torch.Tensor,
    scores: torch.Tensor,
    segments: Segments,
    evaluate_batch: Callable[[torch.Tensor], torch.Tensor],
    max_candidates: int = 2048,
    max_passes: int = 100,
    chunk: int = 256,
) -> tuple[torch.Tensor, float, float, int]:
    """Improve ``mask`` (bool, size) by swap/drop/add moves ranked by ``scores`` (size,).

    ``evaluate_batch`` maps bool masks ``(B, size)`` to objectives ``(B,)``. Returns the
    mask, the objective of the given mask, that of the returned one, and the number of moves.
    """
    mask = mask.detach().cpu().clone()
    scores = scores.detach().cpu().to(torch.float64)
    value = start = float(evaluate_batch(mask[None])[0])
    units = [(int(a), int(b), int(c)) for a, b, c in zip(segments.start.tolist(), segments.stop.tolist(),
                                                           segments.cap.tolist()) if 0 < c < b - a]
    r = max(1, int(math.sqrt(max_candidates / max(len(units), 1))))
    moves = 0
    for _ in range(max_passes):
        cands = []  # (indices to clear, indices to set)
        for a, b, cap in units:
            kept = torch.nonzero(mask[a:b]).reshape(-1) + a
            free = torch.nonzero(~mask[a:b]).reshape(-1) + a
            kept = kept[torch.argsort(scores[kept], stable=True)[:r]]
            free = free[torch.argsort(scores[free], descending=True, stable=True)[:r]]
            cands += [((int(i),), ()) for i in kept]
            if mask[a:b].sum() < cap:
                cands += [((), (int(j),)) for j in free]
            cands += [((int(i),), (int(j),)) for i in kept for j in free]
        best, best_value = None, value
        for first in range(0, len(cands), chunk):
            part = cands[first : first + chunk]
            batch = mask.expand(len(part), -1).clone()
            for row, (off, on) in enumerate(part):
                batch[row, list(off)] = False
                batch[row, list(on)] = True
            vals = evaluate_batch(batch)
            i = int(torch.argmin(vals))
            if float(vals[i]) < best_value:
                best, best_value = part[i], float(vals[i])
        if best is None or not best_value < value - 1e-12 * max(1.0, abs(value)):
            break
        mask[list(best[0])] = False
        mask[list(best[1])] = True
        value, moves = best_value, moves + 1
    return mask, start, value, moves
