"""Post-training pruning: layer-wise heuristics registered as methods (``"wanda"``, ``"obs"``,
``"swap"``) and :func:`prune_layerwise`, which prunes every Linear layer of a trained network
in order on calibration inputs, each layer solved by any method that takes a
:class:`~maskopt.LayerwiseProblem` (the exact solver with a time limit, or a heuristic) and
reported with its objective and, where the method proves one, its bound.

The layer-wise problem of a Linear layer with weight W (out, in) and bias b: its inputs X
(the calibration inputs as they reach the layer, flattened to (N, in)), target X Wᵀ + b (the
dense layer's output on those inputs), loss ``"l2"`` by default: the layer's squared output
error, the objective of OBC, SparseGPT and Wanda's analysis.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from maskopt.api import CommonOptions, MethodOutput, register, solve
from maskopt.budget import Budget
from maskopt.device import DEVICE_TYPES, resolve_device
from maskopt.masks import MaskSet
from maskopt.problems import LayerwiseProblem
from maskopt.report import format_table, write_csv, write_json
from maskopt.solvers import posttrain as engine
from maskopt.solvers.exact.layerwise import active_weights, local_search

INPUTS = ("pruned", "dense")
RESIDUAL_PAIRS = 20_000_000  # kept x removed pairs the residual (non-L2) swap search prices at most
_CPU_ENGINE = "its engine, maskopt.solvers.posttrain, computes on float64 CPU tensors and numpy"


def _offset(problem: LayerwiseProblem) -> torch.Tensor:
    """b − Y (N, out): the residual of an all-zero mask."""
    bias = torch.zeros(problem.weight.shape[0], dtype=torch.float64) if problem.bias is None else problem.bias
    return bias[None, :] - problem.target


def refit_weights(problem: LayerwiseProblem, mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Least-squares weights on the kept support of ``mask`` (out, in) for ``problem``'s
    target (bias fixed) and the problem's objective with them in place of its weights."""
    weights = engine.refit(problem.inputs, -_offset(problem), mask)
    with torch.no_grad():
        value = float(problem.objective_tensor({"weight": mask}, {"weight": weights}))
    return weights, value


@dataclass(frozen=True)
class WandaOptions(CommonOptions):
    """Wanda has no options of its own: its score is |W_ij| · ‖X_:j‖₂ (float64), computed and
    projected onto the budget on ``device``; ``seed``: unused (deterministic); ``verbose``:
    nothing to show."""


@register("wanda", options=WandaOptions, problems=(LayerwiseProblem,), family="one-shot", devices=DEVICE_TYPES,
          uses_seed=False, summary="|w|·‖x‖ of each weight and its input, per budget unit (Wanda, Sun et al. 2024)")
def _wanda(problem: LayerwiseProblem, opts: WandaOptions) -> MethodOutput:
    dev = resolve_device(opts.device)
    scores = engine.wanda_scores(problem.weight.to(dev), problem.inputs.to(dev))
    return MethodOutput(problem.allocation.project({"weight": scores}), stats={"score": "|w|·‖x‖₂"})


@dataclass(frozen=True)
class ObsOptions(CommonOptions):
    """``damp``: H = XᵀX + damp · mean(diag H) · I (> 0, keeps H⁻¹ finite); ``blocksize``:
    columns whose mask is chosen together (:func:`maskopt.solvers.posttrain.obs_mask`); ``refit``: also
    refit the kept weights by least squares and report that objective in
    ``stats["refit_objective"]`` (weights in ``stats["refit_weights"]``); ``res.objective``
    stays the mask's objective with the problem's fixed weights. ``device``: ``"cpu"`` (or
    ``"auto"``) only (the engine's float64 CPU tensors and numpy); ``seed``: unused
    (deterministic); ``verbose``: nothing to show."""

    damp: float = 0.01
    blocksize: int = 128
    refit: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.damp < float("inf"):
            raise ValueError(f"damp must be a finite number > 0; got {self.damp}.")
        if not (isinstance(self.blocksize, int) and self.blocksize >= 1):
            raise ValueError(f"blocksize must be a positive integer; got {self.blocksize!r}.")


@register("obs", options=ObsOptions, problems=(LayerwiseProblem,), family="one-shot",
          scopes=("row", "layer", "global", "nm"), uses_seed=False, device_reason=_CPU_ENGINE,
          summary="OBS saliency from the Gram matrix, column blocks with sequential updates (SparseGPT)")
def _obs(problem: LayerwiseProblem, opts: ObsOptions) -> MethodOutput:
    H = engine.gram(problem.inputs, opts.damp)
    mask = engine.obs_mask(H, problem.weight, problem.allocation.units(), opts.blocksize)
    stats: dict = {"damp": opts.damp, "saliency": "w_q² / [H⁻¹]_qq, squared loss"}
    if opts.refit:
        weights, value = refit_weights(problem, mask)
        stats.update(refit_objective=value, refit_weights=weights)
    return MethodOutput({"weight": mask}, stats=stats)


@dataclass(frozen=True)
class SwapOptions(CommonOptions):
    """``start``: the mask to improve, a method name (run with ``start_options``, which may
    give it its own ``device``/``seed``) or a mask; ``max_passes``: passes over the rows at
    most. ``device``: ``"cpu"`` (or ``"auto"``) only (the engine's float64 CPU tensors and
    numpy); ``seed``: unused (the search is deterministic; seed a random start through
    ``start_options``); ``verbose``: nothing to show."""

    start: str | Mapping = "magnitude"
    start_options: Mapping = field(default_factory=dict)
    max_passes: int = 100_000


@register("swap", options=SwapOptions, problems=(LayerwiseProblem,), family="one-shot",
          scopes=("row", "layer", "global", "nm"), uses_seed=False, device_reason=_CPU_ENGINE,
          summary="best-improvement remove/add/swap local search from any start mask (Gram updates for L2)")
def _swap(problem: LayerwiseProblem, opts: SwapOptions) -> MethodOutput:
    if isinstance(opts.start, str):
        if opts.start == "swap":
            raise ValueError("start='swap' would start the search from itself; name another method.")
        first = solve(problem, method=opts.start, **dict(opts.start_options))
        start, start_value = first.masks["weight"], first.objective
    else:
        given = opts.start if isinstance(opts.start, MaskSet) else MaskSet(opts.start)
        given.check_shapes(problem.mask_shapes())
        bad = problem.allocation.violations(given)
        if bad:
            raise ValueError(f"start is over the budget ({bad[0]}); give a mask within the budget.")
        start, start_value = given["weight"], problem.objective(given)
    units = problem.allocation.units()
    if problem.loss == "l2":
        H = engine.gram(problem.inputs)
        C = _offset(problem).T @ problem.inputs
        mask, moves = engine.swap_search(H, C, problem.weight, start, units, opts.max_passes)
        stats = {"search": "gram", "removals": moves.removals, "additions": moves.additions, "swaps": moves.swaps,
                 "passes": moves.passes}
    else:
        pairs = int(start.sum()) * int((~start).sum())
        if pairs > RESIDUAL_PAIRS:
            raise ValueError(f"swap on a {problem.loss!r} problem prices every kept x removed pair of residual "
                             f"vectors ({pairs:,} pairs, above {RESIDUAL_PAIRS:,}); use loss='l2' (Gram updates) or "
                             "a smaller layer.")
        X, W = problem.inputs.numpy(), problem.weight.numpy()
        found = local_search(X, W, _offset(problem).numpy(), active_weights(X, W), units, problem.loss,
                             start.numpy())
        mask, stats = torch.from_numpy(found), {"search": "residual"}
    stats.update(start=opts.start if isinstance(opts.start, str) else "given", start_objective=start_value)
    return MethodOutput({"weight": mask}, stats=stats)


# ---------------------------------------------------------------- whole networks


COLUMNS = ("layer", "shape", "method", "objective", "bound", "gap", "status", "density", "time", "refit_objective")


@dataclass
class PruneResult:
    """The outcome of :func:`prune_layerwise`.

    Attributes:
        model: a pruned copy of the model (pruned weights zero; refit weights in place with
            ``refit=True``), in the model's dtype; the model given is not modified.
        masks: parameter name (``state_dict`` name, e.g. ``"fc1.weight"``) -> bool mask.
        rows: one dict per layer, in forward order: ``layer``, ``shape`` (out×in),
            ``method``, ``objective`` (the layer's squared output error, or the chosen loss,
            on its calibration inputs), ``bound`` / ``gap`` (when the method proves a bound),
            ``status``, ``density``, ``time`` (s), ``refit_objective`` (with ``refit=True``).
    """

    model: nn.Module
    masks: MaskSet
    rows: list[dict] = field(default_factory=list)

    def table(self) -> str:
        return format_table(self.rows, self._columns())

    def _columns(self) -> list[str]:
        return [c for c in COLUMNS if any(r.get(c) is not None for r in self.rows)]

    def to_csv(self, path: str | os.PathLike) -> None:
        write_csv(path, self.rows, self._columns())

    def to_json(self, path: str | os.PathLike) -> None:
        write_json(path, {"rows": self.rows})


def linear_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the Linear modules of ``model`` in the order its forward pass on ``x`` calls
    them; a Linear called more than once, or two sharing a weight, is refused (its mask would
    have to serve several inputs)."""
    calls: list[str] = []
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=n: calls.append(name))
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    repeated = sorted({n for n in calls if calls.count(n) > 1})
    if repeated:
        raise ValueError(f"Linear module(s) {repeated} are called more than once per forward pass; "
                         "prune_layerwise prunes each Linear on the one input it sees. Untie them first.")
    owners: dict[int, str] = {}
    for name in calls:
        weight = model.get_submodule(name).weight
        if id(weight) in owners:
            raise ValueError(f"{name!r} and {owners[id(weight)]!r} share one weight tensor; untie them first.")
        owners[id(weight)] = name
    if not calls:
        raise ValueError(f"the model calls no nn.Linear on these inputs (its Linear modules: "
                         f"{sorted(names.values())}).")
    return calls


class _Stop(Exception):
    """Raised by a hook once it has the input it waits for (the rest of the forward is skipped)."""


def _layer_input(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """The input (N, in) of module ``name`` in ``model``'s forward pass on ``x``."""
    seen: list[torch.Tensor] = []
    module = model.get_submodule(name)

    def grab(mod, args):
        seen.append(args[0].detach())
        raise _Stop

    handle = module.register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0].reshape(-1, module.in_features)


def layer_problems(model: nn.Module, calibration_inputs: torch.Tensor, budget: Budget, loss: str = "l2"
                   ) -> dict[str, LayerwiseProblem]:
    """The layer-wise problem of every Linear layer of ``model`` (forward order) with inputs
    from the dense network: what ``prune_layerwise(..., inputs="dense")`` solves, for
    solving layers one by one (e.g. with per-layer warm starts)."""
    work, x, order = _prepared(model, calibration_inputs)
    return {name: _problem(work.get_submodule(name), _layer_input(work, name, x), budget, loss) for name in order}


def _prepared(model: nn.Module, calibration_inputs) -> tuple[nn.Module, torch.Tensor, list[str]]:
    """(a float64 eval-mode copy of ``model``, the inputs in float64, its Linear layers in forward order)."""
    work = copy.deepcopy(model).double().eval()
    x = torch.as_tensor(calibration_inputs).detach().to(torch.float64)
    return work, x, linear_layers(work, x)


def _problem(module: nn.Linear, X: torch.Tensor, budget: Budget, loss: str) -> LayerwiseProblem:
    """The layer-wise problem of ``module`` on inputs X: target X Wᵀ + b, bias b."""
    W = module.weight.detach().clone()
    b = None if module.bias is None else module.bias.detach().clone()
    with torch.no_grad():
        target = X @ W.T + (0.0 if b is None else b)
    return LayerwiseProblem(X, W, target, budget, loss=loss, bias=b)


def prune_layerwise(model: nn.Module, calibration_inputs: torch.Tensor, budget: Budget, method: str = "wanda",
                    options: Mapping | None = None, loss: str = "l2", inputs: str = "pruned", refit: bool = False,
                    verbose: bool = True) -> PruneResult:
    """Prune every Linear layer of ``model`` in forward order, one layer-wise problem each.

    Args:
        model: a trained ``nn.Module`` (any nesting); Conv layers and other modules stay dense.
        calibration_inputs: (N, ...) inputs of the model.
        budget: applied to each layer on its own (``scope="row"``: per output; ``"layer"`` or
            ``"global"``: one count over the layer).
        method: any method that takes a LayerwiseProblem (``mo.methods(problem=...)``), e.g.
            ``"wanda"``, ``"obs"``, ``"swap"``, ``"magnitude"``, ``"hierarchy"``, ``"exact"``.
        options: that method's options, the same for every layer (e.g. ``{"time_limit": 60}``).
        loss: the layer-wise loss, ``"l2"`` (default) or ``"l1"``.
        inputs: ``"pruned"`` (default): each layer's inputs come from the network with the
            layers before it already pruned (and refit); ``"dense"``: from the dense network,
            so every layer's problem is fixed whatever the other layers' masks.
        refit: replace each layer's kept weights by their least-squares fit to its target
            (:func:`refit_weights`) before moving on; ``rows[i]["refit_objective"]`` is then
            the layer's objective with them.
        verbose: a progress bar over the layers.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a maskopt.Budget; got {type(budget).__name__}.")
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}; got {inputs!r}.")
    work, x, order = _prepared(model, calibration_inputs)
    dense = {n: _layer_input(work, n, x) for n in order} if inputs == "dense" else {}
    masks, rows = {}, []
    for name in tqdm(order, desc="layers", disable=not verbose):
        module = work.get_submodule(name)
        problem = _problem(module, dense[name] if inputs == "dense" else _layer_input(work, name, x), budget, loss)
        W = problem.weight
        t0 = time.perf_counter()
        res = solve(problem, method=method, **dict(options or {}))
        mask = res.masks["weight"]
        row = {"layer": name, "shape": f"{W.shape[0]}x{W.shape[1]}", "method": method, "objective": res.objective,
               "bound": res.bound, "gap": res.gap, "status": res.status, "density": res.masks.density,
               "time": time.perf_counter() - t0}
        new = mask * W
        if refit:
            new, row["refit_objective"] = refit_weights(problem, mask)
        with torch.no_grad():
            module.weight.copy_(new)
        masks[f"{name}.weight"] = mask
        rows.append(row)
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for name in order:
            target_module = pruned.get_submodule(name)
            target_module.weight.copy_(work.get_submodule(name).weight.to(target_module.weight.dtype))
    return PruneResult(pruned, MaskSet(masks, method=method, budget=budget), rows)
