r"""Exact layer-wise mask selection as a MILP, built with Pyomo and solved by HiGHS.

Data: inputs X (N, d), weight W (p, d) (``nn.Linear`` layout), target T (N, p), optional
bias b (p,). Decision: a binary mask m (p, d). Residual of sample n, output o:

    r_{n,o} = Σ_i X_{n,i} W_{o,i} m_{o,i} + b_o − T_{n,o}

which is linear in m (the weights are fixed), so the only nonlinearity is the loss.

Budget: for every scope unit U (a contiguous range of the row-major flattened mask, see
``maskopt.budget``):  Σ_{(o,i)∈U} m_{o,i} ≤ cap_U.

L1 (``_build_l1``), exact LP epigraph of |·|:
    r_{n,o} = u_{n,o} − v_{n,o},  u, v ≥ 0,   minimise Σ (u + v).
At an optimum u·v = 0, so Σ(u + v) = Σ|r|.

L2 (``_build_l2``), outer approximation (Kelley cutting planes on a convex function):
    r_{n,o} free (defined by the equality above), s_{n,o} ≥ 0,
    s_{n,o} ≥ 2ρ r_{n,o} − ρ²  for every cut point ρ ∈ R_{n,o},   minimise Σ s.
Since r² ≥ 2ρr − ρ² for all ρ, every master problem is a relaxation, so its dual bound
is a valid lower bound on the L2 optimum. After each master solve, tangents at the exact
residuals of the master's mask are added; a mask seen again is then valued exactly, so
the loop ends after finitely many rounds, when the best true L2 value (upper bound) and
the master bound meet within the gap. If a master proven to the final gap returns a mask
whose tangents it already has, the master values that mask exactly and still its bound
misses the gap: only solver tolerances can explain it, and the status is ``"numerical"``
(the gap reached is in the history), never ``"optimal"``. Early masters are solved to a looser relative gap
(0.3 × the current outer gap, between gap/10 and 5%): their dual bounds are still valid,
and the master gap tightens to gap/10 as the outer gap closes.

Seeding: the best given candidate mask is improved by a 1-opt local search
(:func:`local_search`); the result is the MIP start and the first L2 cut point. It never
affects the bound, only how fast it is proven.

Weights with W_{o,i} = 0 or an all-zero input column cannot change the prediction; they
are fixed to 0 (not kept), which the budget (an upper bound) allows. When every scope unit
lies inside one output row (``"row"`` scope), the problem separates into independent
per-row MILPs that are solved one after the other, sharing the time limit.

The bound returned is the raw proven one (the largest master dual bound, and 0, since a
loss is never negative); it is never clamped to the incumbent here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from maskopt.solvers.exact import decompose as decomposition
from maskopt.solvers.exact import qcr
from maskopt.solvers.exact.highs import HighsSession, MilpResult, MipSettings, gap_met
from maskopt.solvers.exact.rows import run_jobs
from maskopt.solvers.losses import KINDS, Loss, loss_kind

LAYER_LOSSES = tuple(name for name, kind in KINDS.items() if "layerwise" in kind.encodings)

Unit = tuple[int, int, int]  # (start, stop, cap) over the flattened (p, d) mask


def model_size(n_samples: int, n_in: int, n_out: int, units: Sequence[Unit], loss: str,
               decompose: bool = False) -> dict[str, int]:
    """Upper estimate of the largest MILP built (before inactive weights are dropped):
    one row's when the budget is row-separable or ``decompose`` (``"milps"`` = rows), else
    the layer's; L2 in Gram form has min(N, d) residual rows per output instead of N (L2
    cuts not counted)."""
    rows = min(n_samples, n_in) if loss == "l2" else n_samples
    per = 1 if (row_separable(units, n_in) or decompose) and n_out > 1 else n_out
    n_res = rows * per
    binaries = n_in * per
    return {
        "binaries": binaries,
        "variables": binaries + 2 * n_res,
        "constraints": n_res + len(units),
        "nonzeros": rows * binaries + 2 * n_res + binaries,
        "milps": n_out // per,
    }


def gram_form(inputs: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The L2 objective's data in a size independent of N: ``(R, a, s2)`` of shapes (r, d),
    (r, p), (p,) with r = min(N, d), such that RᵀR = XᵀX (the Gram matrix H), Rᵀa = Xᵀ·offset
    and ‖a_o‖² + s2_o = ‖offset_o‖², hence for every v ∈ ℝᵈ and output o

        ‖X v + offset_o‖² = ‖R v + a_o‖² + s2_o.

    From a QR factorisation X = Q_X R (Q_X with orthonormal columns): a = Q_Xᵀ·offset and
    s2 = ‖offset − Q_X a‖², the part of each offset outside the span of X (exact, also when X
    is rank-deficient)."""
    Qx, R = np.linalg.qr(inputs)
    a = Qx.T @ offset
    s2 = np.square(offset - Qx @ a).sum(axis=0)
    return R, a, s2


def active_weights(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(p, d) bool: the weights whose mask bit can change the loss (nonzero, reading a nonzero input)."""
    return (W != 0) & (np.abs(X).sum(axis=0) != 0)[None, :]


def layer_loss(residual: np.ndarray, loss: str) -> float:
    """The loss (:mod:`maskopt.solvers.losses`) of a residual (N, p), float64."""
    return float(Loss(loss)(residual, 0.0))


def row_separable(units: Sequence[Unit], n_in: int) -> bool:
    """Whether every scope unit lies inside a single output row."""
    return all(start // n_in == (stop - 1) // n_in for start, stop, _ in units if stop > start)


@dataclass(frozen=True)
class Dispatch:
    """How independent row problems run (see :mod:`maskopt.solvers.exact.rows`).

    Attributes:
        executor: a ``concurrent.futures.Executor`` (e.g. Dask's ``Client.get_executor()``);
            None: a local process pool with ``workers`` processes, or this process when
            ``workers == 1``.
        workers: how many rows are solved at the same time.
        row_time_limit: seconds per row and pass (None: the shares of the total limit).
        progress: a progress bar per finished row.
    """

    executor: Executor | None = None
    workers: int = 1
    row_time_limit: float | None = None
    progress: bool = False

    @property
    def parallel(self) -> bool:
        return self.executor is not None or self.workers > 1

    def stats(self) -> dict:
        """``workers`` and where the rows ran (``executor``), for a result's stats."""
        where = "this process" if not self.parallel else (
            "local process pool" if self.executor is None else type(self.executor).__name__)
        return {"workers": self.workers, "executor": where}

    def run(self, jobs, deadline: float | None, job_limit: float | None, desc: str) -> list[MilpResult]:
        """:func:`_group_job` of every job, through :func:`~maskopt.solvers.exact.rows.run_jobs`."""
        return run_jobs(_group_job, jobs, executor=self.executor, workers=self.workers, deadline=deadline,
                        job_limit=job_limit, progress=self.progress, desc=desc)


def solve_layerwise(
    inputs: np.ndarray,
    weight: np.ndarray,
    target: np.ndarray,
    bias: np.ndarray | None,
    units: Sequence[Unit],
    loss: str,
    settings: MipSettings,
    candidates: Sequence[np.ndarray] = (),
    dispatch: Dispatch = Dispatch(),
    strengthen: str = "none",
    decompose: bool = False,
) -> MilpResult:
    """Solve the layer-wise mask MILP to proven optimality (within ``settings.gap``) or
    until ``settings.time_limit`` (row-separable budgets: one MILP per row, dispatched as
    ``dispatch`` says, in two passes; see the comment in the body).

    Args:
        inputs, weight, target, bias: arrays of shapes (N, d), (p, d), (N, p), (p,) or None.
        units: budget scope units ``(start, stop, cap)`` over the flattened (p, d) mask.
        loss: ``"l1"`` or ``"l2"`` (L2 is solved in Gram form, :func:`gram_form`).
        candidates: feasible (p, d) bool masks; the best is the MIP start (and the first
            cut point of L2), and the answer if HiGHS finds no incumbent in time.
        strengthen: ``"none"``, ``"eig"`` or ``"sdp"``: the QCR form of each row's L2 MILP
            (:mod:`maskopt.solvers.exact.qcr`; L2 with a row budget or ``decompose``).
        decompose: a budget of one count over all rows (layer/global scope) is solved row by
            row at several counts, bound and mask from their value curves
            (:mod:`maskopt.solvers.exact.decompose`) instead of as one MILP.
    """
    if loss not in LAYER_LOSSES:
        raise ValueError(f"the layer-wise MILP encodes losses {list(LAYER_LOSSES)}; got {loss!r}.")
    X = np.asarray(inputs, dtype=np.float64)
    W = np.asarray(weight, dtype=np.float64)
    T = np.asarray(target, dtype=np.float64)
    p, d = W.shape
    offset = (np.zeros(p) if bias is None else np.asarray(bias, dtype=np.float64))[None, :] - T
    active = active_weights(X, W)
    deadline = None if settings.time_limit is None else time.time() + settings.time_limit
    cands = [np.asarray(c, dtype=bool).reshape(p, d) for c in candidates] or [np.zeros((p, d), bool)]
    Xm, off_m, const = gram_form(X, offset) if loss == "l2" else (X, offset, np.zeros(p))
    separable = row_separable(units, d) and p > 1
    if decompose and not (len(units) == 1 and units[0][:2] == (0, p * d)):
        raise ValueError("decompose=True takes a budget of one count over the whole layer (scope 'layer' or "
                         "'global'); a row budget is already solved row by row.")
    if strengthen not in qcr.STRENGTHEN:
        raise ValueError(f"strengthen must be one of {qcr.STRENGTHEN}; got {strengthen!r}.")
    if strengthen != "none" and (loss != "l2" or not (separable or p == 1 or decompose)):
        raise ValueError("strengthen applies to L2 problems solved row by row (a row budget, or decompose=True).")
    if dispatch.parallel and settings.threads is None:  # one HiGHS thread per worker
        settings = MipSettings(settings.time_limit, settings.gap, 1, settings.verbose, settings.node_limit)
    if decompose:
        return _solve_coupled(X, W, offset, Xm, off_m, const, active, units[0][2], loss, settings, cands, dispatch,
                              strengthen, deadline)
    groups = [[o] for o in range(p)] if separable else [list(range(p))]

    def job(gi: int, pass_: int, earlier: MilpResult | None = None):
        rows = groups[gi]
        lo, hi = rows[0] * d, (rows[-1] + 1) * d
        g_units = [(s - lo, e - lo, c) for s, e, c in units if lo <= s and e <= hi]
        starts = [c[rows] for c in cands] + ([] if earlier is None else [earlier.mask])
        label = f"{rows[0]}-{rows[-1]}"
        return lambda limit: (Xm, W[rows], off_m[:, rows], active[rows], g_units, loss, settings, starts, limit,
                              float(const[rows].sum()), strengthen, label, pass_)

    # First pass: each group gets its share of the time left when it starts (rows.share). Second
    # pass (a total limit without a per-row one): the time the groups that finished early did not
    # use goes to those stopped by theirs (warm-started from their incumbent), so no group fails
    # while the overall limit has time.
    results = dispatch.run([job(gi, 1) for gi in range(len(groups))], deadline, dispatch.row_time_limit, "exact rows")
    late = [gi for gi, g in enumerate(results) if g.status == "time_limit"]  # more time can help only these
    second = 0
    if late and deadline is not None and dispatch.row_time_limit is None and deadline - time.time() > 0:
        again = dispatch.run([job(gi, 2, results[gi]) for gi in late], deadline, None, "exact rows, second pass")
        for gi, g in zip(late, again):
            if g.stats["rounds"] or g.status != "time_limit":  # it had time to work
                second += 1
            results[gi] = _merge_passes(results[gi], g)
    mask = np.zeros((p, d), dtype=bool)
    for rows, g in zip(groups, results):
        mask[rows] = g.mask
    objective = layer_loss(X @ (mask * W).T + offset, loss)
    keys = ("binaries", "constraints", "nonzeros", "nodes", "rounds", "build_time", "incumbent_from_candidates")
    stats = {k: sum(g.stats[k] for g in results) for k in (*keys, *_START_KEYS)}
    stats["subproblems"] = len(groups)
    stats["second_pass"] = second  # groups that got a second pass
    stats["rows"] = [_row_record(f"{r[0]}-{r[-1]}", g) for r, g in zip(groups, results)]
    stats.update(dispatch.stats())
    status = worst_status(g.status for g in results)
    history = [h for g in results for h in g.history]
    return MilpResult(mask, objective, sum(g.bound for g in results), status, history, stats)


CURVE_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)  # first counts of each row: these × the mean count per row
RELAXED_FACTORS = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)  # L2: relaxation bounds at these × the mean count
MAX_REFINE = 8  # rounds that solve rows at the counts the allocation bound asks for


def _solve_coupled(X, W, offset, Xm, off_m, const, active, cap, loss, settings, cands, dispatch, strengthen,
                   deadline) -> MilpResult:
    """One count ``cap`` over all rows: rows solved at counts from ``CURVE_FACTORS`` (all of
    them in one dispatch), then at the counts the allocation bound's minimiser uses that a row
    has not solved (up to ``MAX_REFINE`` rounds, until the gap is met or none is left); bound
    = the allocation bound, mask = the best allocation of solved masks (or a candidate)."""
    p, d = W.shape
    n_act = active.sum(axis=1)
    mean = cap / p
    curves = []
    for o in range(p):
        c = decomposition.Curve(int(n_act[o]), 0.0)  # a loss is never negative
        zero = float(np.square(off_m[:, o]).sum() + const[o]) if loss == "l2" else float(np.abs(offset[:, o]).sum())
        c.points[0] = (zero, zero, np.zeros(d, dtype=bool))
        if loss == "l2" and n_act[o]:  # the row's continuous relaxation at counts above the first grid
            A, Q, q, gamma = _row_quadratic(Xm, W[o], off_m[:, o], float(const[o]), np.flatnonzero(active[o]))
            conv = qcr.convexified(Q, q, int(n_act[o]), "none", A)
            point = None
            for k in sorted({min(int(n_act[o]), round(mean * f)) for f in RELAXED_FACTORS} | {int(n_act[o])}):
                c.relaxed[k], point = qcr.relaxation_bound(conv, gamma, k, start=point)
        curves.append(c)
    todo = sorted({(o, min(int(n_act[o]), max(1, round(mean * f)))) for o in range(p) for f in CURVE_FACTORS
                   if n_act[o]})
    t0 = time.time()
    history, totals, rounds = [], {"nodes": 0, "rounds": 0, "build_time": 0.0, "mip_starts": 0,
                                   "mip_starts_accepted": 0}, 0
    statuses = []
    row_stats = []
    out_of_time = False

    def job(o: int, k: int):
        solved = [v[2] for g, v in curves[o].points.items() if g <= k]
        starts = [c[o][None, :] for c in cands if c[o].sum() <= k] + [m[None, :] for m in solved]
        return lambda limit: (Xm, W[o:o + 1], off_m[:, o:o + 1], active[o:o + 1], [(0, d, k)], loss, settings, starts,
                              limit, float(const[o]), strengthen, f"{o}-{o}", rounds + 1)

    while todo:
        out = dispatch.run([job(o, k) for o, k in todo], deadline, dispatch.row_time_limit,
                           f"exact rows × counts, round {rounds + 1}")
        rounds += 1
        for (o, k), g in zip(todo, out):
            curves[o].points[k] = (g.bound, g.objective, g.mask[0])
            statuses.append(g.status)
            for key in totals:
                totals[key] += g.stats[key]
            row_stats.append(_row_record(f"{o}-{o}", g, count=k, round=rounds))
        bound, counts = decomposition.allocation_bound(curves, cap)
        value, chosen = decomposition.best_allocation(curves, cap)
        history.append({"round": rounds, "lower_bound": bound, "upper_bound": value, "solved": len(todo),
                        "time": time.time() - t0})
        out_of_time = deadline is not None and time.time() >= deadline
        todo = [] if gap_met(value, bound, settings.gap) or rounds >= MAX_REFINE or out_of_time else \
            decomposition.refine(curves, counts)
    def loss_of(m: np.ndarray) -> float:
        return layer_loss(X @ (m * W).T + offset, loss)

    mask = np.stack([curves[o].points[k][2] for o, k in enumerate(chosen)])
    objective = loss_of(mask)
    cand_losses = [loss_of(c) for c in cands]
    for c, v in zip(cands, cand_losses):  # a candidate the allocation does not beat is the answer
        if c.sum() <= cap and v < objective:
            mask, objective = c & active, v
    lagrangian, lam = decomposition.lagrangian_bound(curves, cap)
    if gap_met(objective, bound, settings.gap):
        status = "optimal"
    elif out_of_time or set(statuses) - {"optimal"}:  # the time limit, or rows stopped short of their gap
        status = worst_status([*statuses, *(["time_limit"] if out_of_time else [])])
    else:
        status = "gap_limit"
    stats = {"binaries": int(n_act.max(initial=0)), "constraints": 0, "nonzeros": 0, **totals,
             "incumbent_from_candidates": 0,
             "start_objective": min(cand_losses),
             "subproblems": len(row_stats), "second_pass": 0, "decomposition_rounds": rounds,
             "allocation_bound": bound, "lagrangian_bound": lagrangian, "lagrange_multiplier": lam,
             "row_counts": [int(k) for k in mask.sum(axis=1)], "rows": row_stats, **dispatch.stats()}
    return MilpResult(mask, objective, bound, status, history, stats)


def _row_record(label: str, g: MilpResult, **extra) -> dict:
    """One entry of ``stats["rows"]``: a group's status, objective, bound, time and work."""
    root = {"root_bound": g.stats["root_bound"]} if "root_bound" in g.stats else {}
    return {"rows": label, **extra, "status": g.status, "objective": g.objective, "bound": g.bound,
            "time": g.stats["time"], "nodes": g.stats["nodes"], "rounds": g.stats["rounds"], **root}


def _group_job(X, W, offset, active, units, loss, settings, starts, limit, const, strengthen, label,
               pass_) -> MilpResult:
    """One group's MILP (runs on a worker): :func:`_solve_group`, its history labelled."""
    t0 = time.perf_counter()
    g = _solve_group(X, W, offset, active, units, loss, settings, starts, limit, const, strengthen)
    g.history = [{"rows": label, "pass": pass_, **h} for h in g.history]
    g.stats["time"] = time.perf_counter() - t0
    return g


_START_KEYS = ("mip_starts", "mip_starts_accepted", "start_objective")
_STATUS_ORDER = ("time_limit", "node_limit", "numerical")  # the status of a whole made of parts


def worst_status(statuses) -> str:
    """``"optimal"`` when every part is; else the first of time_limit, node_limit, numerical
    that a part has."""
    seen = set(statuses)
    return "optimal" if seen <= {"optimal"} else next(s for s in _STATUS_ORDER if s in seen)


def _merge_passes(first: MilpResult, second: MilpResult) -> MilpResult:
    """One group's result over both passes: the second pass's incumbent (it started from the
    first's, so it is no worse), the larger of the two proven bounds, both histories; work
    counts (nodes, rounds, build time, MIP starts) add up, model sizes do not, and the first
    MIP start's objective is the first pass's."""
    stats = dict(second.stats)
    for k in ("nodes", "rounds", "build_time", "mip_starts", "mip_starts_accepted", "time"):
        stats[k] = first.stats[k] + second.stats[k]
    stats["start_objective"] = first.stats["start_objective"]
    if np.array_equal(first.mask, second.mask):  # kept the first pass's incumbent: its origin stands
        stats["incumbent_from_candidates"] = first.stats["incumbent_from_candidates"]
    bound = max(first.bound, second.bound)
    return MilpResult(second.mask, second.objective, bound, second.status, first.history + second.history, stats)


def local_search(X, W, offset, active, units, loss, mask, max_moves: int = 100_000) -> np.ndarray:
    """Best-improvement 1-opt from a feasible ``mask`` (p, d): remove a kept weight, add
    one (if its scope unit has room), or swap a kept for a removed weight of the same unit,
    until no move lowers the loss by more than 1e-12 relative. Returns a feasible mask at
    least as good; it only seeds the MILP (MIP start, first L2 cut points)."""
    p, d = W.shape
    ell = loss_kind(loss).entry
    unit_of = np.full(p * d, -1)
    caps = np.zeros(len(units), dtype=int)
    for u, (start, stop, cap) in enumerate(units):
        unit_of[start:stop] = u
        caps[u] = cap
    act = active.reshape(-1) & (unit_of >= 0)
    mask = mask.copy().reshape(-1)
    for _ in range(max_moves):
        R = X @ (mask.reshape(p, d) * W).T + offset  # (N, p) residuals
        base = ell(R).sum(axis=0)
        kept, free = np.flatnonzero(mask & act), np.flatnonzero(~mask & act)
        ck = X[:, kept % d] * W[kept // d, kept % d]  # (N, |kept|) contributions
        cf = X[:, free % d] * W[free // d, free % d]
        rem = ell(R[:, kept // d] - ck).sum(axis=0) - base[kept // d]
        add_any = ell(R[:, free // d] + cf).sum(axis=0) - base[free // d]
        room = np.bincount(unit_of[mask & act], minlength=len(units)) < caps
        add = np.where(room[unit_of[free]], add_any, np.inf)
        same_unit = unit_of[kept][:, None] == unit_of[free][None, :]
        swap = np.where(same_unit, rem[:, None] + add_any[None, :], np.inf)  # exact across rows
        for o in np.unique(kept // d):  # a swap inside one row changes one residual column
            a, b = np.flatnonzero(kept // d == o), np.flatnonzero(free // d == o)
            if len(a) and len(b):
                col = R[:, o][:, None, None] - ck[:, a][:, :, None] + cf[:, b][:, None, :]
                swap[np.ix_(a, b)] = np.where(same_unit[np.ix_(a, b)], ell(col).sum(axis=0) - base[o], np.inf)
        moves = [(rem.min(initial=np.inf), "rem"), (add.min(initial=np.inf), "add"),
                 (swap.min(initial=np.inf), "swap")]
        delta, kind = min(moves, key=lambda m: m[0])
        if not delta < -1e-12 * max(1.0, float(base.sum())):
            break
        if kind == "rem":
            mask[kept[int(np.argmin(rem))]] = False
        elif kind == "add":
            mask[free[int(np.argmin(add))]] = True
        else:
            i, j = np.unravel_index(int(np.argmin(swap)), swap.shape)
            mask[kept[i]], mask[free[j]] = False, True
    return mask.reshape(p, d)


@dataclass
class _Model:
    model: object
    mvars: list  # binary variable per active weight
    fill_start: Callable[[np.ndarray, np.ndarray], None]  # (mask values, residuals): set a MIP start
    add_cuts: Callable[[np.ndarray], None] | None  # (residuals (N*p,)): add L2 tangents


def _row_quadratic(X, w, offset, const: float, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One row's L2 loss over its weights ``cols`` as mᵀQm + 2qᵀm + γ: (A, Q = AᵀA, q, γ)
    with A = X[:, cols]·w[cols] (Gram-form X: r rows), q = Aᵀoffset, γ = ‖offset‖² + const."""
    A = X[:, cols] * w[cols]
    return A, A.T @ A, A.T @ offset, float(offset @ offset) + const


def _solve_group(X, W, offset, active, units, loss, settings, candidates, time_limit, const: float = 0.0,
                 strengthen: str = "none") -> MilpResult:
    """One MILP (or L2 outer-approximation loop) over the rows of ``W`` (p, d): inputs X
    (N or r, d), offset (N or r, p), objective Σ loss(X (m ⊙ W)ᵀ + offset) + ``const``.
    ``strengthen`` (L2, one row): the MILP minimises the QCR form ℓ_u of the row instead
    (:mod:`maskopt.solvers.exact.qcr`; equal to the objective on every mask)."""
    p, d = W.shape
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    flat_active = np.flatnonzero(active.reshape(-1))

    def residual(mask: np.ndarray) -> np.ndarray:
        return X @ (mask * W).T + offset

    def value(mask: np.ndarray) -> float:
        return layer_loss(residual(mask), loss) + const

    values = [value(c & active) for c in candidates]
    start = candidates[int(np.argmin(values))] & active
    inc_mask = local_search(X, W, offset, active, units, loss, start)
    inc_val = value(inc_mask)
    candidates = [*candidates, inc_mask]
    stats = {"strengthen": strengthen}
    lower = 0.0 if loss == "l2" else -np.inf  # Σr² ≥ 0: the first bound of an L2 loop
    cut_residual, extra_cuts = residual, []
    if loss == "l2" and p == 1 and len(flat_active):  # one row: its convex relaxation gives a bound and a cut point
        cols = flat_active
        A, Q, q, gamma = _row_quadratic(X, W[0], offset[:, 0], const, cols)
        # the row's units in the positions of its active columns (one unit under a row budget,
        # its N:M groups under an N:M budget); the convex relaxation keeps only their total count
        col_units = [(int(np.searchsorted(cols, a)), int(np.searchsorted(cols, b)), c)
                     for a, b, c in (units or [(0, d, len(cols))])]
        col_units = [(a, b, min(c, b - a)) for a, b, c in col_units if b > a]
        cap = min(sum(c for _, _, c in col_units), len(cols))
        try:
            conv = qcr.convexified(Q, q, cap, strengthen, A)
        except RuntimeError as e:  # a conic solver's failure: the row is solved without the shift
            stats["strengthen"] = f"none ({e})"
            conv = qcr.convexified(Q, q, cap, "none", A)
        root, point = qcr.relaxation_bound(conv, gamma, cap, start=conv.point)
        stats["root_bound"] = root
        lower = max(lower, root)
        full_point = np.zeros((1, d))
        full_point[0, cols] = point
        if stats["strengthen"] == strengthen != "none":  # the MILP minimises ℓ_u (equal to the loss on masks)
            built = _build_l2(conv.L, np.ones((1, len(cols))), np.zeros((conv.L.shape[0], 1)), np.arange(len(cols)),
                              col_units, linear=conv.lin, const=gamma - conv.err * cap)

            def cut_residual(mask: np.ndarray) -> np.ndarray:
                return (conv.L @ mask[0, cols].astype(float))[:, None]

        extra_cuts = [cut_residual(full_point)]  # tangents at the relaxation's minimiser: root LP ≥ its bound
    if cut_residual is residual:
        built = _BUILDERS[KINDS[loss].encodings["layerwise"]](X, W, offset, flat_active, units, const=const)
    build_time = time.perf_counter() - t0
    session = HighsSession(MipSettings(time_limit=None, gap=settings.gap, threads=settings.threads,
                                       verbose=settings.verbose, node_limit=settings.node_limit))
    tight = settings.gap if loss == "l1" else settings.gap / 10
    force_tight = False
    n_rows = X.shape[0]
    stats.update({
        "binaries": len(flat_active),
        "constraints": 0,
        "nonzeros": int(active.sum()) * n_rows + 2 * n_rows * p + len(flat_active),
        "build_time": build_time,
        "nodes": 0,
        "rounds": 0,
        "incumbent_from_candidates": 0,
        "mip_starts": 0,  # master solves given the incumbent as a MIP start
        "mip_starts_accepted": 0,  # ... whose first incumbent in HiGHS had the start's objective
        "start_objective": inc_val,  # the loss of the first MIP start (the seeded incumbent)
    })
    history: list[dict] = []
    cut_masks: set[bytes] = set()
    if built.add_cuts is not None:
        for c in candidates:
            cut_masks.add((c & active).tobytes())
            built.add_cuts(cut_residual(c & active).reshape(-1))
        for res in extra_cuts:
            built.add_cuts(res.reshape(-1))
    status = "time_limit"
    while True:
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            break
        built.fill_start(inc_mask.reshape(-1)[flat_active], cut_residual(inc_mask).reshape(-1))
        master_gap = tight
        if built.add_cuts is not None and not force_tight:
            outer = (inc_val - lower) / abs(inc_val) if np.isfinite(lower) and inc_val > 0 else 1.0
            master_gap = min(max(tight, 0.3 * outer), 0.05)
        out = session.solve(built.model, built.mvars, remaining, warm_start=True, gap=master_gap)
        stats["rounds"] += 1
        stats["nodes"] += out.nodes
        stats["mip_starts"] += 1  # the master values the start at its loss (L2: s = r², tangents at its residuals)
        stats["mip_starts_accepted"] += int(out.start_accepted(inc_val))
        lower = max(lower, out.bound)
        new_mask = None
        if out.values is not None:
            new_mask = np.zeros(p * d, dtype=bool)
            new_mask[flat_active] = out.values > 0.5
            new_mask = new_mask.reshape(p, d)
            new_val = value(new_mask)
            if new_val < inc_val:
                inc_mask, inc_val = new_mask, new_val
        history.append({"round": stats["rounds"], "lower_bound": lower, "upper_bound": inc_val,
                        "master_gap": master_gap, "time": time.perf_counter() - t0, "status": out.status})
        if out.status != "optimal":  # a time or node limit
            status = out.status
            break
        if built.add_cuts is None or gap_met(inc_val, lower, settings.gap):
            status = "optimal"
            break
        key = new_mask.tobytes()
        if key in cut_masks:
            if master_gap > tight:  # a loose master may return a known mask: tighten, re-solve
                force_tight = True
                continue
            # The master already values this mask exactly (tangents at its residuals), yet its
            # bound misses the gap just checked: solver tolerances stop the proof here.
            status = "numerical"
            history[-1]["note"] = (f"mask repeated: gap {(inc_val - lower) / max(abs(inc_val), 1e-300):.3g} "
                                   "reached, limited by solver tolerances")
            break
        cut_masks.add(key)
        built.add_cuts(cut_residual(new_mask).reshape(-1))
    stats["constraints"] = built.model.nconstraints()
    stats["incumbent_from_candidates"] = int(any(np.array_equal(inc_mask, c & active) for c in candidates))
    return MilpResult(inc_mask, inc_val, float(max(lower, 0.0)), status, history, stats)


def _linear_rows(X, W, offset, flat_active):
    """Per residual entry (n, o): (coefficients, variable positions, −offset)."""
    d = W.shape[1]
    rows_of = flat_active // d
    cols_of = flat_active % d
    per_row = [np.flatnonzero(rows_of == o) for o in range(W.shape[0])]
    for n in range(X.shape[0]):
        for o, pos in enumerate(per_row):
            yield n, o, X[n, cols_of[pos]] * W[o, cols_of[pos]], pos, -offset[n, o]


def _base_model(flat_active, units):
    import pyomo.environ as pyo
    from pyomo.core.expr.numeric_expr import LinearExpression

    model = pyo.ConcreteModel()
    model.m = pyo.Var(range(len(flat_active)), within=pyo.Binary)
    mvars = [model.m[j] for j in range(len(flat_active))]
    model.budget = pyo.ConstraintList()
    for start, stop, cap in units:
        pos = np.flatnonzero((flat_active >= start) & (flat_active < stop))
        if len(pos) > cap:
            model.budget.add(LinearExpression(constant=0.0, linear_coefs=[1.0] * len(pos),
                                              linear_vars=[mvars[j] for j in pos]) <= cap)
    return model, mvars


def _build_l1(X, W, offset, flat_active, units, const: float = 0.0) -> _Model:
    import pyomo.environ as pyo
    from pyomo.core.expr.numeric_expr import LinearExpression

    model, mvars = _base_model(flat_active, units)
    n_res = X.shape[0] * W.shape[0]
    model.u = pyo.Var(range(n_res), within=pyo.NonNegativeReals)
    model.v = pyo.Var(range(n_res), within=pyo.NonNegativeReals)
    model.fit = pyo.ConstraintList()
    p = W.shape[0]
    for n, o, coefs, pos, rhs in _linear_rows(X, W, offset, flat_active):
        k = n * p + o
        expr = LinearExpression(constant=0.0, linear_coefs=[*coefs.tolist(), -1.0, 1.0],
                                linear_vars=[*(mvars[j] for j in pos), model.u[k], model.v[k]])
        model.fit.add(expr == float(rhs))
    model.obj = pyo.Objective(expr=LinearExpression(
        constant=const, linear_coefs=[1.0] * (2 * n_res),
        linear_vars=[model.u[k] for k in range(n_res)] + [model.v[k] for k in range(n_res)]))

    def fill_start(m_values, res):
        for var, val in zip(mvars, m_values):
            var.set_value(float(val))
        for k, r in enumerate(res):
            model.u[k].set_value(max(float(r), 0.0))
            model.v[k].set_value(max(-float(r), 0.0))

    return _Model(model, mvars, fill_start, None)


def _build_l2(X, W, offset, flat_active, units, linear: np.ndarray | None = None, const: float = 0.0) -> _Model:
    """The outer-approximation master: Σ s + linearᵀm + const with s ≥ tangents of r²
    (``linear`` (len(flat_active),), the QCR form's linear part, or none)."""
    import pyomo.environ as pyo
    from pyomo.core.expr.numeric_expr import LinearExpression

    model, mvars = _base_model(flat_active, units)
    n_res = X.shape[0] * W.shape[0]
    model.r = pyo.Var(range(n_res))
    model.s = pyo.Var(range(n_res), within=pyo.NonNegativeReals)
    model.fit = pyo.ConstraintList()
    p = W.shape[0]
    for n, o, coefs, pos, rhs in _linear_rows(X, W, offset, flat_active):
        k = n * p + o
        expr = LinearExpression(constant=0.0, linear_coefs=[*coefs.tolist(), -1.0],
                                linear_vars=[*(mvars[j] for j in pos), model.r[k]])
        model.fit.add(expr == float(rhs))
    lin = [] if linear is None else [float(v) for v in linear]
    model.obj = pyo.Objective(expr=LinearExpression(
        constant=const, linear_coefs=[1.0] * n_res + lin,
        linear_vars=[model.s[k] for k in range(n_res)] + mvars[:len(lin)]))
    model.cuts = pyo.ConstraintList()
    seen: set[tuple[int, float]] = set()

    def add_cuts(res):
        for k, rho in enumerate(res):
            rho = float(rho)
            # ρ = 0 gives s ≥ 0, already a bound; HiGHS drops a coefficient 2ρ ≤ 1e-9 (small_matrix_value)
            # and the cut s ≥ −ρ² left is implied by s ≥ 0
            if abs(2.0 * rho) <= 1e-9 or (k, rho) in seen:
                continue
            seen.add((k, rho))
            model.cuts.add(LinearExpression(constant=rho * rho, linear_coefs=[1.0, -2.0 * rho],
                                            linear_vars=[model.s[k], model.r[k]]) >= 0.0)

    def fill_start(m_values, res):
        for var, val in zip(mvars, m_values):
            var.set_value(float(val))
        for k, r in enumerate(res):
            model.r[k].set_value(float(r))
            model.s[k].set_value(float(r) ** 2)

    return _Model(model, mvars, fill_start, add_cuts)


_BUILDERS = {"milp": _build_l1, "oa": _build_l2}  # the layer-wise encodings named in maskopt.solvers.losses
