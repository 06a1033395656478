"""Exact methods: ``"exact"`` (MILP, Pyomo + HiGHS, with a proven bound) and
``"bruteforce"`` (enumeration oracle for tiny problems)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from maskopt.api import MethodOutput, evaluate, register
from maskopt.masks import MaskSet
from maskopt.problems import LayerwiseProblem
from maskopt.solvers.exact.bruteforce import TooManyCandidatesError, bruteforce
from maskopt.solvers.exact.highs import MipSettings, SolverUnavailableError
from maskopt.solvers.exact.layerwise import model_size, solve_layerwise

__all__ = ["ExactOptions", "BruteforceOptions", "ProblemTooLargeError", "SolverUnavailableError",
           "TooManyCandidatesError"]


class ProblemTooLargeError(ValueError):
    """The exact model would exceed its size cap."""


@dataclass(frozen=True)
class ExactOptions:
    """Options of ``method="exact"``.

    Attributes:
        time_limit: seconds (None = no limit). On the limit the incumbent, the proven bound
            and the gap are returned with status ``"time_limit"``.
        gap: relative optimality tolerance (HiGHS ``mip_rel_gap``; default 1e-4 as in
            HiGHS and Gurobi). ``"optimal"`` means proven within this gap.
        threads: HiGHS threads (None = HiGHS's default).
        warm_start: a mask within the budget, given to HiGHS as a MIP start.
        verbose: stream the HiGHS log to stdout.
        max_size: refuse models with more than this many constraint-matrix nonzeros.
    """

    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    warm_start: Mapping[str, torch.Tensor] | None = None
    verbose: bool = False
    max_size: int = 2_000_000

    def __post_init__(self) -> None:
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None; got {self.time_limit}.")
        if not 0 <= self.gap < 1:
            raise ValueError(f"gap must be a relative tolerance in [0, 1); got {self.gap}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None; got {self.threads!r}.")
        if not isinstance(self.max_size, int) or self.max_size < 1:
            raise ValueError(f"max_size must be a positive integer; got {self.max_size!r}.")


@dataclass(frozen=True)
class BruteforceOptions:
    """Options of ``method="bruteforce"``: refuse above ``max_candidates`` masks (default 2²⁰)."""

    max_candidates: int = 2**20


def _checked_warm_start(problem: LayerwiseProblem, warm: Mapping[str, torch.Tensor]) -> MaskSet:
    ms = warm if isinstance(warm, MaskSet) else MaskSet(warm)
    ms.check_shapes(problem.mask_shapes())
    bad = problem.allocation.violations(ms)
    if bad:
        raise ValueError(f"warm_start is over the budget ({bad[0]}); give a mask within the budget.")
    return ms


@register("exact", options=ExactOptions, problems=(LayerwiseProblem,),
          summary="MILP built with Pyomo, solved by HiGHS; proven bound and gap")
def _exact(problem: LayerwiseProblem, opts: ExactOptions) -> MethodOutput:
    n, d = problem.inputs.shape
    p = problem.weight.shape[0]
    units = problem.allocation.units()
    size = model_size(n, d, p, len(units), problem.loss)
    if size["nonzeros"] > opts.max_size:
        raise ProblemTooLargeError(
            f"The exact MILP would have {size['binaries']:,} binaries, {size['constraints']:,} constraints "
            f"and {size['nonzeros']:,} nonzeros, above max_size={opts.max_size:,} nonzeros. Use a "
            "heuristic method (see maskopt.methods()), fewer samples, or raise max_size if you accept "
            "a long solve."
        )
    # Candidate MIP starts: the user's warm start, and the mask of the largest contributions |W_oi|·‖X_:i‖.
    contribution = problem.weight.abs() * problem.inputs.norm(dim=0)
    candidates = [problem.allocation.project({"weight": contribution})["weight"]]
    stats = {}
    if opts.warm_start is not None:
        warm = _checked_warm_start(problem, opts.warm_start)
        candidates.insert(0, warm["weight"])
        stats["warm_start_objective"] = evaluate(problem, warm)
    res = solve_layerwise(
        problem.inputs.numpy(),
        problem.weight.numpy(),
        problem.target.numpy(),
        None if problem.bias is None else problem.bias.numpy(),
        units,
        problem.loss,
        MipSettings(time_limit=opts.time_limit, gap=opts.gap, threads=opts.threads, verbose=opts.verbose),
        [c.numpy() for c in candidates],
    )
    stats.update(res.stats)
    stats["solver"] = "HiGHS via Pyomo appsi_highs"
    stats["formulation"] = "L1 epigraph MILP" if problem.loss == "l1" else "L2 outer approximation MILP"
    return MethodOutput({"weight": torch.from_numpy(res.mask)}, res.status, res.bound, res.history, stats)


@register("bruteforce", options=BruteforceOptions, problems=(LayerwiseProblem,),
          summary="enumerate every mask within the budget (oracle for tiny problems)")
def _bruteforce(problem: LayerwiseProblem, opts: BruteforceOptions) -> MethodOutput:
    shape = problem.weight.shape

    def batch(flat):
        return problem.objective_batch(torch.from_numpy(flat).reshape(-1, *shape)).numpy()

    mask, value, count = bruteforce(batch, shape.numel(), problem.allocation.units(), opts.max_candidates)
    return MethodOutput({"weight": torch.from_numpy(mask).reshape(shape)}, "optimal", value, [],
                        {"candidates": count})
