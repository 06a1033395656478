"""HiGHS driver for Pyomo models (through Pyomo's persistent ``appsi_highs`` interface).

Maps HiGHS's statuses to ours: ``"optimal"`` (proven within the relative gap),
``"time_limit"`` (stopped by the time limit) and ``"node_limit"`` (stopped by
``mip_max_nodes``); on a limit the incumbent, if any, and the dual bound are still
returned. Anything else (infeasible, numerical error) raises, since every model built by
maskopt is feasible by construction (the all-zero mask is always within budget).

Tolerances. Every session sets HiGHS's feasibility tolerances explicitly
(:data:`PRIMAL_FEASIBILITY_TOL`, :data:`MIP_FEASIBILITY_TOL`, HiGHS's defaults): HiGHS
accepts points that violate a constraint by up to 1e-7 and binaries up to 1e-6 away from
0/1, so a dual bound (and an incumbent's MILP objective) can differ from the exact value of
a mask by about that much, relatively. :data:`BOUND_ATOL` and :data:`BOUND_RTOL` are the
documented allowance built on them: a dual bound may exceed a feasible objective by at
most ``BOUND_ATOL + BOUND_RTOL·|objective|``; anything more is a wrong certificate.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PRIMAL_FEASIBILITY_TOL = 1e-7  # HiGHS primal_feasibility_tolerance (its default)
MIP_FEASIBILITY_TOL = 1e-6  # HiGHS mip_feasibility_tolerance: integrality and row slack in the MIP (its default)
BOUND_RTOL = MIP_FEASIBILITY_TOL  # a dual bound may exceed a feasible objective by this much, relatively,
BOUND_ATOL = MIP_FEASIBILITY_TOL  # plus this much absolutely


def bound_tolerance(objective: float) -> float:
    """How far a proven bound may exceed the feasible ``objective`` through solver
    tolerances alone: ``BOUND_ATOL + BOUND_RTOL·|objective|``."""
    return BOUND_ATOL + BOUND_RTOL * abs(objective)


def gap_met(objective: float, bound: float, gap: float) -> bool:
    """Whether a proven ``bound`` certifies ``objective`` within the relative ``gap``:
    ``objective − bound ≤ gap·|objective| + bound_tolerance(objective)`` (a gap finer than
    the solver's tolerances cannot be proven). What ``"optimal"`` means everywhere."""
    return objective - bound <= gap * abs(objective) + bound_tolerance(objective)


class SolverUnavailableError(RuntimeError):
    """The HiGHS solver (package ``highspy``) or Pyomo cannot be loaded."""


@dataclass(frozen=True)
class MipSettings:
    """Solver settings. ``gap`` is HiGHS's ``mip_rel_gap``; ``time_limit`` in seconds;
    ``node_limit`` is HiGHS's ``mip_max_nodes`` per MILP solve (None = no limit)."""

    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    verbose: bool = False
    node_limit: int | None = None


@dataclass
class MipOutcome:
    """One HiGHS run: our status, incumbent objective (None if none), dual bound, values,
    and, when a MIP start was given, the objective of the first incumbent HiGHS reported
    (``first_incumbent``; it is the start's objective when HiGHS accepted the start)."""

    status: str
    objective: float | None
    bound: float
    values: np.ndarray | None
    nodes: int
    time: float
    first_incumbent: float | None = None

    def start_accepted(self, start_objective: float) -> bool:
        """Whether HiGHS took the MIP start: its first incumbent has the start's objective."""
        return self.first_incumbent is not None and abs(
            self.first_incumbent - start_objective) <= bound_tolerance(start_objective)


@dataclass
class MilpResult:
    """Outcome of an exact mask solver: the mask (bool array), its objective, a proven lower
    bound, our status, per-round history and solver statistics."""

    mask: np.ndarray
    objective: float
    bound: float
    status: str
    history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def _appsi_highs():
    try:
        from pyomo.contrib.appsi.solvers import Highs
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise SolverUnavailableError("Pyomo is not installed: pip install pyomo highspy") from e
    solver = Highs()
    if not solver.available():
        raise SolverUnavailableError(
            "HiGHS is not available to Pyomo (appsi_highs): install it with `pip install highspy`."
        )
    return solver


# HiGHS keeps one thread pool per process, and Pyomo's solver interface redirects the
# process's output while it solves: solves in threads of one process take turns (processes,
# e.g. the default pool of maskopt.solvers.exact.rows, run in parallel)
_ONE_SOLVE_AT_A_TIME = threading.RLock()


def _reset_thread_scheduler() -> None:
    """Drop HiGHS's process-wide thread pool, so that this session's ``threads`` option
    (or HiGHS's default) takes effect: since highspy 1.16 a solve whose ``threads`` differs
    from the pool of an earlier solve is refused ("the scheduler has already been
    initialized"). Called under ``_ONE_SOLVE_AT_A_TIME``, so no solve is using the pool."""
    import highspy

    reset = getattr(highspy.Highs, "resetGlobalScheduler", None)
    if reset is not None:  # older highspy versions have no shared pool to reset
        reset(True)


def _before_fork() -> None:
    _ONE_SOLVE_AT_A_TIME.acquire()  # no solve runs while the process forks
    if "highspy" in sys.modules:  # else HiGHS has no pool yet
        _reset_thread_scheduler()


# A forked child inherits HiGHS's thread pool without its threads, and HiGHS then fails in the
# child ("Invalid argument"), e.g. in a ProcessPoolExecutor that forks: drop the pool just before
# any fork; the parent's next solve starts a new one.
os.register_at_fork(before=_before_fork, after_in_parent=_ONE_SOLVE_AT_A_TIME.release,
                    after_in_child=_ONE_SOLVE_AT_A_TIME.release)


def _highs_status(name: str):
    import highspy

    return getattr(highspy.HighsModelStatus, name)


class HighsSession:
    """A persistent HiGHS solver for one Pyomo model; re-solving after adding constraints
    only sends the changes (used by outer approximation)."""

    def __init__(self, settings: MipSettings) -> None:
        self.settings = settings
        self._solver = _appsi_highs()
        cfg = self._solver.config
        cfg.load_solution = False
        cfg.stream_solver = settings.verbose
        options = {"mip_abs_gap": 1e-9, "primal_feasibility_tolerance": PRIMAL_FEASIBILITY_TOL,
                   "mip_feasibility_tolerance": MIP_FEASIBILITY_TOL}
        if settings.node_limit is not None:
            options["mip_max_nodes"] = int(settings.node_limit)
        if settings.threads is not None:
            options["threads"] = int(settings.threads)
        self._solver.highs_options = options

    def solve(
        self, model, variables: Sequence, time_limit: float | None, warm_start: bool, gap: float | None = None
    ) -> MipOutcome:
        """Solve ``model``; return the values of ``variables`` at the incumbent.

        ``warm_start=True`` hands the current Pyomo variable values to HiGHS as a MIP start
        (whether HiGHS accepted it shows in ``first_incumbent``); ``gap`` overrides the
        settings' relative gap for this solve. Solves in threads of one process take turns.
        """
        with _ONE_SOLVE_AT_A_TIME:
            return self._solve(model, variables, time_limit, warm_start, gap)

    def _solve(self, model, variables: Sequence, time_limit: float | None, warm_start: bool,
               gap: float | None) -> MipOutcome:
        from pyomo.contrib.appsi.base import TerminationCondition as TC

        cfg = self._solver.config
        cfg.time_limit = float("inf") if time_limit is None else max(float(time_limit), 1e-3)
        cfg.warmstart = warm_start
        cfg.mip_gap = self.settings.gap if gap is None else gap
        if self._solver._solver_model is None or self._solver._model is not model:
            self._solver.set_instance(model)  # so the incumbent callback sits on this model's HiGHS object
        incumbents: list[float] = []

        def record(event) -> None:
            incumbents.append(float(event.data_out.objective_function_value))

        highs = self._solver._solver_model
        highs.cbMipImprovingSolution.subscribe(record)
        t0 = time.perf_counter()
        try:
            _reset_thread_scheduler()
            res = self._solver.solve(model)
        finally:
            highs.cbMipImprovingSolution.unsubscribe(record)
        elapsed = time.perf_counter() - t0
        objective = res.best_feasible_objective
        # HiGHS 1.16 can prove the optimum in its presolved space yet hand back the MIP start as
        # the solution (seen on networks with dead neurons): then solve again without the start
        stale = warm_start and objective is not None and not self._solution_attains(objective)
        if stale:
            left = None if time_limit is None else time_limit - elapsed
            if left is None or left > 0:
                self._solver._solver_model.clearSolver()  # else HiGHS keeps the start as its solution
                again = self._solve(model, variables, left, warm_start=False, gap=gap)
                again.time += elapsed
                again.first_incumbent = incumbents[0] if incumbents else None  # the start went in the first solve
                return again
        tc = res.termination_condition
        model_status = self._solver._solver_model.getModelStatus()
        if tc == TC.optimal:
            status = "optimal"
        elif tc == TC.maxTimeLimit:
            status = "time_limit"
        elif self.settings.node_limit is not None and model_status == _highs_status("kSolutionLimit"):
            status = "node_limit"  # HiGHS reports mip_max_nodes as its solution limit
        elif model_status == _highs_status("kInterrupt"):
            raise KeyboardInterrupt("HiGHS was interrupted (Ctrl-C)")
        else:
            raise RuntimeError(f"HiGHS stopped with {tc} on a model that is feasible by construction.")
        values = None
        if stale:  # no time left to solve again: the solution HiGHS returned is what we have
            objective, status = self._solution_objective(), "time_limit"
        if objective is not None:
            primals = self._solver.get_primals()  # the variables some constraint or the objective uses
            # a variable used nowhere cannot change the objective: report it as 0 (e.g. weights into a dead neuron)
            values = np.array([primals[v] if v in primals else 0.0 for v in variables], dtype=float)
        nodes = self._solver._solver_model.getInfo().mip_node_count  # appsi exposes no public node count
        bound = res.best_objective_bound
        if bound is None or not np.isfinite(bound):
            bound = -np.inf
        first = incumbents[0] if warm_start and incumbents else None
        return MipOutcome(status, objective, float(bound), values, int(max(nodes, 0)), elapsed, first)

    def _solution_objective(self) -> float:
        """The objective at the column values of HiGHS's solution (computed here, not reported)."""
        lp = self._solver._solver_model.getLp()
        cols = np.asarray(self._solver._solver_model.getSolution().col_value, dtype=float)
        return float(lp.offset_ + np.dot(np.asarray(lp.col_cost_, dtype=float), cols))

    def _solution_attains(self, objective: float) -> bool:
        """Whether HiGHS's solution has the objective it reports (to a relative 1e-7)."""
        return abs(self._solution_objective() - objective) <= 1e-7 * max(1.0, abs(objective))
