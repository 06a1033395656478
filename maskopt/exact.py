"""Exact methods: ``"exact"`` (MILP, Pyomo + HiGHS, with a proven bound) and
``"bruteforce"`` (enumeration oracle for tiny problems)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from maskopt.api import (
    CommonOptions,
    MethodOutput,
    SolveResult,
    checked_bound,
    evaluate,
    register,
    relative_gap,
    solve,
)
from maskopt.distill import DistillProblem, parameter_names
from maskopt.masks import MaskSet
from maskopt.problems import LayerwiseProblem, Problem
from maskopt.solvers.exact import network
from maskopt.solvers.exact.bruteforce import TooManyCandidatesError, bruteforce, count_candidates
from maskopt.solvers.exact.highs import MipSettings, SolverUnavailableError
from maskopt.solvers.exact.layerwise import Dispatch, model_size, solve_layerwise
from maskopt.solvers.exact.qcr import STRENGTHEN
from maskopt.solvers.posttrain import wanda_scores

__all__ = ["BruteforceOptions", "Certificate", "ExactOptions", "ProblemTooLargeError", "SolverUnavailableError",
           "TooManyCandidatesError", "UnsupportedProblemError", "certify"]


class UnsupportedProblemError(ValueError):
    """The exact solver cannot encode this problem (architecture or loss)."""


class ProblemTooLargeError(ValueError):
    """The exact model would exceed its size cap."""


@dataclass(frozen=True)
class ExactOptions(CommonOptions):
    """Options of ``method="exact"``.

    Attributes:
        time_limit: seconds (None = no limit) for the whole solve; bound computation and
            model building count toward it but are not interrupted (HiGHS gets what is
            left). On the limit the incumbent, the proven bound and the gap are returned
            with status ``"time_limit"``. A budget with one count per row solves one MILP
            per row: each first gets an equal share of the time left, and rows stopped by
            their share get a second pass with the time the others left unused
            (``res.stats["second_pass"]`` counts them).
        gap: relative optimality tolerance (HiGHS ``mip_rel_gap``; default 1e-4 as in
            HiGHS and Gurobi). ``"optimal"`` means proven within this gap.
        threads: HiGHS threads (None = HiGHS's default).
        warm_start: a mask within the budget, given to HiGHS as a MIP start.
        node_limit: branch-and-bound nodes per MILP solve (HiGHS ``mip_max_nodes``; None =
            no limit; an L2 outer-approximation round or a row is one MILP solve). On the
            limit: incumbent, proven bound and gap with status ``"node_limit"``.
            Deterministic, unlike a time limit.
        verbose: stream the HiGHS log to stdout (common option).
        device: ``"cpu"`` (or ``"auto"``) only: HiGHS and the Pyomo model run on the CPU.
        seed: unused (HiGHS keeps its own default random seed).
        max_size: refuse models with more than this many constraint-matrix nonzeros.
        workers: how many rows of a row budget are solved at the same time (a local process
            pool of this many processes, one HiGHS thread each; 1 = one after the other in
            this process). With ``executor``: how many rows are in flight on it.
        executor: a ``concurrent.futures.Executor`` for the rows (e.g. Dask's
            ``Client.get_executor()``); None = the local pool above.
        row_time_limit: seconds for each row (a row budget); the total ``time_limit`` still
            holds. Without it rows share the total limit as described above.
        progress: a progress bar per finished row (row budgets with more than one row).
        decompose: a layer (or global) budget, one count over all rows, is solved row by row:
            each row at a few counts (all dispatched like a row budget's rows), then at the
            counts the bound asks for; the bound is the best allocation of the rows' proven
            bounds (the Lagrangian dual of the count is reported beside it), the mask the best
            allocation of their masks (:mod:`maskopt.solvers.exact.decompose`). Status
            ``"gap_limit"`` when the rounds end with the gap open. Default False: one MILP.
        strengthen: ``"none"`` (default), ``"eig"`` or ``"sdp"``: each row's L2 MILP
            minimises the quadratic convex reformulation ℓ_u, equal to the loss on every mask,
            with u from the smallest eigenvalue or the Shor SDP (cvxpy + Clarabel; about 1 s
            per row of 40 inputs, unusable at hundreds); see
            :mod:`maskopt.solvers.exact.qcr`. Row budgets and L2 only.
        bounds: activation bounds of the network MILP (DistillProblem only): ``"global"``
            (one big-M), ``"interval"`` (default), ``"lp"`` (LP-based tightening) or
            ``"milp"`` (MILP-based tightening, 1 s per bound); see
            :mod:`maskopt.solvers.exact.network`.
    """

    time_limit: float | None = None
    gap: float = 1e-4
    threads: int | None = None
    node_limit: int | None = None
    warm_start: Mapping[str, torch.Tensor] | None = None
    max_size: int = 2_000_000
    workers: int = 1
    executor: Executor | None = None
    row_time_limit: float | None = None
    progress: bool = True
    strengthen: str = "none"
    decompose: bool = False
    bounds: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bounds is not None and self.bounds not in network.BOUNDS:
            raise ValueError(f"bounds must be one of {network.BOUNDS}; got {self.bounds!r}.")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None; got {self.time_limit}.")
        if not 0 <= self.gap < 1:
            raise ValueError(f"gap must be a relative tolerance in [0, 1); got {self.gap}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None; got {self.threads!r}.")
        if self.node_limit is not None and (not isinstance(self.node_limit, int) or self.node_limit < 0):
            raise ValueError(f"node_limit must be a non-negative integer or None; got {self.node_limit!r}.")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer; got {self.workers!r}.")
        if self.executor is not None and not isinstance(self.executor, Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor (for Dask: client.get_executor()); "
                            f"got {type(self.executor).__name__}.")
        if self.row_time_limit is not None and not self.row_time_limit > 0:
            raise ValueError(f"row_time_limit must be a positive number of seconds or None; got {self.row_time_limit}.")
        if self.strengthen not in STRENGTHEN:
            raise ValueError(f"strengthen must be one of {STRENGTHEN}; got {self.strengthen!r}.")
        if not isinstance(self.max_size, int) or self.max_size < 1:
            raise ValueError(f"max_size must be a positive integer; got {self.max_size!r}.")


@dataclass(frozen=True)
class BruteforceOptions(CommonOptions):
    """Options of ``method="bruteforce"``: refuse above ``max_candidates`` masks (default 2²⁰).
    ``device``: ``"cpu"`` (or ``"auto"``) only, the enumeration runs in numpy; ``seed``: unused
    (deterministic); ``verbose``: nothing to show."""

    max_candidates: int = 2**20


def _mip_settings(opts: ExactOptions) -> MipSettings:
    return MipSettings(time_limit=opts.time_limit, gap=opts.gap, threads=opts.threads, verbose=opts.verbose,
                       node_limit=opts.node_limit)


def _checked_warm_start(problem: Problem, warm: Mapping[str, torch.Tensor]) -> MaskSet:
    ms = warm if isinstance(warm, MaskSet) else MaskSet(warm)
    ms.check_shapes(problem.mask_shapes())
    bad = problem.allocation.violations(ms)
    if bad:
        raise ValueError(f"warm_start is over the budget ({bad[0]}); give a mask within the budget.")
    return ms


def _layerwise_too_large(problem: LayerwiseProblem, max_size: int, decompose: bool) -> str | None:
    """Why the layer-wise MILP is refused as too large (None when it is not)."""
    n, d = problem.inputs.shape
    size = model_size(n, d, problem.weight.shape[0], problem.allocation.units(), problem.loss, decompose)
    if size["nonzeros"] <= max_size:
        return None
    what = "each row's MILP" if size["milps"] > 1 else "The exact MILP"
    return (f"{what} would have {size['binaries']:,} binaries, {size['constraints']:,} constraints and "
            f"{size['nonzeros']:,} nonzeros, above max_size={max_size:,} nonzeros. Use a heuristic method (see "
            "maskopt.methods()), fewer samples, or raise max_size if you accept a long solve.")


def _exact_refusal(problem: Problem) -> str | None:
    """Why ``method="exact"`` refuses ``problem`` at its default options (None when it takes it)."""
    if isinstance(problem, LayerwiseProblem):
        return _layerwise_too_large(problem, ExactOptions.max_size, False)
    try:
        x, layers = network_layers(problem)
    except UnsupportedProblemError as err:
        return str(err)
    return _network_too_large(x, layers, problem.allocation.size, ExactOptions.max_size)


def _bruteforce_refusal(problem: Problem) -> str | None:
    count = count_candidates(problem.allocation.units())
    limit = BruteforceOptions.max_candidates
    return None if count <= limit else f"{count:,} masks within the budget, above max_candidates={limit:,}."


@register("exact", options=ExactOptions, problems=(LayerwiseProblem, DistillProblem), family="exact",
          check=_exact_refusal, uses_seed=False, device_reason="HiGHS and the Pyomo model run on the CPU",
          summary="MILP built with Pyomo, solved by HiGHS; proven bound and gap")
def _exact(problem: LayerwiseProblem | DistillProblem, opts: ExactOptions) -> MethodOutput:
    if isinstance(problem, DistillProblem):
        row_only = {"workers": 1, "executor": None, "row_time_limit": None, "strengthen": "none", "decompose": False}
        given = [k for k, v in row_only.items() if getattr(opts, k) != v]
        if given:
            raise ValueError(f"{', '.join(given)} apply to the rows of a LayerwiseProblem; the network MILP of a "
                             "DistillProblem is one model. Leave them at their defaults.")
        return _exact_network(problem, opts)
    if opts.bounds is not None:
        raise ValueError("bounds= applies to the network MILP of a DistillProblem; a LayerwiseProblem needs none.")
    units = problem.allocation.units()
    too_large = _layerwise_too_large(problem, opts.max_size, opts.decompose)
    if too_large:
        raise ProblemTooLargeError(too_large)
    # Candidate MIP starts: the user's warm start, and the mask of the largest contributions |W_oi|·‖X_:i‖.
    contribution = wanda_scores(problem.weight, problem.inputs)
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
        _mip_settings(opts),
        candidates=[c.numpy() for c in candidates],
        dispatch=Dispatch(opts.executor, opts.workers, opts.row_time_limit, opts.progress),
        strengthen=opts.strengthen,
        decompose=opts.decompose,
    )
    stats.update(res.stats)
    stats["solver"] = "HiGHS via Pyomo appsi_highs"
    base = "L1 epigraph MILP" if problem.loss == "l1" else "L2 outer approximation MILP, Gram form"
    stats["formulation"] = base + ("" if opts.strengthen == "none" else f", QCR ({opts.strengthen})") + (
        ", rows decomposed (value curves)" if opts.decompose else "")
    return MethodOutput({"weight": torch.from_numpy(res.mask)}, res.status, res.bound, res.history, stats,
                        objective=res.objective, gap=opts.gap)


@register("bruteforce", options=BruteforceOptions, problems=(LayerwiseProblem, DistillProblem), family="exact",
          check=_bruteforce_refusal, uses_seed=False, device_reason="it enumerates the masks in numpy on the CPU",
          summary="enumerate every mask within the budget (oracle for tiny problems)")
def _bruteforce(problem: Problem, opts: BruteforceOptions) -> MethodOutput:
    alloc = problem.allocation

    def batch(flat):
        return problem.objective_batch(alloc.unflatten(torch.from_numpy(flat))).numpy()

    mask, value, count = bruteforce(batch, alloc.size, alloc.units(), opts.max_candidates)
    return MethodOutput(alloc.unflatten(torch.from_numpy(mask)), "optimal", value, [], {"candidates": count},
                        objective=value, gap=0.0)


_NO_OPS = (nn.Identity, nn.Dropout)


def network_layers(problem: DistillProblem) -> tuple[np.ndarray, list[network.Layer]]:
    """The student as (inputs (N, in), Linear layers) for the network MILP; refuses (with
    UnsupportedProblemError) anything that is not a chain of Linear/ReLU (Flatten, Identity,
    Dropout allowed) inside nn.Sequential: another layer type, a subclass that overrides
    ``forward``, or a module with hooks. A module (or weight) used twice is encoded at each use
    with the same mask entries, as the student computes it."""
    if problem.criterion.encoding("distill") is None:
        what = f"loss={problem.loss!r}" + (f" with alpha={problem.alpha}" if problem.alpha > 0 else "")
        raise UnsupportedProblemError(
            f"The exact network MILP takes loss 'l1' or 'linf' without a cross-entropy term; got {what} "
            "(HiGHS solves MILPs, not MIQPs or exponential cones). Use loss='l1'/'linf', or a heuristic method."
        )
    offsets = problem.allocation.offsets
    name_of = parameter_names(problem.student)
    x = problem.inputs.numpy()
    layers: list[network.Layer] = []
    heuristic = "Use a heuristic method (see maskopt.methods()) for other architectures."

    def offset(tensor: torch.Tensor | None) -> int | None:
        return None if tensor is None else offsets.get(name_of[id(tensor)])

    def walk(module: nn.Module, where: str) -> None:
        nonlocal x
        base = next((t for t in (nn.Sequential, nn.Linear, nn.ReLU, nn.Flatten, *_NO_OPS)
                     if isinstance(module, t)), None)
        if base is None:
            raise UnsupportedProblemError(
                f"The exact network MILP takes students made of Linear and ReLU layers (Flatten, Identity and "
                f"Dropout allowed) inside nn.Sequential; got {type(module).__name__} at {where}. {heuristic}"
            )
        if type(module).forward is not base.forward:
            raise UnsupportedProblemError(
                f"{type(module).__name__} at {where} overrides the forward of {base.__name__}; the network MILP "
                f"encodes only the plain {base.__name__}. {heuristic}"
            )
        if module._forward_hooks or module._forward_pre_hooks:
            raise UnsupportedProblemError(f"{type(module).__name__} at {where} has forward hooks, which the network "
                                          f"MILP cannot encode; remove them. {heuristic}")
        if base is nn.Sequential:
            for name, child in module._modules.items():  # every use, also of a module that appears twice
                if child is not None:
                    walk(child, f"{where}.{name}" if where != "<root>" else name)
        elif base is nn.Linear:
            layers.append(network.Layer(
                module.weight.detach().numpy(), None if module.bias is None else module.bias.detach().numpy(),
                offset(module.weight), offset(module.bias), relu=False))
        elif base is nn.ReLU:
            if not layers:
                raise UnsupportedProblemError(f"ReLU at {where} comes before any Linear layer; apply it to the inputs.")
            layers[-1].relu = True
        elif base is nn.Flatten and not layers:
            x = x.reshape(x.shape[0], -1)

    walk(problem.student, "<root>")
    if not layers:
        raise UnsupportedProblemError("The student has no Linear layer.")
    if x.ndim != 2:
        raise UnsupportedProblemError(f"Inputs must be (N, features) for the first Linear layer; got {x.shape}.")
    return x, layers


def _check_encoding(problem: DistillProblem, x: np.ndarray, layers: list[network.Layer],
                    flat_masks: list[np.ndarray]) -> None:
    """Refuse when the Linear/ReLU chain the MILP encodes computes other logits than the student
    (torch's forward pass) for any of ``flat_masks``."""
    alloc = problem.allocation
    for flat in flat_masks:
        ours = network.forward(x, layers, flat)
        torch_logits = problem.logits(alloc.unflatten(torch.from_numpy(flat))).numpy()
        scale = max(1.0, float(np.abs(torch_logits).max(initial=0.0)))
        diff = float(np.abs(ours - torch_logits).max(initial=0.0))
        if not diff <= 1e-6 * scale:
            raise UnsupportedProblemError(
                f"The student's forward pass differs from the Linear/ReLU chain the network MILP encodes (max "
                f"|logit difference| {diff:.3g} for a mask it was checked on); it may reuse layers outside "
                "nn.Sequential's order or compute something else in forward. Use a heuristic method."
            )


def _network_too_large(x: np.ndarray, layers: list[network.Layer], n_mask: int, max_size: int) -> str | None:
    size = network.model_size(x.shape[0], layers, n_mask)
    if size["nonzeros"] <= max_size:
        return None
    return (f"The exact network MILP would have about {size['binaries']:,} binaries, {size['constraints']:,} "
            f"constraints and {size['nonzeros']:,} nonzeros, above max_size={max_size:,} nonzeros. Use fewer "
            "samples, a smaller student, a heuristic method (see maskopt.methods()), or raise max_size.")


def _exact_network(problem: DistillProblem, opts: ExactOptions) -> MethodOutput:
    x, layers = network_layers(problem)
    alloc = problem.allocation
    n_mask = alloc.size
    too_large = _network_too_large(x, layers, n_mask, opts.max_size)
    if too_large:
        raise ProblemTooLargeError(too_large)
    scores = {n: w.abs() for n, w in problem.weights().items()}
    candidates = [alloc.flatten(alloc.project(scores)).numpy()]
    stats = {}
    if opts.warm_start is not None:
        warm = _checked_warm_start(problem, opts.warm_start)
        candidates.insert(0, alloc.flatten(warm).numpy())
        stats["warm_start_objective"] = evaluate(problem, warm)
    _check_encoding(problem, x, layers, [np.ones(n_mask, dtype=bool), *candidates])
    res = network.solve_network(
        x, layers, problem.target.numpy(), alloc.units(), n_mask, problem.loss,
        _mip_settings(opts),
        bounds=opts.bounds or "interval", candidates=candidates,
    )
    stats.update(res.stats)
    stats["solver"] = "HiGHS via Pyomo appsi_highs"
    stats["formulation"] = f"network MILP ({res.stats['bounds']} bounds)"
    return MethodOutput(alloc.unflatten(torch.from_numpy(res.mask)), res.status, res.bound, res.history, stats,
                        objective=res.objective, gap=opts.gap)


@dataclass
class Certificate:
    """How far a given mask is from the best possible one.

    Attributes:
        objective: ``evaluate(problem, masks)`` of the given mask.
        bound: a proven lower bound on the optimal objective (the exact solver's, never
            clamped: within :func:`~maskopt.solvers.exact.highs.bound_tolerance` above
            ``objective`` it is reported as ``objective``, and ``stats`` says by how much).
        gap: ``relative_gap(objective, bound)``: the given mask is at most this far
            (relatively) from optimal.
        status: the exact solver's status (``"optimal"``: the bound is the optimum within
            its gap; else ``"time_limit"``, ``"node_limit"`` or ``"numerical"``).
        best: the exact solver's result (its incumbent may beat the given mask).
        time: seconds.
        stats: ``bound_raw`` (the solver's bound) and ``bound_rounded`` (how much it was
            lowered to ``objective``; 0.0 when it was not).
    """

    objective: float
    bound: float
    gap: float
    status: str
    best: SolveResult
    time: float
    stats: dict = field(default_factory=dict)


def certify(problem: Problem, masks: Mapping[str, torch.Tensor], time_limit: float | None = None,
            **options) -> Certificate:
    """A proven lower bound on the optimum of ``problem`` and the optimality gap of ``masks``.

    Runs ``method="exact"`` with ``masks`` as the MIP start (so the incumbent is at least
    as good) and ``time_limit`` seconds; other exact options pass through. The bound holds
    for every mask within the budget, so it certifies masks from any method. Raises
    :class:`~maskopt.api.CertificateError` when the bound exceeds the given mask's objective
    beyond the solver tolerances.
    """
    t0 = time.perf_counter()
    given = _checked_warm_start(problem, masks)
    objective = evaluate(problem, given)
    best = solve(problem, method="exact", warm_start=given, time_limit=time_limit, **options)
    raw = best.stats["bound_raw"]
    bound, rounded = checked_bound("exact (certify)", objective, raw)
    return Certificate(objective, bound, relative_gap(objective, bound), best.status, best, time.perf_counter() - t0,
                       {"bound_raw": raw, "bound_rounded": rounded})
