r"""Post-training pruning of one linear layer: Wanda scores, an OBS-style greedy mask with
sequential weight updates, a least-squares refit of kept weights, and a swap local search
that moves with Gram-matrix updates.

A layer has weights W (p, d), calibration inputs X (N, d), an offset b (p,) and a target Y
(N, p). With H = XᵀX (d, d) the squared loss of row o under mask m_o is

    f_o(m) = ‖X (m_o ⊙ w_o) + b_o − y_o‖² = vᵀ H v + 2 vᵀ c_o + γ_o,   v = m_o ⊙ w_o,

with c_o = Xᵀ(b_o − y_o) and γ_o = ‖b_o − y_o‖². Budgets are scope units ``(start, stop,
cap)`` over the flat (p·d) mask: either inside one row (row scope) or made of whole rows (one
count over several rows: layer or global scope).

Tensors are float64 on the CPU; every function here is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

Unit = tuple[int, int, int]


def _nonzero(flags: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of a 1-D bool tensor."""
    return flags.nonzero().reshape(-1)


def wanda_scores(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Wanda (Sun et al. 2024): S_ij = |W_ij| · ‖X_:j‖₂, shape (p, d)."""
    return W.abs() * X.norm(dim=0)


def gram(X: torch.Tensor, damp: float = 0.0) -> torch.Tensor:
    """H = XᵀX (d, d) plus ``damp`` · mean(diag H) · I (the dampening of OBC/SparseGPT)."""
    H = X.T @ X
    if damp > 0:
        H = H + damp * float(H.diagonal().mean().clamp_min(1e-12)) * torch.eye(H.shape[0], dtype=H.dtype)
    return H


@dataclass
class Layout:
    """How budget units sit on a (p, d) mask: ``row_units`` is True when every unit lies in
    one row; else every unit is a set of whole rows. ``unit_of`` (p, d) is each entry's unit,
    ``caps`` (U,) the units' caps."""

    unit_of: torch.Tensor
    caps: torch.Tensor
    row_units: bool


def layout(units: Sequence[Unit], p: int, d: int) -> Layout:
    """The :class:`Layout` of ``units`` over a (p, d) mask; units that neither lie in one row
    nor consist of whole rows raise ValueError."""
    unit_of = torch.full((p * d,), -1, dtype=torch.int64)
    inside = []
    for u, (start, stop, _) in enumerate(units):
        unit_of[start:stop] = u
        inside.append(start // d == (stop - 1) // d)
    whole = [start % d == 0 and stop % d == 0 for start, stop, _ in units]
    if not (all(inside) or all(whole)):
        raise ValueError("these budget units neither lie within rows nor consist of whole rows; the "
                         "post-training heuristics take row, layer, global and N:M scopes.")
    return Layout(unit_of.view(p, d), torch.tensor([c for _, _, c in units], dtype=torch.int64), all(inside))


def group_width(units: Sequence[Unit], d: int) -> int | None:
    """M when ``units`` are the N:M groups of rows of ``d`` weights (all of one width M that
    divides d, aligned to multiples of M), else None."""
    widths = {stop - start for start, stop, _ in units}
    if len(widths) != 1:
        return None
    m = widths.pop()
    return m if d % m == 0 and all(start % m == 0 for start, _, _ in units) else None


# ---------------------------------------------------------------- OBS-style mask


def obs_mask(H: torch.Tensor, W: torch.Tensor, units: Sequence[Unit], blocksize: int = 128) -> torch.Tensor:
    """The OBS-style mask (p, d) of W within ``units``, chosen column block by column block
    with sequential weight updates (SparseGPT, Frantar & Alistarh 2023, Algorithm 1).

    With U upper triangular, UᵀU = H⁻¹ (``H`` damped, positive definite), the columns are
    visited in order. For a block of columns, the saliency of every weight is w_ij² / U_jj²
    (the OBS loss increase, on the weights as updated so far); the block removes its quota of
    least-salient weights; then column by column, each removed weight's error
    e = w_ij / U_jj is spread over the row's later columns, w_i,j: ← w_i,j: − e · U_j,j:
    (the OBS update of the remaining weights). Quotas make the budget exact: a row's removals
    (row units) or a unit's removals (units of whole rows, selected over all their rows) are
    split over the blocks in proportion to their columns (floor of the running share). N:M
    groups (units of M aligned weights inside rows) are chosen as SparseGPT does: at each
    group's first column, the M − N least salient weights of each row's group are removed.
    Returns the bool keep-mask; the updated weights only steer later choices.
    """
    p, d = W.shape
    lay = layout(units, p, d)
    m = None
    if lay.row_units and any((stop - start) != d for start, stop, _ in units):
        m = group_width(units, d)
        if m is None:
            raise ValueError("obs takes a row budget (one unit per row), units of whole rows, or N:M groups "
                             "(equal aligned groups inside rows); got other units inside rows.")
        blocksize = m * -(-blocksize // m)  # whole groups per block
    U = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)
    w = W.clone()
    keep = torch.ones((p, d), dtype=torch.bool)
    row_unit = lay.unit_of[:, 0]
    removals = (d * torch.bincount(row_unit, minlength=len(lay.caps)) - lay.caps).clamp_min(0)  # per unit
    unit_rows = [_nonzero(row_unit == u) for u in range(len(lay.caps))]
    for lo in range(0, d, blocksize):
        hi = min(lo + blocksize, d)
        Ub = U[lo:hi, lo:hi]
        sal = w[:, lo:hi].square() / Ub.diagonal().square()
        quota = removals * hi // d - removals * lo // d  # removals of each unit in this block
        for u, rows in enumerate(unit_rows if m is None else ()):
            if int(quota[u]) == 0:
                continue
            cut = sal[rows].reshape(-1).argsort(stable=True)[: int(quota[u])]
            keep[rows[cut // (hi - lo)], lo + cut % (hi - lo)] = False
        err = torch.zeros((p, hi - lo), dtype=w.dtype)
        for j in range(hi - lo):
            col = lo + j
            if m is not None and col % m == 0:  # N:M: each group's choice on the weights as updated so far
                group = w[:, col : col + m].square() / Ub.diagonal()[j : j + m].square()
                rank = group.argsort(dim=1, stable=True).argsort(dim=1)
                keep[:, col : col + m] = rank >= (m - lay.caps[lay.unit_of[:, col]])[:, None]
            e = torch.where(keep[:, col], 0.0, w[:, col] / Ub[j, j])
            w[:, col:hi] -= e[:, None] * Ub[j, j:][None, :]
            err[:, j] = e
        w[:, hi:] -= err @ U[lo:hi, hi:]
    return keep


def refit(X: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Least-squares weights on each row's kept support: row o gets
    argmin_v ‖X_S v − target_o‖² on S = {j : mask_oj} (minimum-norm when X_S is rank
    deficient), zeros elsewhere. X (N, d), target (N, p), mask (p, d) → (p, d)."""
    p, d = mask.shape
    out = torch.zeros((p, d), dtype=X.dtype)
    Xn, Tn = X.numpy(), target.numpy()
    for o in range(p):
        cols = np.flatnonzero(mask[o].numpy())
        if len(cols):
            out[o, cols] = torch.from_numpy(np.linalg.lstsq(Xn[:, cols], Tn[:, o], rcond=None)[0])
    return out


# ---------------------------------------------------------------- swap local search


@dataclass
class SwapStats:
    """Moves made by :func:`swap_search` (removals, additions, swaps) and passes over the rows."""

    removals: int = 0
    additions: int = 0
    swaps: int = 0
    passes: int = 0


def swap_search(H: torch.Tensor, C: torch.Tensor, W: torch.Tensor, mask: torch.Tensor, units: Sequence[Unit],
                max_passes: int = 100_000) -> tuple[torch.Tensor, SwapStats]:
    """Best-improvement local search on the squared loss Σ_o f_o(m) (module docstring) from a
    feasible ``mask`` (p, d): remove a kept weight, add one where its unit has room, or swap a
    kept and a removed weight of the same unit, while a move lowers the loss by more than
    1e-12 relative.

    Moves are priced from G = (m ⊙ W) H + C (p, d), kept up to date by rank-one updates
    (a move in row o changes only G_o): removing i costs w_i² H_ii − 2 w_i G_oi, adding j
    w_j² H_jj + 2 w_j G_oj, swapping both in one row their sum − 2 w_i w_j H_ij. Units inside
    rows: every row takes its best move in the same pass (rows are independent); units of
    whole rows: one move (also across rows) per pass. The loss never increases.
    """
    p, d = W.shape
    lay = layout(units, p, d)
    chunk = max(1, min(64, 4_000_000 // (d * d)))  # rows whose (d, d) swap tables are priced at once
    m = mask.clone().to(torch.bool)
    G = (m * W) @ H + C
    hd = H.diagonal()
    stats = SwapStats()
    v = m * W
    scale = max(1.0, abs(float((v @ H * v).sum() + 2 * (v * C).sum())))
    every = torch.arange(p)
    best = _best_moves(H, hd, W, G, m, lay, every, chunk)
    for _ in range(max_passes):
        stats.passes += 1
        if lay.row_units:  # rows are independent: every row with an improving move takes it
            good = best.delta < -1e-12 * scale
            if not bool(good.any()):
                break
            rows = _nonzero(good)
            for o in rows.tolist():
                _apply(o, int(best.out[o]), o, int(best.inn[o]), W, H, G, m, stats)
        else:  # one move over all rows, then the rows it changed are priced again
            o1, o2, i, j, delta = _best_global(best, every, lay, m)
            if not delta < -1e-12 * scale:
                break
            _apply(o1, i, o2, j, W, H, G, m, stats)
            rows = torch.tensor(sorted({o1, o2})) if i >= 0 and j >= 0 else every  # a count change frees room
        best.update(rows, _best_moves(H, hd, W, G, m, lay, rows, chunk))
    return m, stats


@dataclass
class _Best:
    delta: torch.Tensor  # (r,) best move's change per row
    out: torch.Tensor  # (r,) entry removed (-1: none)
    inn: torch.Tensor  # (r,) entry added (-1: none)
    rem: torch.Tensor  # (r, d) removal cost (inf where not kept)
    add: torch.Tensor  # (r, d) addition cost (inf where not removed)

    def update(self, rows: torch.Tensor, new: _Best) -> None:
        """Replace the entries of ``rows`` by ``new`` (priced for those rows)."""
        for name in ("delta", "out", "inn", "rem", "add"):
            getattr(self, name)[rows] = getattr(new, name)


def _best_moves(H, hd, W, G, m, lay: Layout, rows: torch.Tensor, chunk: int) -> _Best:
    """Per row of ``rows``: the best removal, addition (if the unit has room) and same-unit swap."""
    w, g, mm = W[rows], G[rows], m[rows]
    unit = lay.unit_of[rows]
    rem = torch.where(mm, w.square() * hd - 2 * w * g, torch.inf)
    add_any = torch.where(~mm & (w != 0), w.square() * hd + 2 * w * g, torch.inf)
    kept = torch.zeros(len(lay.caps), dtype=torch.int64).index_add_(0, lay.unit_of.reshape(-1),
                                                                       m.reshape(-1).to(torch.int64))
    room = kept < lay.caps
    add = torch.where(room[unit], add_any, torch.inf)
    r = len(rows)
    delta = torch.full((r,), torch.inf, dtype=W.dtype)
    out = torch.full((r,), -1, dtype=torch.int64)
    inn = torch.full((r,), -1, dtype=torch.int64)
    dr, ir = rem.min(dim=1)
    da, ia = add.min(dim=1)
    take = dr < delta
    delta, out = torch.where(take, dr, delta), torch.where(take, ir, out)
    take = da < delta
    delta, out, inn = torch.where(take, da, delta), torch.where(take, -1, out), torch.where(take, ia, inn)
    d = W.shape[1]
    for lo in range(0, r, chunk):
        sl = slice(lo, lo + chunk)
        pair = rem[sl, :, None] + add_any[sl, None, :] - 2 * (w[sl, :, None] * w[sl, None, :]) * H
        same = unit[sl, :, None] == unit[sl, None, :]
        pair = torch.where(same, pair, torch.inf)
        ds, flat = pair.reshape(pair.shape[0], -1).min(dim=1)
        take = ds < delta[sl]
        delta[sl] = torch.where(take, ds, delta[sl])
        out[sl] = torch.where(take, flat // d, out[sl])
        inn[sl] = torch.where(take, flat % d, inn[sl])
    return _Best(delta, out, inn, rem, add_any)


def _best_global(best: _Best, rows, lay: Layout, m) -> tuple[int, int, int, int, float]:
    """The best single move over all rows (units of whole rows): a row's own best move, or a
    removal in one row with an addition in another row of the same unit."""
    k = int(best.delta.argmin())
    choice = (int(rows[k]), int(rows[k]), int(best.out[k]), int(best.inn[k]), float(best.delta[k]))
    row_unit = lay.unit_of[rows, 0]
    for u in torch.unique(row_unit).tolist():
        sel = _nonzero(row_unit == u)
        if len(sel) < 2:
            continue
        rem_v, rem_i = best.rem[sel].min(dim=1)
        add_v, add_i = best.add[sel].min(dim=1)
        a = int(rem_v.argmin())
        b = int(torch.where(torch.arange(len(sel)) == a, torch.inf, add_v).argmin())
        value = float(rem_v[a] + add_v[b])
        if value < choice[4]:
            choice = (int(rows[sel[a]]), int(rows[sel[b]]), int(rem_i[a]), int(add_i[b]), value)
    return choice


def _apply(o1: int, i: int, o2: int, j: int, W, H, G, m, stats: SwapStats) -> None:
    """Remove entry i of row o1 and/or add entry j of row o2 (-1: none); G follows."""
    if i >= 0:
        m[o1, i] = False
        G[o1] -= W[o1, i] * H[i]
    if j >= 0:
        m[o2, j] = True
        G[o2] += W[o2, j] * H[j]
    if i >= 0 and j >= 0:
        stats.swaps += 1
    elif i >= 0:
        stats.removals += 1
    else:
        stats.additions += 1
