"""Sparse training: methods that produce a sparse network in one training run.

* **GMP** (gradual magnitude pruning, Zhu & Gupta 2017): at the steps t₀ + kΔt (k = 0..n)
  every scope unit is pruned by |w| to the sparsity s_k = s_f + (s_i − s_f)(1 − k/n)³ (the
  cubic schedule s_t = s_f + (s_i − s_f)(1 − (t − t₀)/(nΔt))³), pruned weights staying pruned.
* **AC/DC** (Peste et al. 2021): dense warm-up, then alternating sparse phases (magnitude
  top-k to the budget at the phase start, mask fixed) and dense phases, ending with a longer
  sparse phase (:func:`acdc_phases`); also yields the co-trained dense model.
* **CrAM** (Peste et al. 2023): every step θ ← θ − η·∇L(C_s(θ + ρ∇L(θ))), C_s the magnitude
  projection to sparsity s drawn from a set; CrAM⁺ adds the dense gradient ∇L(θ). The dense
  model is trained; the answer is its one-shot pruning (:func:`one_shot`, batch-norm
  statistics recalibrated), for any sparsity of the set without fine-tuning.
* **RigL** (Evci et al. 2020) / **SET** (Mocanu et al. 2018): a random mask within the budget
  (``Budget(scope="layer", allocation="erk")`` gives the ERK initialization); every ΔT steps
  each scope unit drops the fraction α_t = α/2·(1 + cos(πt/T_end)) of its active weights of
  smallest |w| and regrows as many by largest |∂L/∂w| (RigL) or at random (SET)
  (:func:`drop_and_grow`): the kept count of every unit stays exactly its cap. The update
  step also takes its optimizer step, with the new mask (the reference implementation skips
  the gradient step on update steps; with ΔT ≫ 1 the two differ in 1/ΔT of the steps).

Pruned weights stay exactly zero through optimizer momentum and weight decay (as in
:func:`maskopt.train.train`: gradients zeroed before each step, weights after it); a revived
weight (grown, or freed by a dense phase) starts from zero with its optimizer state zeroed.
Compute: ``gradient_samples`` = per-sample forward+backward passes (a CrAM step on B samples
costs 2B; forward-only passes for evaluation and recalibration are not counted).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import nn
from tqdm.auto import tqdm

from maskopt.api import MethodOutput, register
from maskopt.baselines import TrainOptions, problem_trainer
from maskopt.budget import Allocation, Budget, count_for_density
from maskopt.device import DEVICE_TYPES, resolve_device
from maskopt.distill import DistillProblem
from maskopt.masks import MaskSet
from maskopt.train import (
    TrainResult,
    _batches,
    _evaluate,
    _to,
    check_masks,
    make_optimizer,
    mask_gradients,
    zero_pruned,
)

# ---------------------------------------------------------------- schedules


def gmp_sparsity(k: int, n: int, initial: float, final: float) -> float:
    """The cubic schedule at pruning event k of n: s_f + (s_i − s_f)(1 − k/n)³."""
    return final + (initial - final) * (1.0 - min(max(k, 0), n) / n) ** 3


def gmp_steps(total: int, begin: float, end: float, updates: int) -> list[int]:
    """The steps t₀ + kΔt (k = 0..n) at which GMP prunes: t₀ = round(begin·T),
    t₀ + nΔt = round(end·T), each rounded to an integer step (before that step's update)."""
    t0, tn = round(begin * total), round(end * total)
    return [t0 + round(k * (tn - t0) / updates) for k in range(updates + 1)]


def cosine_fraction(step: int, alpha: float, stop: int) -> float:
    """RigL's drop fraction α_t = α/2·(1 + cos(π·t/T_end)) (0 from T_end on)."""
    return 0.0 if step >= stop else alpha / 2 * (1 + math.cos(math.pi * step / stop))


def acdc_phases(total: int, warmup: float, phase: float, final: float) -> list[tuple[int, int, bool]]:
    """AC/DC's phases as ``(start, stop, sparse)`` step ranges covering [0, total): dense
    warm-up to round(warmup·T), then sparse and dense phases of round(phase·T) steps in turn
    (the last one cut at the final phase), then the sparse final phase from T − round(final·T);
    adjacent phases of one kind are merged (one mask)."""
    w, f, p = round(warmup * total), total - round(final * total), max(1, round(phase * total))
    out = [(0, w, False)] if w > 0 else []
    t, sparse = w, True
    while t < f:
        out.append((t, min(t + p, f), sparse))
        t, sparse = min(t + p, f), not sparse
    out.append((f, total, True))
    merged: list[tuple[int, int, bool]] = []
    for start, stop, kind in out:
        if merged and merged[-1][2] == kind:
            merged[-1] = (merged[-1][0], stop, kind)
        elif stop > start:
            merged.append((start, stop, kind))
    return merged


# ---------------------------------------------------------------- masks


def magnitude_masks(alloc: Allocation, weights: Mapping[str, torch.Tensor],
                    caps: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Keep the largest |w| of every scope unit of ``alloc`` (its caps, or ``caps``)."""
    return alloc.project({n: weights[n].detach().abs().double() for n in alloc.shapes}, caps)


def drop_and_grow(alloc: Allocation, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                  grow_scores: Mapping[str, torch.Tensor], fraction: float) -> tuple[dict[str, torch.Tensor], int]:
    """One RigL/SET mask update: in each scope unit with a active weights, drop
    d = floor(fraction·a) active weights of smallest |w| and grow d of the others (the
    dropped ones included) with the largest ``grow_scores``; ties go to the lower flattened
    index. Returns (new masks, Σ d); each unit keeps exactly a weights."""
    flat = alloc.flatten(masks).to(torch.int64)
    csum = torch.cat([torch.zeros(1, dtype=torch.int64), flat.cumsum(0)])
    active = [int(csum[stop] - csum[start]) for start, stop, _ in alloc.units()]
    drop = [math.floor(fraction * a) for a in active]
    neg = -math.inf
    kept = alloc.project({n: weights[n].detach().abs().double().masked_fill(~masks[n], neg) for n in alloc.shapes},
                         [a - d for a, d in zip(active, drop)])
    grown = alloc.project({n: grow_scores[n].detach().double().masked_fill(kept[n].to(grow_scores[n].device), neg)
                           for n in alloc.shapes}, drop)
    return {n: kept[n] | grown[n].to(kept[n].device) for n in alloc.shapes}, sum(drop)


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> bool:
    """Reset every batch-norm layer's running statistics and re-estimate them (cumulative
    average) from forward passes of ``batches`` of inputs in train mode, without gradients;
    the model is left in eval mode. False (nothing done) when the model has no batch norm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    device = next(model.parameters()).device
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x.to(device))
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    model.eval()
    return True


def one_shot(model: nn.Module, budget: Budget | Allocation, names: Sequence[str] | None = None,
             calibration: Iterable[torch.Tensor] | None = None) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` pruned by magnitude to ``budget`` (over ``names``, default every
    Linear/Conv weight) in one shot, its batch-norm statistics recalibrated on
    ``calibration`` (batches of inputs; required when the model has batch norm), no
    fine-tuning: CrAM's "train once, prune to many sparsities". Returns (model, masks)."""
    pruned = copy.deepcopy(model)
    params = dict(pruned.named_parameters())
    alloc = _allocation(budget, params, names)
    masks = magnitude_masks(alloc, {n: params[n] for n in alloc.shapes})
    zero_pruned(params, masks)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in pruned.modules())
    if has_bn and calibration is None:
        raise ValueError("the model has batch norm: give calibration= (batches of inputs) to recalibrate its "
                         "statistics after pruning.")
    if has_bn:
        recalibrate_batchnorm(pruned, calibration)
    return pruned.eval(), masks


def _allocation(budget: Budget | Allocation, params: Mapping[str, torch.Tensor],
                names: Sequence[str] | None) -> Allocation:
    if isinstance(budget, Allocation):
        if names is not None and list(names) != list(budget.shapes):
            raise ValueError(f"names {list(names)} differ from the allocation's parameters {list(budget.shapes)}; "
                             "give one of them.")
        for n, shape in budget.shapes.items():
            if n not in params or tuple(params[n].shape) != shape:
                raise ValueError(f"the allocation's parameter {n!r} {shape} is not a parameter of the model of that "
                                 f"shape; its parameters: {list(params)}.")
        return budget
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a maskopt.Budget or Allocation; got {type(budget).__name__}.")
    if names is None:
        names = [n for n, p in params.items() if p.ndim >= 2]
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"names {unknown} are not parameters of the model; its parameters: {list(params)}.")
    return budget.allocate({n: tuple(params[n].shape) for n in names})


# ---------------------------------------------------------------- methods


class SparseMethod:
    """A sparse training method: the hooks of :func:`sparse_train`'s loop (defaults: plain
    training). ``start(run)`` before the first step (initial masks), ``before_step(run, t)``
    before step t (0-based; mask changes), ``backward(run, x, y)`` computes the step's
    gradients and returns the loss, ``after_backward(run, t)`` sees the dense gradients
    before the pruned ones are zeroed, ``evaluated(run)`` names what an evaluation measures,
    ``finish(run)`` makes the answer after the last step."""

    def start(self, run: _Run) -> None:
        pass

    def before_step(self, run: _Run, t: int) -> None:
        pass

    def backward(self, run: _Run, x: torch.Tensor, y) -> torch.Tensor:
        loss = run.loss_fn(run.model(x), y)
        loss.backward()
        return loss

    def after_backward(self, run: _Run, t: int) -> None:
        pass

    def evaluated(self, run: _Run) -> tuple[nn.Module, dict[str, torch.Tensor] | None, nn.Module | None]:
        """(the sparse model the run would return now, its masks (None: dense), a dense
        model to evaluate beside it or None)."""
        return run.model, run.masks, None

    def finish(self, run: _Run) -> None:
        """After the last step: ``run.masks`` (within the budget) and ``run.model`` (pruned
        weights zero) are the answer, ``run.dense`` the dense model returned beside it."""
        if run.masks is None:
            raise RuntimeError(f"{type(self).__name__} ended dense; this is a bug (every method ends sparse).")


@dataclass(frozen=True)
class GMP(SparseMethod):
    """Gradual magnitude pruning: ``updates`` = n pruning events from ``begin`` to ``end``
    (fractions of the training steps), sparsity from ``initial_sparsity`` to the budget on
    the cubic schedule (per scope unit: its own final sparsity), then training at the budget."""

    initial_sparsity: float = 0.0
    begin: float = 0.1
    end: float = 0.6
    updates: int = 20

    def __post_init__(self) -> None:
        if not 0.0 <= self.begin <= self.end <= 1.0 or self.updates < 1 or not 0.0 <= self.initial_sparsity <= 1.0:
            raise ValueError("GMP needs 0 ≤ begin ≤ end ≤ 1, updates ≥ 1 and initial_sparsity in [0, 1].")

    def start(self, run: _Run) -> None:
        run.state["events"] = {}
        for k, t in enumerate(gmp_steps(run.total, self.begin, self.end, self.updates)):
            run.state["events"][t] = k  # several events on one step: the last one

    def before_step(self, run: _Run, t: int) -> None:
        k = run.state["events"].get(t)
        if k is None:
            return
        caps = []
        for start, stop, cap in run.alloc.units():
            n = stop - start
            final = 1.0 - cap / n
            s = gmp_sparsity(k, self.updates, min(self.initial_sparsity, final), final)
            caps.append(max(cap, count_for_density(1.0 - s, n)))
        scores = {n: w.abs().double() for n, w in run.weights().items()}
        if run.masks is not None:  # pruned weights stay pruned
            scores = {n: s.masked_fill(~run.masks[n], -math.inf) for n, s in scores.items()}
        run.set_masks(run.alloc.project(scores, caps))


@dataclass(frozen=True)
class ACDC(SparseMethod):
    """AC/DC: dense warm-up (``warmup``), sparse/dense phases of ``phase``, a final sparse
    phase of ``final`` (fractions of the training steps, :func:`acdc_phases`); every sparse
    phase starts with magnitude top-k to the budget. The dense model at the end of the last
    dense phase is returned beside the sparse one."""

    warmup: float = 0.1
    phase: float = 0.05
    final: float = 0.15

    def __post_init__(self) -> None:
        if not (0.0 <= self.warmup and 0.0 < self.final and self.warmup + self.final <= 1.0 and 0.0 < self.phase):
            raise ValueError("AC/DC needs warmup ≥ 0, final > 0, warmup + final ≤ 1 and phase > 0.")

    def start(self, run: _Run) -> None:
        run.state["starts"] = {a: sparse for a, _, sparse in acdc_phases(run.total, self.warmup, self.phase,
                                                                          self.final)}

    def before_step(self, run: _Run, t: int) -> None:
        sparse = run.state["starts"].get(t)
        if sparse is None:
            return
        if sparse:
            if t > 0:
                run.dense = copy.deepcopy(run.model).eval()
            run.set_masks(magnitude_masks(run.alloc, run.weights()))
        else:
            run.set_masks(None)


@dataclass(frozen=True)
class CrAM(SparseMethod):
    """CrAM: each step's gradient taken at C_s(θ + ρ∇L(θ)), s drawn uniformly from
    ``sparsities`` (None: the budget only; a count budget takes only None);
    ``dense_gradient`` adds ∇L(θ) (CrAM⁺). The final mask is the one-shot magnitude pruning
    of the trained dense weights to the budget, batch norm recalibrated on the first
    ``calibration_samples`` training inputs."""

    sparsities: tuple[float, ...] | None = None
    rho: float = 0.05
    dense_gradient: bool = True
    calibration_samples: int = 1000

    def __post_init__(self) -> None:
        if self.sparsities is not None:
            object.__setattr__(self, "sparsities", tuple(float(s) for s in self.sparsities))
            if not self.sparsities or not all(0.0 <= s < 1.0 for s in self.sparsities):
                raise ValueError(f"sparsities must list values in [0, 1); got {self.sparsities}.")
        if not self.rho >= 0 or self.calibration_samples < 1:
            raise ValueError("CrAM needs rho ≥ 0 and calibration_samples ≥ 1.")

    def start(self, run: _Run) -> None:
        run.state["calibration"] = _calibration(run.train_split, self.calibration_samples, run.device)
        budget = run.alloc.budget
        if self.sparsities is None:
            run.state["allocs"] = [run.alloc]
        elif budget.target_density is None or budget.nm is not None:
            raise ValueError("sparsities= needs a density or sparsity budget (a count or N:M budget has no sparsity "
                             "to vary); drop sparsities or give Budget(sparsity=...).")
        else:
            run.state["allocs"] = [Budget(sparsity=s, scope=budget.scope, allocation=budget.allocation).allocate(
                run.alloc.shapes) for s in self.sparsities]

    def backward(self, run: _Run, x: torch.Tensor, y) -> torch.Tensor:
        model, params = run.model, [p for p in run.model.parameters() if p.requires_grad]
        loss = super().backward(run, x, y)
        allocs = run.state["allocs"]
        alloc = allocs[int(torch.randint(len(allocs), (1,), generator=run.gen))]
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            dense = [None if p.grad is None else p.grad.clone() for p in params]
            for p, g in zip(params, dense):
                if g is not None:
                    p.add_(g, alpha=self.rho)
            zero_pruned(run.params, magnitude_masks(alloc, {n: run.params[n] for n in alloc.shapes}))
        buffers = {k: v.clone() for k, v in model.named_buffers()}  # batch-norm statistics follow θ only
        model.zero_grad(set_to_none=True)
        run.loss_fn(model(x), y).backward()
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
            for p, s, g in zip(params, saved, dense):
                p.copy_(s)
                if self.dense_gradient and g is not None:
                    p.grad = g if p.grad is None else p.grad.add_(g)
        run.gradient_samples += x.shape[0]  # the second pass
        return loss

    def evaluated(self, run: _Run) -> tuple[nn.Module, dict[str, torch.Tensor] | None, nn.Module | None]:
        pruned, masks = one_shot(run.model, run.alloc, calibration=run.state["calibration"])
        return pruned, masks, run.model

    def finish(self, run: _Run) -> None:
        run.dense = copy.deepcopy(run.model).eval()
        pruned, masks = one_shot(run.model, run.alloc, calibration=run.state["calibration"])
        run.model.load_state_dict(pruned.state_dict())
        run.masks = check_masks(run.model, masks)


@dataclass(frozen=True)
class RigL(SparseMethod):
    """RigL: a random mask within the budget, updated every ``every`` steps until the
    fraction ``end`` of training: drop α_t of each unit's active weights by |w|, regrow as
    many by |∂L/∂w| of the step's batch (:func:`drop_and_grow`, :func:`cosine_fraction`)."""

    alpha: float = 0.3
    every: int = 100
    end: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.every < 1 or not 0.0 <= self.end <= 1.0:
            raise ValueError("RigL/SET need alpha in [0, 1], every ≥ 1 and end in [0, 1].")

    def start(self, run: _Run) -> None:
        scores = {n: torch.rand(s, generator=run.gen) for n, s in run.alloc.shapes.items()}
        run.set_masks(run.alloc.project(scores))

    def grow_scores(self, run: _Run) -> dict[str, torch.Tensor]:
        return {n: run.params[n].grad.abs() for n in run.alloc.shapes}

    def after_backward(self, run: _Run, t: int) -> None:
        stop = round(self.end * run.total)
        if t == 0 or t % self.every or t >= stop:
            return
        fraction = cosine_fraction(t, self.alpha, stop)
        masks, moved = drop_and_grow(run.alloc, run.masks, run.weights(), self.grow_scores(run), fraction)
        run.set_masks(masks)
        run.state.setdefault("updates", []).append({"step": t, "fraction": fraction, "regrown": moved})


@dataclass(frozen=True)
class SET(RigL):
    """SET: RigL's schedule with regrowth at random (uniform scores from the run's seed)."""

    def grow_scores(self, run: _Run) -> dict[str, torch.Tensor]:
        return {n: torch.rand(s, generator=run.gen) for n, s in run.alloc.shapes.items()}


# ---------------------------------------------------------------- the training loop


@dataclass
class SparseTrainResult(TrainResult):
    """:class:`~maskopt.train.TrainResult` of a sparse training run plus ``masks`` (the final
    masks, within the budget; ``model``'s pruned weights are exactly zero), ``dense`` (AC/DC:
    the co-trained dense model; CrAM: the trained dense model; else None) and
    ``gradient_samples``. Every history record also has ``density`` (kept fraction of the
    maskable weights of the evaluated model) and ``within_budget``; CrAM's records evaluate
    the one-shot pruned model and add ``dense_*`` entries for the dense one."""

    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    dense: nn.Module | None = None
    gradient_samples: int = 0

    def chosen(self, by: str = "val_acc") -> dict:
        """The first record with the largest ``by`` among those within the budget."""
        records = [h for h in self.history if h.get(by) is not None and h["within_budget"]]
        if not records:
            raise ValueError(f"no {by!r} in a record within the budget (train with validation=(x, y)).")
        return max(records, key=lambda h: h[by])


class _Run:
    """The state of one sparse training run that the methods' hooks read and change."""

    def __init__(self, model: nn.Module, alloc: Allocation, opt: torch.optim.Optimizer, loss_fn: Callable,
                 total: int, seed: int, train_split, device: torch.device) -> None:
        self.model, self.alloc, self.opt, self.loss_fn, self.total = model, alloc, opt, loss_fn, total
        self.train_split, self.device = train_split, device  # the training split in order: (x, y) or a loader
        self.params = dict(model.named_parameters())
        self.gen = torch.Generator().manual_seed(seed)
        self.masks: dict[str, torch.Tensor] | None = None
        self.dense: nn.Module | None = None
        self.state: dict = {}
        self.gradient_samples = 0

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: self.params[n].detach() for n in self.alloc.shapes}

    def set_masks(self, masks: Mapping[str, torch.Tensor] | None) -> None:
        """Switch to ``masks`` (None: dense): newly pruned weights are zeroed, revived ones get
        their optimizer state zeroed (their weights are zero already)."""
        new = None if masks is None else check_masks(self.model, masks)
        with torch.no_grad():
            for n in self.alloc.shapes:
                p = self.params[n]
                old = self.masks[n] if self.masks is not None else torch.ones_like(p, dtype=torch.bool)
                keep = new[n] if new is not None else torch.ones_like(p, dtype=torch.bool)
                p.mul_(keep)
                revived = keep & ~old
                for v in self.opt.state.get(p, {}).values():
                    if torch.is_tensor(v) and v.shape == p.shape:
                        v.masked_fill_(revived, 0)
        self.masks = new

    def mask_gradients(self) -> None:
        mask_gradients(self.params, self.masks or {})

    def zero_pruned(self) -> None:
        zero_pruned(self.params, self.masks or {})


def sparse_train(model: nn.Module, data, budget: Budget | Allocation, method: SparseMethod, *,
                 names: Sequence[str] | None = None, steps: int | None = None, epochs: float | None = None,
                 batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam", momentum: float | None = None,
                 weight_decay: float = 0.0, shuffle: bool = True, eval_every: int | None = None,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 on_step: Callable[[int, dict[str, torch.Tensor] | None], None] | None = None,
                 validation=None, device: str = "cpu", seed: int = 0, verbose: bool = True) -> SparseTrainResult:
    """Train ``model`` in place with ``method`` (:class:`GMP`, :class:`ACDC`, :class:`CrAM`,
    :class:`RigL`, :class:`SET`) to a sparse network within ``budget`` over ``names``
    (default: every parameter of two or more dimensions, i.e. Linear/Conv weights).

    ``data`` and the training options are :func:`maskopt.train.train`'s (a Dataset or
    ``(train_loader, test_loader)``; ``steps`` or ``epochs``; ``validation`` evaluated beside
    the test split). ``on_step(step, masks)`` is called after every optimizer step with the
    current masks (None while dense). ``seed`` orders the batches and draws the random masks,
    SET's regrowth and CrAM's sparsities."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=.")
    if not isinstance(method, SparseMethod):
        raise TypeError(f"method must be GMP, ACDC, CrAM, RigL or SET (a SparseMethod); got {type(method).__name__}.")
    if batch_size < 1 or not lr > 0 or (epochs is not None and not epochs > 0):
        raise ValueError("need batch_size ≥ 1, lr > 0 and epochs > 0.")
    dev = resolve_device(device)
    model.to(dev)
    alloc = _allocation(budget, dict(model.named_parameters()), names)
    batches, per_epoch, (train_split, test_split) = _batches(data, batch_size, shuffle, seed)
    total = int(steps) if steps is not None else max(1, round(float(epochs) * per_epoch))
    every = per_epoch if eval_every is None else eval_every
    if total < 1 or every < 1:
        raise ValueError(f"need at least one step and eval_every ≥ 1; got {total} steps, eval_every={every}.")
    labels = loss_fn is None
    run = _Run(model, alloc, make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay),
               loss_fn or nn.functional.cross_entropy, total, seed, train_split, dev)
    method.start(run)
    history, running, since, samples, t0 = [], 0.0, 0, 0, time.perf_counter()
    bar = tqdm(range(total), desc=type(method).__name__, disable=not verbose, leave=False)
    for t in bar:
        method.before_step(run, t)
        model.train()
        x, y = next(batches)
        x, y = x.to(dev), _to(y, dev)
        run.opt.zero_grad(set_to_none=True)
        loss = method.backward(run, x, y)
        run.gradient_samples += x.shape[0]
        method.after_backward(run, t)
        run.mask_gradients()
        run.opt.step()
        run.zero_pruned()
        if on_step is not None:
            on_step(t + 1, run.masks)
        running, since, samples = running + float(loss.detach()), since + 1, samples + x.shape[0]
        if (t + 1) % every == 0 or t == total - 1:
            record = {"step": t + 1, "epoch": (t + 1) / per_epoch, "train_loss": running / since}
            splits = {"train": train_split if labels else None, "test": test_split, "val": validation}
            sparse, masks, dense = method.evaluated(run)
            record.update(_metrics(sparse, splits, run.loss_fn, labels, dev))
            if dense is not None:
                record.update({f"dense_{k}": v for k, v in _metrics(dense, splits, run.loss_fn, labels, dev).items()})
            record["density"] = 1.0 if masks is None else \
                sum(int(m.sum()) for m in masks.values()) / alloc.size
            record["within_budget"] = masks is not None and not alloc.violations(masks)
            history.append(record)
            running, since = 0.0, 0
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in ("train_loss", "test_acc")})
    bar.close()
    method.finish(run)
    bad = alloc.violations(run.masks)
    if bad:
        raise RuntimeError(f"the final mask is over budget ({bad[0]}); this is a bug.")
    model.eval()
    return SparseTrainResult(model, history, total, samples, time.perf_counter() - t0,
                             masks={n: m.cpu() for n, m in run.masks.items()}, dense=run.dense,
                             gradient_samples=run.gradient_samples)


def _calibration(split, samples: int, device: torch.device) -> list[torch.Tensor] | None:
    """The first ``samples`` training inputs in batches (for batch-norm recalibration)."""
    if not samples or split is None:
        return None
    chunks = [split[0][i : i + 256] for i in range(0, split[0].shape[0], 256)] if isinstance(split, tuple) \
        else (b[0] if isinstance(b, (tuple, list)) else b for b in split)
    out, n = [], 0
    for x in chunks:
        out.append(x[: samples - n].to(device))
        n += out[-1].shape[0]
        if n >= samples:
            break
    return out


def _metrics(model: nn.Module, splits: dict, loss_fn: Callable, labels: bool, device: torch.device) -> dict:
    """Loss and accuracy (class labels only) of ``model`` on each given split, as train()'s records name them."""
    model.eval()
    out = {}
    for name, split in splits.items():
        if split is None:
            continue
        with torch.random.fork_rng(devices=[]):
            loss, acc = _evaluate(model, split, loss_fn, labels, device)
        if name != "train":
            out[f"{name}_loss"] = loss
        if acc is not None:
            out[f"{name}_acc"] = acc
    return out


# ---------------------------------------------------------------- registered methods


@dataclass(frozen=True)
class GmpOptions(TrainOptions, GMP):
    """``method="gmp"``: the training options of ``imp`` and :class:`GMP`'s."""

    def __post_init__(self) -> None:
        TrainOptions.__post_init__(self)
        GMP.__post_init__(self)


@dataclass(frozen=True)
class AcdcOptions(TrainOptions, ACDC):
    """``method="acdc"``: the training options of ``imp`` and :class:`ACDC`'s."""

    def __post_init__(self) -> None:
        TrainOptions.__post_init__(self)
        ACDC.__post_init__(self)


@dataclass(frozen=True)
class CramOptions(TrainOptions, CrAM):
    """``method="cram"``: the training options of ``imp`` and :class:`CrAM`'s."""

    def __post_init__(self) -> None:
        TrainOptions.__post_init__(self)
        CrAM.__post_init__(self)


@dataclass(frozen=True)
class RiglOptions(TrainOptions, RigL):
    """``method="rigl"`` / ``"set"``: the training options of ``imp`` and :class:`RigL`'s."""

    def __post_init__(self) -> None:
        TrainOptions.__post_init__(self)
        RigL.__post_init__(self)


def _solve(problem: DistillProblem, opts: TrainOptions, method: SparseMethod) -> MethodOutput:
    """Train a float32 copy of the problem's student with ``method`` on the problem's data
    (``train_on``/``loader`` as for ``imp``). ``stats``: ``model`` (the trained sparse
    network), ``dense_model`` (AC/DC, CrAM), ``gradient_samples``, ``steps``; CrAM also
    ``one_shot``: sparsity → the mask of the dense model pruned to it (its set)."""
    trainer = problem_trainer(problem, opts)
    result = sparse_train(trainer.model, trainer.data, problem.allocation, method, names=problem.params,
                          epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, optimizer=opts.optimizer,
                          weight_decay=opts.weight_decay, loss_fn=trainer.loss_fn, device=opts.device,
                          seed=opts.seed, verbose=opts.verbose)
    stats = {"gradient_samples": result.gradient_samples, "steps": result.steps, "model": result.model}
    if result.dense is not None:
        stats["dense_model"] = result.dense
    if isinstance(method, CrAM) and method.sparsities is not None:
        b = problem.budget
        stats["one_shot"] = {s: MaskSet(magnitude_masks(Budget(sparsity=s, scope=b.scope, allocation=b.allocation)
                                                        .allocate(problem.mask_shapes()),
                                                        {n: w.cpu() for n, w in _named(result.dense, problem).items()}))
                             for s in method.sparsities}
    return MethodOutput(result.masks, history=result.history, stats=stats)


def _named(model: nn.Module, problem: DistillProblem) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in problem.params}


def _part(opts: TrainOptions, cls: type) -> SparseMethod:
    """The method settings of registered options (the fields of ``cls``)."""
    return cls(**{f.name: getattr(opts, f.name) for f in fields(cls)})


@register("gmp", options=GmpOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="gradual magnitude pruning on the cubic schedule while training (Zhu & Gupta 2017)")
def _gmp(problem: DistillProblem, opts: GmpOptions) -> MethodOutput:
    return _solve(problem, opts, _part(opts, GMP))


@register("acdc", options=AcdcOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="alternating compressed/decompressed training; also a co-trained dense model (Peste et al. 2021)")
def _acdc(problem: DistillProblem, opts: AcdcOptions) -> MethodOutput:
    return _solve(problem, opts, _part(opts, ACDC))


@register("cram", options=CramOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="compression-aware minimization, one-shot pruned to the budget (Peste et al. 2023)")
def _cram(problem: DistillProblem, opts: CramOptions) -> MethodOutput:
    return _solve(problem, opts, _part(opts, CrAM))


@register("rigl", options=RiglOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="dynamic sparse training, regrowth by gradient magnitude (Evci et al. 2020)")
def _rigl(problem: DistillProblem, opts: RiglOptions) -> MethodOutput:
    return _solve(problem, opts, _part(opts, RigL))


@register("set", options=RiglOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="dynamic sparse training, random regrowth (Mocanu et al. 2018)")
def _set(problem: DistillProblem, opts: RiglOptions) -> MethodOutput:
    return _solve(problem, opts, _part(opts, SET))
