"""HiGHS driver for Pyomo models (through Pyomo's persistent ``appsi_highs`` interface).

Maps HiGHS's statuses to ours: ``"optimal"`` (proven within the relative gap),
``"time_limit"`` (stopped by the time limit; the incumbent, if any, and the dual bound are
still returned). Anything else (infeasible, numerical error) raises, since every model
built by maskopt is feasible by construction (the all-zero mask is always within budget).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class SolverUnavailableError(RuntimeError):
    """The HiGHS solver (package ``highspy``) or Pyomo cannot be loaded."""


@dataclass(frozen=True)
class MipSettings:
    """Solver settings. ``gap`` is HiGHS's ``mip_rel_gap``; ``time_limit`` in seconds."""

    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    verbose: bool = False


@dataclass
class MipOutcome:
    """One HiGHS run: our status, incumbent objective (None if none), dual bound, values."""

    status: str
    objective: float | None
    bound: float
    values: np.ndarray | None
    nodes: int
    time: float


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


def _reset_thread_scheduler() -> None:
    """Drop HiGHS's process-wide thread pool, so that this session's ``threads`` option
    (or HiGHS's default) takes effect: since highspy 1.16 a solve whose ``threads`` differs
    from the pool of an earlier solve is refused ("the scheduler has already been
    initialized"). maskopt runs one solve at a time, so no solve is using the pool here."""
    import highspy

    reset = getattr(highspy.Highs, "resetGlobalScheduler", None)
    if reset is not None:  # older highspy versions have no shared pool to reset
        reset(True)


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
        options = {"mip_abs_gap": 1e-9}
        if settings.threads is not None:
            options["threads"] = int(settings.threads)
        self._solver.highs_options = options
        _reset_thread_scheduler()

    def solve(
        self, model, variables: Sequence, time_limit: float | None, warm_start: bool, gap: float | None = None
    ) -> MipOutcome:
        """Solve ``model``; return the values of ``variables`` at the incumbent.

        ``warm_start=True`` hands the current Pyomo variable values to HiGHS as a MIP start;
        ``gap`` overrides the settings' relative gap for this solve.
        """
        from pyomo.contrib.appsi.base import TerminationCondition as TC

        cfg = self._solver.config
        cfg.time_limit = float("inf") if time_limit is None else max(float(time_limit), 1e-3)
        cfg.warmstart = warm_start
        cfg.mip_gap = self.settings.gap if gap is None else gap
        t0 = time.perf_counter()
        res = self._solver.solve(model)
        elapsed = time.perf_counter() - t0
        objective = res.best_feasible_objective
        # HiGHS 1.16 can prove the optimum in its presolved space yet hand back the MIP start as
        # the solution (seen on networks with dead neurons): then solve again without the start
        stale = warm_start and objective is not None and not self._solution_attains(objective)
        if stale:
            left = None if time_limit is None else time_limit - elapsed
            if left is None or left > 0:
                self._solver._solver_model.clearSolver()  # else HiGHS keeps the start as its solution
                again = self.solve(model, variables, left, warm_start=False, gap=gap)
                again.time += elapsed
                return again
        tc = res.termination_condition
        if tc == TC.optimal:
            status = "optimal"
        elif tc == TC.maxTimeLimit:
            status = "time_limit"
        elif self._solver._solver_model.getModelStatus() == _highs_status("kInterrupt"):
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
        return MipOutcome(status, objective, float(bound), values, int(max(nodes, 0)), elapsed)

    def _solution_objective(self) -> float:
        """The objective at the column values of HiGHS's solution (computed here, not reported)."""
        lp = self._solver._solver_model.getLp()
        cols = np.asarray(self._solver._solver_model.getSolution().col_value, dtype=float)
        return float(lp.offset_ + np.dot(np.asarray(lp.col_cost_, dtype=float), cols))

    def _solution_attains(self, objective: float) -> bool:
        """Whether HiGHS's solution has the objective it reports (to a relative 1e-7)."""
        return abs(self._solution_objective() - objective) <= 1e-7 * max(1.0, abs(objective))
