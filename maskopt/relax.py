"""The relaxation methods ``"sigmoid"``, ``"anneal"``, ``"ste"`` and ``"hierarchy"``.

Each turns a problem into a loss closure over a flat soft mask and trains mask scores with
:mod:`maskopt.solvers.relax` (see its docstring for the relaxations and the exact
expected-budget multiplier). Training runs in ``dtype`` on ``device`` on a copy of the
weights (the problem's student is never modified); the masked forward pass is
``torch.func.functional_call`` with the masked weights, so no module is copied per step.
Teacher outputs of a fixed input tensor are the problem's cached targets.

The training loss is the problem's objective on a mini-batch divided by the batch size
(the maximum for ``"linf"``): the same definition as :func:`maskopt.evaluate`, rescaled.
The answer is the exact-budget projection (top scores of each scope unit) of the scores
at the checkpoint whose hard mask had the lowest objective on the problem's inputs, by this
rule: every ``eval_every`` steps and at the end of each stage the hard mask is scored on a
fixed seeded screening subset of ``eval_samples`` inputs (all of them when there are no
more; a mask equal to the previous check's is not scored again); at the end of each stage
the ``finalists`` distinct masks with the lowest screening values are scored on all inputs,
and the lowest of those values wins (see :func:`maskopt.solvers.relax.run_stage`). With
``eval_samples=None`` every check scores on all inputs.

``compile`` runs the training loss (the masked forward pass and the loss) under
``torch.compile``; ``distributed`` splits every batch over ``torch.distributed`` ranks
(:mod:`maskopt.parallel`).

Lookahead (``lookahead=k > 0``, DistillProblem only): the scores are trained on the loss
the masked student reaches after k gradient steps of its own weights from the
initialization, differentiated through those steps (a trainability surrogate in the spirit
of ProsPr, Alizadeh et al. 2022). With masked weights v = m ⊙ w of a mini-batch B,

    v₀ = m ⊙ w,   v_{j+1} = v_j − η · m² ⊙ ∇_v L_B(v_j)   (j < k),   loss = L_B(v_k),

which is plain gradient descent on the kept weights w (v = m ⊙ w, ∇_w = m ⊙ ∇_v); m = v / w
is read off the masked weights (an entry whose initial weight is exactly 0 counts as pruned),
η = ``lookahead_lr`` and L_B the per-sample training loss above; parameters outside the
mask stay at their initial values. Checkpoints are then compared by the same surrogate on
the problem's inputs, split into fixed chunks of ``batch_size`` (each chunk its own k
steps; the sum over chunks, the maximum for ``"linf"``). ``res.objective`` stays the
problem's objective of the returned mask.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch.func import functional_call

from maskopt.api import CommonOptions, MethodOutput, register
from maskopt.device import DEVICE_TYPES, resolve_device
from maskopt.distill import DistillProblem
from maskopt.masks import MaskSet
from maskopt.parallel import Ranks
from maskopt.problems import LayerwiseProblem, Problem
from maskopt.solvers.losses import Loss
from maskopt.solvers.relax import Anneal, Checks, Segments, Sigmoid, Stage, Ste, run_stage
from maskopt.solvers.relax.polish import polish
from maskopt.train import OPTIMIZERS, make_optimizer

INITS = ("magnitude", "constant")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class RelaxOptions(CommonOptions):
    """Options shared by the relaxation methods.

    Attributes:
        steps: optimizer steps per stage (default 300; 1000 for ``"hierarchy"``, which runs
            three stages).
        epochs: if set, steps per stage = epochs × batches per pass over the data
            (overrides ``steps``).
        lr: learning rate of the scores (default 0.1; 0.5 for ``"ste"``).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9), built by
            :func:`maskopt.train.make_optimizer`; default Adam (SGD for ``"ste"``).
        batch_size: samples per step (None = all); mini-batches are drawn by a seeded
            permutation per pass.
        loader: an iterable of input batches (tensors, or tuples whose first item is the
            input and second the labels) to train on instead of the problem's inputs
            (DistillProblem only; targets come from the problem's teachers per batch).
        init: initial scores, ``"magnitude"`` (|w| / mean |w|) or ``"constant"`` (zeros).
        scores: given initial scores {name: tensor of the parameter's shape} (overrides init).
        warm_start: a mask within the budget; scores start at +1 (kept) / −1 (pruned).
        device: ``"cpu"`` (default, as for every method), ``"cuda"``, ``"cuda:N"`` or
            ``"auto"`` (CUDA when available).
        dtype: ``"float32"`` or ``"float64"`` training precision.
        autocast: run the forward pass under ``torch.autocast`` (bfloat16 on CPU, float16
            on CUDA); needs dtype float32.
        seed: seeds the mini-batch order and the screening subset (results are deterministic
            given the seed on CPU).
        verbose: tqdm progress bars (on by default). eval_every: steps between checks of the hard mask
            (None = steps // 20, at least 10).
        eval_samples: inputs in the screening subset the checks score hard masks on (seeded
            by ``seed``; None or ≥ N: all inputs, no re-scoring); see the module docstring.
        finalists: screened masks re-scored on all inputs at the end of each stage (≥ 1).
        eval_batch_size: inputs per forward pass of the checks (None: ``batch_size``; the
            lookahead surrogate's chunks). The checks run without gradients, so on
            launch-bound models a larger value makes them cheaper at little memory.
        compile: run the training loss under ``torch.compile``: True (its default mode) or a
            mode name such as ``"reduce-overhead"`` (CUDA graphs on GPUs); the first steps
            pay the compilation (seconds to minutes), so it pays off on long runs of
            launch-bound models.
        distributed: data-parallel over an initialised ``torch.distributed`` group (every
            rank calls ``solve`` alike; see :mod:`maskopt.parallel` and
            ``examples/distributed_relax.py``); sum losses only, no lookahead or polish.
        polish: after the relaxation, run the swap local search of
            :mod:`maskopt.solvers.relax.polish` with the problem's objective (a heuristic
            on top of the relaxation, off by default; its effect is in ``stats``).
        polish_candidates: masks evaluated per local-search pass (at most).
        lookahead: inner gradient steps k of the lookahead surrogate (0 = off; see the
            module docstring). DistillProblem on its own inputs only (not with ``loader``).
        lookahead_lr: step size η of those inner steps (> 0).
    """

    steps: int = 300
    epochs: int | None = None
    lr: float = 0.1
    optimizer: str = "adam"
    batch_size: int | None = None
    loader: Iterable | None = None
    init: str = "magnitude"
    scores: Mapping[str, torch.Tensor] | None = None
    warm_start: Mapping[str, torch.Tensor] | None = None
    dtype: str = "float32"
    autocast: bool = False
    verbose: bool = field(default=True, kw_only=True)
    eval_every: int | None = None
    polish: bool = False
    polish_candidates: int = 2048
    lookahead: int = 0
    lookahead_lr: float = 1.0
    eval_samples: int | None = 1024
    finalists: int = 3
    eval_batch_size: int | None = None
    compile: bool | str = False
    distributed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        may_be_zero = ("steps", "lookahead")  # the others are ≥ 1 or None
        for name in ("steps", "epochs", "batch_size", "eval_every", "polish_candidates", "lookahead",
                     "eval_samples", "finalists", "eval_batch_size"):
            v = getattr(self, name)
            low = 0 if name in may_be_zero else 1
            if v is None and name not in may_be_zero:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer ≥ {low}; got {v!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}.")
        if not self.lookahead_lr > 0:
            raise ValueError(f"lookahead_lr must be > 0; got {self.lookahead_lr}.")
        if self.lookahead and self.loader is not None:
            raise ValueError("lookahead steps train on the problem's own inputs; drop loader= or set lookahead=0.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}.")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}.")
        if self.scores is not None and self.warm_start is not None:
            raise ValueError("Give either scores= or warm_start=, not both.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}; got {self.dtype!r}.")
        if self.autocast and self.dtype != "float32":
            raise ValueError("autocast needs dtype='float32' (it lowers float32 operations).")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}; got {self.compile!r}.")

    def stages(self) -> list[Stage]:
        """The relaxation stages this method runs (defined by each method's options)."""
        raise NotImplementedError(f"{type(self).__name__} is the shared base; use a method's options class.")


@dataclass(frozen=True)
class SigmoidOptions(RelaxOptions):
    """``"sigmoid"``: m = σ((s − θ)/τ) at the fixed ``temperature`` τ (see :class:`RelaxOptions`)."""

    temperature: float = 1.0

    def stages(self) -> list[Stage]:
        return [Sigmoid(self.temperature)]


@dataclass(frozen=True)
class AnnealOptions(RelaxOptions):
    """``"anneal"``: m = σ(β(s − θ)) with β from ``beta0`` to ``beta1`` on ``schedule``
    (``"geometric"`` or ``"linear"``)."""

    beta0: float = 1.0
    beta1: float = 200.0
    schedule: str = "geometric"

    def stages(self) -> list[Stage]:
        return [Anneal(self.beta0, self.beta1, self.schedule)]


@dataclass(frozen=True)
class SteOptions(RelaxOptions):
    """``"ste"``: hard top-k forward, straight-through backward; SGD with momentum by
    default, as in edge-popup (Adam's per-score steps tend to cycle the hard mask)."""

    lr: float = 0.5
    optimizer: str = "sgd"

    def stages(self) -> list[Stage]:
        return [Ste()]


@dataclass(frozen=True)
class HierarchyOptions(RelaxOptions):
    """``"hierarchy"``: sigmoid at ``temperature`` → anneal from β = 1/temperature to
    ``beta1`` → ste, each stage ``steps`` steps (default 1000), warm-started from the
    previous scores. The ste stage scores every hard mask it visits (free with full-batch
    training), which is where most of the hierarchy's gain over a single relaxation comes from."""

    steps: int = 1000
    temperature: float = 1.0
    beta1: float = 200.0
    schedule: str = "geometric"

    def stages(self) -> list[Stage]:
        return [Sigmoid(self.temperature), Anneal(1.0 / self.temperature, self.beta1, self.schedule), Ste()]


@dataclass
class _Closure:
    """The training loss and the hard-mask evaluation of a problem on a device: ``loss``
    takes the masked weights as pieces of the flat ``weight`` ⊙ mask split by ``sizes``
    (see :func:`maskopt.solvers.relax.run_stage`) and a batch (this rank's share of it);
    ``evaluate(hard, chunks)`` is the objective of a hard mask over the samples of
    ``chunks`` (index tensors, or ``[None]`` for all), combined over the ranks; ``free`` is
    :class:`~maskopt.solvers.relax.Checks`' ``free``."""

    loss: Callable[[tuple[torch.Tensor, ...], object], torch.Tensor]
    evaluate: Callable[[torch.Tensor, list], float]
    batches: Iterator
    steps_per_pass: int
    free: Callable[[torch.Tensor, object], float | None]
    weight: torch.Tensor
    sizes: list[int]


def _index_batches(n: int, batch_size: int | None, seed: int, device: torch.device) -> tuple[Iterator, int]:
    if batch_size is None or batch_size >= n:
        return itertools.repeat(None), 1
    gen = torch.Generator().manual_seed(seed)

    def gen_batches():
        while True:
            perm = torch.randperm(n, generator=gen).to(device)
            yield from perm.split(batch_size)

    return gen_batches(), math.ceil(n / batch_size)


def _samples_drawn(steps: int, n: int, batch_size: int | None) -> int:
    """Samples in the first ``steps`` batches of :func:`_index_batches` (each pass over the
    ``n`` samples ends with a smaller batch when ``batch_size`` does not divide n)."""
    if batch_size is None or batch_size >= n:
        return steps * n
    passes, rest = divmod(steps, math.ceil(n / batch_size))
    return passes * n + rest * batch_size


def _chunks(idx: torch.Tensor | None, n: int, size: int | None, device) -> list[torch.Tensor | None]:
    """The samples ``idx`` (None = all ``n``) in chunks of at most ``size`` (None = one
    chunk), as index tensors on ``device``."""
    idx = None if idx is None else idx.to(device)
    if size is None or size >= (n if idx is None else idx.numel()):
        return [idx]
    return list((torch.arange(n, device=device) if idx is None else idx).split(size))


def _sharded_loss(obj, outputs, par: Ranks, n: int, device):
    """The training loss of a batch of sample indices (None = all) on this rank's share."""
    def loss(pieces, idx):
        mine = par.shard(idx, n, device)
        x, targets = obj.at(mine)
        value = obj.batch_value(outputs(pieces, x), targets)
        return par.scaled(value, x.shape[0], n if idx is None else idx.numel())

    return loss


def _layerwise_closure(problem: LayerwiseProblem, opts: RelaxOptions, device, dtype, par: Ranks) -> _Closure:
    if opts.loader is not None:
        raise ValueError("loader= applies to a DistillProblem; a LayerwiseProblem trains on its inputs.")
    if opts.autocast:
        raise ValueError("autocast applies to a DistillProblem's student; a LayerwiseProblem's product "
                         "inputs @ (mask * weight).T runs in dtype (use dtype='float32').")
    obj = problem.batch_objective(device, dtype)
    W = problem.weight.to(device=device, dtype=dtype)
    b = None if problem.bias is None else problem.bias.to(device=device, dtype=dtype)
    n = obj.n

    def outputs(pieces, x: torch.Tensor) -> torch.Tensor:
        pred = x @ pieces[0].view_as(W).T
        return pred if b is None else pred + b

    flat = W.reshape(-1)

    def evaluate(hard: torch.Tensor, chunks: list) -> float:
        with torch.no_grad():
            masked = (torch.where(hard, flat, 0.0),)
            local = float(sum(obj.value(outputs(masked, x), t) for x, t in map(obj.at, par.mine(chunks))))
        return par.combine(local, "sum", device)

    def free(value: torch.Tensor, idx) -> float | None:
        return None if idx is not None else float(par.sum_(value.clone())) * n

    return _Closure(_sharded_loss(obj, outputs, par, n, device), evaluate,
                    *_index_batches(n, opts.batch_size, opts.seed, device), free, flat, [flat.numel()])


def _distill_closure(problem: DistillProblem, opts: RelaxOptions, device, dtype, offsets, par: Ranks) -> _Closure:
    student = problem.student_on(device, dtype)  # frozen weights: the gradients go to the scores only
    shapes = problem.mask_shapes()
    names = list(offsets)  # the flat mask's order
    weights = problem.weights()
    flat_weight = torch.cat([weights[p].reshape(-1) for p in names]).to(device=device, dtype=dtype)
    sizes = [math.prod(shapes[p]) for p in names]
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16)
                if opts.autocast else contextlib.nullcontext())
    obj = problem.batch_objective(device, dtype)
    crit = problem.criterion

    def logits(pieces: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        masked = {p: w.view(shapes[p]) for p, w in zip(names, pieces)}
        with autocast:
            out = functional_call(student, masked, (x,))
        return out.to(dtype)

    n = obj.n
    if opts.loader is None:
        loss = _sharded_loss(obj, logits, par, n, device)
        batches, per_pass = _index_batches(n, opts.batch_size, opts.seed, device)
    else:
        try:
            per_pass = len(opts.loader)
        except TypeError:
            raise ValueError("loader must have a length (e.g. a torch DataLoader) so epochs can be counted.") from None

        def loader_batches():
            while True:
                yield from opts.loader

        def loss(pieces, batch):  # with distributed=True each rank's loader yields its own share
            x, targets = obj.of_loader(batch)
            value = obj.batch_value(logits(pieces, x), targets)
            return par.scaled(value, x.shape[0], par.total(x.shape[0], device))

        batches = loader_batches()

    def evaluate(hard: torch.Tensor, chunks: list) -> float:
        with torch.no_grad():
            pieces = torch.where(hard, flat_weight, 0.0).split(sizes)
            if not crit.combines_by_batch:  # a maximum plus alpha · a sum: the logits of every chunk at once
                idx = None if chunks[0] is None else torch.cat(chunks)
                return float(obj.value(torch.cat([logits(pieces, obj.at(c)[0]) for c in chunks]), obj.at(idx)[1]))
            values = [obj.value(logits(pieces, x), t) for x, t in map(obj.at, par.mine(chunks))]
            local = float(crit.full_value(values)) if values else (0.0 if crit.reduce == "sum" else -math.inf)
        return par.combine(local, crit.reduce, device)

    def free(value: torch.Tensor, idx) -> float | None:
        if opts.loader is not None or opts.autocast or idx is not None:
            return None
        total = float(par.sum_(value.clone()))
        return total * n if crit.reduce == "sum" else total

    closure = _Closure(loss, evaluate, batches, per_pass, free, flat_weight, sizes)
    return _lookahead_closure(closure, opts, n, crit) if opts.lookahead else closure


def _lookahead_closure(c: _Closure, opts: RelaxOptions, n: int, crit: Loss) -> _Closure:
    """``c`` with its loss and hard-mask evaluation replaced by the lookahead surrogate of
    ``opts.lookahead`` inner steps (module docstring); checkpoints are scored over chunks of
    the samples, combined as the loss ``crit`` combines batches (sum or maximum)."""
    k, eta = opts.lookahead, opts.lookahead_lr
    base, initial = c.loss, c.weight.split(c.sizes)

    def unroll(pieces, m2, idx, create_graph: bool) -> tuple[torch.Tensor, ...]:
        v = list(pieces)
        for _ in range(k):
            if not create_graph:
                v = [t.detach().requires_grad_(True) for t in v]
            grads = torch.autograd.grad(base(tuple(v), idx), v, create_graph=create_graph)
            v = [t - eta * mm * g for t, mm, g in zip(v, m2, grads)]
        return tuple(v)

    def loss(pieces, idx):
        # m = v / w; dividing by 1 where w = 0 keeps NaN (0/0) out of the backward pass
        m2 = [torch.where(w != 0, p / torch.where(w != 0, w, 1.0), 0.0).square() for p, w in zip(pieces, initial)]
        return base(unroll(pieces, m2, idx, create_graph=True), idx)

    def evaluate(hard: torch.Tensor, chunks: list) -> float:
        if not crit.combines_by_batch and len(chunks) > 1:
            raise ValueError("the lookahead surrogate scores checkpoints chunk by chunk, and with loss='linf' and "
                             "alpha > 0 a maximum and a sum do not combine over chunks; use batch_size=None (or ≥ "
                             "the number of samples) with eval_samples=None, alpha=0, or another loss.")
        pieces = torch.where(hard, c.weight, 0.0).split(c.sizes)
        m2 = (hard & (c.weight != 0)).to(c.weight.dtype).split(c.sizes)
        values = []
        for idx in chunks:
            with torch.enable_grad():
                v = tuple(t.detach() for t in unroll(pieces, m2, idx, create_graph=False))
            with torch.no_grad():
                value = float(base(v, idx))
            values.append(value * (n if idx is None else idx.numel()) if crit.reduce == "sum" else value)
        return crit.full_value(values)

    return _Closure(loss, evaluate, c.batches, c.steps_per_pass, c.free, c.weight, c.sizes)


def _initial_scores(problem: Problem, opts: RelaxOptions, device, dtype) -> torch.Tensor:
    alloc = problem.allocation
    if opts.scores is not None:
        given = dict(opts.scores)
        got = {n: tuple(torch.as_tensor(v).shape) for n, v in given.items()}
        if got != dict(alloc.shapes):
            raise ValueError(f"scores must map exactly {dict(alloc.shapes)} (name: shape); got {got}.")
        flat = alloc.flatten({n: torch.as_tensor(given[n]).detach().to(torch.float64) for n in alloc.shapes})
    elif opts.warm_start is not None:
        warm = opts.warm_start if isinstance(opts.warm_start, MaskSet) else MaskSet(opts.warm_start)
        warm.check_shapes(problem.mask_shapes())
        bad = alloc.violations(warm)
        if bad:
            raise ValueError(f"warm_start is over the budget ({bad[0]}); give a mask within the budget.")
        flat = alloc.flatten(warm).to(torch.float64) * 2 - 1
    elif opts.init == "magnitude":
        flat = alloc.flatten({n: w.abs() for n, w in problem.weights().items()}).to(torch.float64)
        flat = flat / flat.mean().clamp_min(1e-12)
    else:
        flat = torch.zeros(alloc.size, dtype=torch.float64)
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("initial scores contain NaN or infinite values.")
    return flat.to(device=device, dtype=dtype)


def _checks(problem: Problem, opts: RelaxOptions, closure: _Closure, steps: int, device) -> Checks:
    """The hard-mask checks of ``opts`` (see :class:`RelaxOptions`): all samples in chunks of
    ``eval_batch_size``, and the seeded screening subset of ``eval_samples`` of them."""
    n = int(problem.inputs.shape[0])
    size = opts.eval_batch_size or opts.batch_size
    full = _chunks(None, n, size, device)
    screen = None
    if opts.eval_samples is not None and opts.eval_samples < n:
        subset = torch.randperm(n, generator=torch.Generator().manual_seed(opts.seed))[: opts.eval_samples].sort()[0]
        screen = _chunks(subset, n, size, device)
    if opts.lookahead and not problem.criterion.combines_by_batch and (len(full) > 1 or screen is not None):
        raise ValueError("the lookahead surrogate scores checkpoints chunk by chunk, and with loss='linf' and "
                         "alpha > 0 a maximum and a sum do not combine over chunks; use batch_size=None (or ≥ the "
                         "number of samples) and eval_samples=None, alpha=0, or another loss.")
    return Checks(full=lambda hard: closure.evaluate(hard, full),
                  screen=None if screen is None else (lambda hard: closure.evaluate(hard, screen)),
                  every=opts.eval_every or max(10, steps // 20), finalists=opts.finalists, free=closure.free)


def _distributed_refusal(problem: Problem, opts: RelaxOptions) -> str | None:
    if problem.criterion.reduce != "sum":
        return (f"loss={problem.loss!r} is a maximum over samples, whose gradient does not split over ranks; use a "
                "sum loss (l1, l2, kl) or one process.")
    if opts.lookahead:
        return "the lookahead surrogate runs on one process; set lookahead=0."
    if opts.polish:
        return "polish runs on one process; polish the returned mask afterwards on rank 0."
    return None


def _relax(problem: LayerwiseProblem | DistillProblem, opts: RelaxOptions) -> MethodOutput:
    par = Ranks(opts.distributed)
    if opts.distributed and (reason := _distributed_refusal(problem, opts)):
        raise ValueError(f"distributed=True: {reason}")
    device, dtype = par.device(resolve_device(opts.device)), DTYPES[opts.dtype]
    alloc = problem.allocation
    if isinstance(problem, DistillProblem):
        closure = _distill_closure(problem, opts, device, dtype, alloc.offsets, par)
    elif opts.lookahead:
        raise ValueError("lookahead trains a student network, so it needs a DistillProblem; set lookahead=0 for a "
                         "LayerwiseProblem.")
    else:
        closure = _layerwise_closure(problem, opts, device, dtype, par)
    steps = opts.steps if opts.epochs is None else opts.epochs * closure.steps_per_pass
    checks = _checks(problem, opts, closure, steps, device)
    segments = Segments(alloc.units(), alloc.size, device)
    scores = _initial_scores(problem, opts, device, dtype)

    def optimizer(params):  # Adam fused: one pass over the scores per step
        return make_optimizer(opts.optimizer, params, opts.lr, fused=True if opts.optimizer != "sgd" else None)

    train_loss = closure.loss if not opts.compile else torch.compile(
        closure.loss, mode=None if opts.compile is True else opts.compile)

    def loss_fn(pieces, batch):
        value = train_loss(pieces, batch)
        if not bool(torch.isfinite(value)):
            raise FloatingPointError("the training loss became NaN/inf; lower lr or use dtype='float64'.")
        return value

    history, stage_stats = [], []
    best_mask, best_value = None, math.inf
    t0 = time.perf_counter()
    for stage in opts.stages():
        res = run_stage(loss_fn, scores, segments, stage, steps, closure.batches, optimizer, checks, opts.verbose,
                        closure.weight, closure.sizes, par.sum_ if par.world > 1 else None)
        offset = len(history)
        history.extend({**h, "step": h["step"] + offset} for h in res.history)
        stage_stats.append({"stage": stage.name, "best_value": res.value, "best_step": res.best_step + offset,
                            "checks": res.checks})
        if res.value < best_value:
            best_mask, best_value = res.mask, res.value
        scores = res.scores
    elapsed = time.perf_counter() - t0
    par.agree(best_mask, device)
    total = len(history)
    drawn = None if opts.loader is not None else _samples_drawn(total, problem.inputs.shape[0], opts.batch_size)
    stats = {"device": str(device), "dtype": opts.dtype, "steps": total, "stages": stage_stats,
             "seconds_per_step": elapsed / max(total, 1), "training_objective": best_value, "world_size": par.world,
             # training samples through forward+backward over all ranks (hard-mask evaluations not counted);
             # a lookahead step counts 2k + 1: k + 1 passes forward through the unrolled steps, k back
             "gradient_samples": None if drawn is None else drawn * (2 * opts.lookahead + 1)}
    best_mask = best_mask.cpu()
    if opts.polish:
        best_mask, before, after, moves = polish(best_mask, scores, Segments(alloc.units(), alloc.size),
                                                 lambda b: problem.objective_batch(alloc.unflatten(b)),
                                                 opts.polish_candidates)
        stats["polish"] = {"objective_before": before, "objective_after": after, "moves": moves,
                           "seconds": time.perf_counter() - t0 - elapsed}
    return MethodOutput(alloc.unflatten(best_mask), "feasible", None, history, stats)


_PROBLEMS = (LayerwiseProblem, DistillProblem)
register("sigmoid", options=SigmoidOptions, problems=_PROBLEMS, family="relaxation", devices=DEVICE_TYPES,
         summary="sigmoid relaxation at a fixed temperature, exact expected budget; top-k projection")(_relax)
register("anneal", options=AnnealOptions, problems=_PROBLEMS, family="relaxation", devices=DEVICE_TYPES,
         summary="sigmoid with temperature annealed to a binary mask (continuous sparsification)")(_relax)
register("ste", options=SteOptions, problems=_PROBLEMS, family="relaxation", devices=DEVICE_TYPES,
         summary="hard top-k mask forward, straight-through gradient to the scores (edge-popup)")(_relax)
register("hierarchy", options=HierarchyOptions, problems=_PROBLEMS, family="relaxation", devices=DEVICE_TYPES,
         summary="sigmoid -> anneal -> ste, each warm-started from the previous scores")(_relax)
