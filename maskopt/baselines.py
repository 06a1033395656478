"""Pruning baselines registered as methods. Each one computes a score per weight; the
budget's projection (the highest scores within each scope unit, exactly the cap) turns
scores into a mask, so every baseline honours every Budget scope and the exact density.

Iterative methods (SynFlow, IMP) prune in rounds; round r keeps, in each scope unit of n_u
weights with final cap c_u, an intermediate cap c_u(r) ≥ c_u that never grows from round
to round (pruned weights score −∞), so their masks are nested and the last round's is
exactly within the budget.

Compute is reported in ``stats["gradient_samples"]``: the number of per-sample
forward+backward passes spent finding the mask (a training step on a batch of B samples
costs B, a full-data gradient over N samples N, a Hessian-vector product 2N, a SynFlow
round 1); divided by a batch size it gives training-step equivalents.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from maskopt.api import CommonOptions, MethodOutput, register
from maskopt.budget import Allocation, count_for_density
from maskopt.device import DEVICE_TYPES, resolve_device
from maskopt.distill import DistillProblem
from maskopt.problems import Problem
from maskopt.train import Trainer, TrainResult

# ---------------------------------------------------------------- scores → masks


def geometric_caps(alloc: Allocation, fraction: float) -> list[int]:
    """Caps at ``fraction`` ∈ [0, 1] of the way from dense to the budget on a log scale:
    c_u(f) = max(c_u, round(n_u · (c_u / n_u)^f)) (c_u = 0 units: n_u at f = 0, else 0)."""
    out = []
    for start, stop, cap in alloc.units():
        n = stop - start
        if fraction <= 0:
            out.append(n)
        elif cap == 0 or fraction >= 1:
            out.append(cap)
        else:
            out.append(max(cap, round(n * (cap / n) ** fraction)))
    return out


def _pruned_to_minus_inf(scores: dict[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None) -> dict:
    if masks is None:
        return scores
    return {n: s.masked_fill(~masks[n].to(s.device), -math.inf) for n, s in scores.items()}


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class ScoreOptions(CommonOptions):
    """Options of the one-shot scores ``magnitude``, ``random``, ``snip`` and ``grasp``: the
    common ones only (each method's docstring says what it does with them)."""


@dataclass(frozen=True)
class SynflowOptions(CommonOptions):
    """``iterations`` pruning rounds on the exponential schedule (Tanaka et al. 2020: 100);
    ``device``: where the student's flow is computed (float64); ``seed``: unused (data-free
    and deterministic); ``verbose``: a progress bar over the rounds."""

    iterations: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError(f"iterations must be ≥ 1; got {self.iterations}.")


@dataclass(frozen=True)
class TrainOptions(CommonOptions):
    """How training-based baselines train the student's weights.

    ``train_on``: ``"problem"`` = the problem's own objective (distillation from its
    teachers, label mix included) on mini-batches of its inputs; ``"labels"`` =
    cross-entropy on the problem's labels. ``loader``: a DataLoader of ``(x, y)`` batches to
    train on instead of the problem's inputs (targets of ``x`` from the teachers; ``y`` only
    for ``"labels"``). ``epochs`` per training run; Adam/AdamW/SGD with ``lr``. Common
    options: ``device`` = where the student trains (float32; its copy, the targets, the
    batch indices and every per-step buffer live there); ``seed`` = the batch order (a CPU
    generator, so it is the same on every device) and any random masks; ``verbose`` = a
    progress bar per training run.
    """

    epochs: float = 10.0
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    train_on: str = "problem"
    loader: DataLoader | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_on not in ("problem", "labels"):
            raise ValueError(f"train_on must be 'problem' or 'labels'; got {self.train_on!r}.")
        if not self.epochs > 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("need epochs > 0, batch_size ≥ 1 and lr > 0.")


@dataclass(frozen=True)
class ImpOptions(TrainOptions):
    """Iterative magnitude pruning (Frankle & Carbin 2019): train, prune ``rate`` of the
    remaining weights of every scope unit by |w| (at least one weight of a unit above its cap),
    rewind the survivors to their value at step ``rewind_step`` (0 = the initialization),
    retrain; until the budget is reached.
    ``schedule``: explicit per-round sparsities instead of ``rate`` (each round's caps
    c_u(r) = max(c_u, count_for_density(1 − s_r, n_u)); a last round at the budget is
    added when the schedule stops short of it). ``rounds``: instead of ``rate``, exactly
    this many rounds on a geometric schedule per scope unit, round r keeping
    max(c_u, round(n_u · (c_u / n_u)^(r / rounds))) (:func:`geometric_caps`).
    ``score_step``: prune by |w| after this many steps of each training run instead of its
    final weights (None); the MNIST-1D notebook's IMP scores its checkpoint after
    optimizer step 1001 (``score_step=1001``; its loop index 1000)."""

    rate: float = 0.2
    rewind_step: int = 0
    schedule: tuple[float, ...] | None = None
    rounds: int | None = None
    score_step: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"rate must lie in (0, 1); got {self.rate}.")
        if self.rewind_step < 0:
            raise ValueError(f"rewind_step must be ≥ 0; got {self.rewind_step}.")
        if self.schedule is not None and not all(0.0 <= s <= 1.0 for s in self.schedule):
            raise ValueError("schedule must list sparsities in [0, 1].")
        for name in ("rounds", "score_step"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer ≥ 1 or None; got {v!r}.")
        if self.rounds is not None and self.schedule is not None:
            raise ValueError("give rounds= or schedule=, not both (rounds builds a geometric schedule).")


@dataclass(frozen=True)
class KstartsOptions(TrainOptions):
    """K-starts: ``k`` random masks within the budget, each trained ``epochs`` (few) from
    the initialization; the fittest is kept. ``fitness``: ``"magnitude"`` = Σ|w| of the
    kept weights after training, ``"gradient"`` = Σ over steps of Σ|∂L/∂w| of the kept
    weights, ``"both"`` = the sum of the two, each divided by its largest value over the k
    candidates."""

    k: int = 5
    epochs: float = 2.0
    fitness: str = "both"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_kstarts(self.k, self.fitness)


def _check_kstarts(k: int, fitness: str) -> None:
    if k < 1:
        raise ValueError(f"k must be ≥ 1; got {k}.")
    if fitness not in ("magnitude", "gradient", "both"):
        raise ValueError(f"fitness must be 'magnitude', 'gradient' or 'both'; got {fitness!r}.")


@dataclass(frozen=True)
class DissipatingOptions(TrainOptions):
    """Dissipating gradients: train the dense network ``epochs`` (the first few) and remove
    the weights that moved least: score = max over steps of |w_t − w_0| / |w_0|. Weights
    whose score stays ≤ ``fraction`` are the dissipating ones; their count is reported in
    ``stats["dissipating"]``, the budget decides how many go."""

    epochs: float = 2.0
    fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fraction > 0:
            raise ValueError(f"fraction must be > 0; got {self.fraction}.")


@dataclass(frozen=True)
class KstartsDissipatingOptions(DissipatingOptions):
    """The combination: ``k`` starts, each a dissipating-gradients mask from a dense run,
    trained like K-starts' candidates; the fittest is kept. All runs draw their batches in
    turn from one order seeded by ``seed``, so the starts see different batches."""

    k: int = 5
    fitness: str = "both"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_kstarts(self.k, self.fitness)


# ---------------------------------------------------------------- data-free and one-shot scores


@register("magnitude", options=ScoreOptions, problems=(Problem,), family="one-shot", devices=DEVICE_TYPES,
          uses_seed=False, summary="keep the largest |w| within each scope unit")
def _magnitude(problem: Problem, opts: ScoreOptions) -> MethodOutput:
    """|w| ranked on ``device`` (the same mask on every device); ``seed``: unused
    (deterministic); ``verbose``: nothing to show."""
    dev = resolve_device(opts.device)
    scores = {n: w.to(dev).abs() for n, w in problem.weights().items()}
    return MethodOutput(problem.allocation.project(scores), stats={"gradient_samples": 0})


@register("random", options=ScoreOptions, problems=(Problem,), family="one-shot", devices=DEVICE_TYPES,
          summary="keep uniformly random weights within each scope unit (seeded)")
def _random(problem: Problem, opts: ScoreOptions) -> MethodOutput:
    """Uniform scores from a CPU generator seeded by ``seed`` (so the mask is the same on
    every device), ranked on ``device``; ``verbose``: nothing to show."""
    dev = resolve_device(opts.device)
    scores = {n: s.to(dev) for n, s in _random_scores(problem.mask_shapes(), opts.seed).items()}
    return MethodOutput(problem.allocation.project(scores), stats={"gradient_samples": 0})


def _random_scores(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(tuple(s), generator=gen) for n, s in shapes.items()}


def snip_scores(problem: Problem, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Connection sensitivity (Lee et al. 2019): |∂L/∂m| at m = 1 = |w ⊙ ∂L/∂w|, L the
    problem's objective on its data, computed in float64 on ``device`` (None: the CPU),
    where the scores stay."""
    objective = problem.objective_fn(device)
    ones = {n: torch.ones(s, dtype=torch.float64, device=device, requires_grad=True)
            for n, s in problem.mask_shapes().items()}
    grads = torch.autograd.grad(objective(ones), list(ones.values()))
    return {n: g.abs() for n, g in zip(ones, grads)}


def grasp_scores(problem: Problem, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Gradient signal preservation (Wang et al. 2020): keep the largest w ⊙ (H g), g and H
    the gradient and Hessian of the objective in the weights (Alg. 1 removes the largest
    −w ⊙ Hg). Hg by double back-propagation of gᵀ·stop_gradient(g); float64 on ``device``
    (None: the CPU), where the scores stay."""
    objective = problem.objective_fn(device)
    weights = {n: w.detach().to(device=device, dtype=torch.float64, copy=True).requires_grad_(True)
               for n, w in problem.weights().items()}
    ones = {n: torch.ones(s, dtype=torch.float64, device=device) for n, s in problem.mask_shapes().items()}
    g = torch.autograd.grad(objective(ones, weights), list(weights.values()), create_graph=True)
    z = sum((gi * gi.detach()).sum() for gi in g)
    hg = torch.autograd.grad(z, list(weights.values()))
    return {n: (w * h).detach() for (n, w), h in zip(weights.items(), hg)}


def synflow_scores(problem: DistillProblem, masks: Mapping[str, torch.Tensor] | None = None,
                   student: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Synaptic flow (Tanaka et al. 2020) of the masked student: with every parameter
    replaced by its absolute value, BatchNorm in eval mode and an all-ones input of one
    sample, R = Σ outputs; score = |w| ⊙ ∂R/∂|w| (data-free). ``student``: a float64
    eval-mode copy of the problem's on the device to compute on (default the problem's own,
    on the CPU); the scores lie on its device."""
    student = problem.student if student is None else student
    params = {n: p.detach().abs() for n, p in student.named_parameters()}
    shapes = problem.mask_shapes()
    m = {n: (torch.ones(s, dtype=torch.float64, device=params[n].device) if masks is None
             else masks[n].to(device=params[n].device, dtype=torch.float64)).requires_grad_(True)
         for n, s in shapes.items()}
    for n in shapes:
        params[n] = params[n] * m[n]
    x = torch.ones((1, *problem.inputs.shape[1:]), dtype=torch.float64, device=next(iter(m.values())).device)
    r = functional_call(student, params, (x,)).sum()
    grads = torch.autograd.grad(r, list(m.values()))
    return {n: g.detach() for n, g in zip(m, grads)}  # ∂R/∂m = |w| ⊙ ∂R/∂(|w| m)


@register("snip", options=ScoreOptions, problems=(Problem,), family="one-shot", devices=DEVICE_TYPES,
          uses_seed=False, summary="connection sensitivity |w·∂L/∂w| on the problem's data (Lee et al. 2019)")
def _snip(problem: Problem, opts: ScoreOptions) -> MethodOutput:
    """One full-data gradient in float64 on ``device``; ``seed``: unused (deterministic);
    ``verbose``: nothing to show."""
    scores = snip_scores(problem, resolve_device(opts.device))
    return MethodOutput(problem.allocation.project(scores), stats={"gradient_samples": _samples(problem)})


@register("grasp", options=ScoreOptions, problems=(Problem,), family="one-shot", devices=DEVICE_TYPES,
          uses_seed=False, summary="gradient signal preservation w·Hg (Wang et al. 2020)")
def _grasp(problem: Problem, opts: ScoreOptions) -> MethodOutput:
    """A gradient and a Hessian-gradient product in float64 on ``device``; ``seed``: unused
    (deterministic); ``verbose``: nothing to show."""
    scores, n = grasp_scores(problem, resolve_device(opts.device)), _samples(problem)
    return MethodOutput(problem.allocation.project(scores), stats={"gradient_samples": None if n is None else 2 * n})


@register("synflow", options=SynflowOptions, problems=(DistillProblem,), family="one-shot",
          devices=DEVICE_TYPES, uses_seed=False,
          summary="iterative synaptic flow, data-free, exponential schedule (Tanaka et al. 2020)")
def _synflow(problem: DistillProblem, opts: SynflowOptions) -> MethodOutput:
    dev = resolve_device(opts.device)
    student = problem.student_on(dev)
    alloc, masks = problem.allocation, None
    for it in tqdm(range(1, opts.iterations + 1), desc="synflow", disable=not opts.verbose, leave=False):
        scores = _pruned_to_minus_inf(synflow_scores(problem, masks, student), masks)
        masks = alloc.project(scores, geometric_caps(alloc, it / opts.iterations))
    return MethodOutput(masks, stats={"iterations": opts.iterations,
                                      "gradient_samples": opts.iterations})


def _samples(problem: Problem) -> int | None:
    """N, the samples of a full-data gradient of the problem's objective (None for a problem
    of one's own without ``inputs``: unknown)."""
    inputs = getattr(problem, "inputs", None)
    return None if inputs is None else int(inputs.shape[0])


# ---------------------------------------------------------------- training-based baselines


def problem_trainer(problem: DistillProblem, opts: TrainOptions) -> Trainer:
    """A :class:`Trainer` of a float32 copy of the problem's student on the problem's data
    (or ``opts.loader``) with the loss ``opts.train_on`` names."""
    student = copy.deepcopy(problem.student).float()
    for p in student.parameters():
        p.requires_grad_(True)
    options = {"epochs": opts.epochs, "batch_size": opts.batch_size, "lr": opts.lr, "optimizer": opts.optimizer,
               "weight_decay": opts.weight_decay, "device": opts.device, "seed": opts.seed, "verbose": opts.verbose}
    if opts.train_on == "labels":
        if opts.loader is not None:
            return Trainer(student, (opts.loader, None), problem.params, None, options)
        if problem.labels is None:
            raise ValueError("train_on='labels' needs a DistillProblem with labels= (or a loader of (x, y)).")
        return Trainer(student, (_loader(problem.inputs.float(), problem.labels, opts), None), problem.params,
                       None, options)
    obj = problem.batch_objective(resolve_device(opts.device), torch.float32)
    if opts.loader is not None:
        def loader_loss(out, xy):
            return obj.batch_value(out, obj.of_loader(xy)[1])

        return Trainer(student, (_WithInputs(opts.loader), None), problem.params, loader_loss, options)

    def loss(out, idx):
        return obj.batch_value(out, obj.at(idx)[1])

    return Trainer(student, (_loader(problem.inputs.float(), torch.arange(obj.n), opts), None),
                   problem.params, loss, options)


def _loader(x: torch.Tensor, y: torch.Tensor, opts: TrainOptions) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=opts.batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(opts.seed))


class _WithInputs:
    """A user's loader of ``x`` or ``(x, y)`` batches yielding ``(x, (x, y))``, so the
    distillation loss sees the inputs."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        for batch in self.loader:
            pair = isinstance(batch, (tuple, list))
            x, y = (batch[0], batch[1] if len(batch) > 1 else None) if pair else (batch, None)
            yield x, (x, y)


@dataclass
class ImpRound:
    """One IMP round: its number (1, 2, ...), the mask, and the training run with it."""

    round: int
    masks: dict[str, torch.Tensor]
    result: TrainResult

    @property
    def density(self) -> float:
        kept = sum(int(m.sum()) for m in self.masks.values())
        return kept / sum(m.numel() for m in self.masks.values())


def imp_caps(alloc: Allocation, rate: float, schedule: Sequence[float] | None,
             rounds: int | None = None) -> list[list[int]]:
    """Per-round caps of IMP over ``alloc``'s units (non-increasing; the last = the budget):
    from ``rounds`` geometric rounds, else from ``schedule``, else ``rate`` per round."""
    if rounds is not None:
        return [geometric_caps(alloc, r / rounds) for r in range(1, rounds + 1)]
    units = alloc.units()
    final = [cap for _, _, cap in units]
    out = []
    if schedule is not None:
        for s in schedule:
            out.append([max(c, count_for_density(1.0 - s, stop - start))
                        for (start, stop, _), c in zip(units, final)])
    else:
        keep = [stop - start for start, stop, _ in units]
        while keep != final:
            # at least one weight a round: round(k (1 − rate)) = k when k·rate < 1/2
            keep = [max(c, min(k - 1, round(k * (1.0 - rate)))) if k > c else c for k, c in zip(keep, final)]
            out.append(keep)
    if not out or out[-1] != final:
        out.append(final)
    for a, b in zip(out, out[1:]):
        if any(y > x for x, y in zip(a, b)):
            raise ValueError("an IMP schedule must not increase the density from round to round.")
    return out


def iterative_magnitude_pruning(trainer: Trainer, alloc: Allocation, rate: float = 0.2,
                                schedule: Sequence[float] | None = None, rewind_step: int = 0,
                                rounds: int | None = None, score_step: int | None = None
                                ) -> Iterator[TrainResult | ImpRound]:
    """IMP with rewinding (Frankle & Carbin 2019; Frankle et al. 2020). Yields the dense
    training run, then one :class:`ImpRound` per round: prune by |w| of the previous run's
    trained weights (pruned stay pruned; with ``score_step``, its weights after that many of
    its steps) to the round's caps (:func:`imp_caps`), reset the survivors to their values
    after ``rewind_step`` dense steps (0: the initialization) and train the remaining steps.
    The last round's mask is within ``alloc``'s budget."""
    init = trainer.state()
    snapshot: dict[str, torch.Tensor] = {}
    scored: dict[str, torch.Tensor] = {}

    def run(masks, state, rewind: bool = False, **override) -> TrainResult:
        """One training run; records the rewind state (the dense run only) and the scored weights."""
        def on_step(step: int) -> None:
            if rewind and step == rewind_step:
                snapshot.update(trainer.state())
            if step == score_step:
                scored.update(trainer.weights())

        scored.clear()
        hooked = (rewind and rewind_step > 0) or score_step is not None
        result = trainer.run(masks, state, on_step=on_step if hooked else None, **override)
        if score_step is not None and not scored:
            raise ValueError(f"score_step={score_step} exceeds the {result.steps} steps of a training run; give "
                             f"score_step ≤ {result.steps} or None (score the final weights).")
        return result

    dense = run(None, init, rewind=True)
    yield dense
    if rewind_step > 0 and not snapshot:
        raise ValueError(f"rewind_step={rewind_step} exceeds the {dense.steps} steps of a training run.")
    start = snapshot if rewind_step > 0 else init
    override = {"steps": dense.steps - rewind_step} if rewind_step > 0 else {}
    masks = None
    for r, caps in enumerate(imp_caps(alloc, rate, schedule, rounds), start=1):
        trained = scored if score_step is not None else trainer.weights()  # used before run() clears it
        scores = _pruned_to_minus_inf({n: w.abs().double() for n, w in trained.items()}, masks)
        masks = alloc.project(scores, caps)
        result = run(masks, start, **override)
        yield ImpRound(r, masks, result)


@register("imp", options=ImpOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="iterative magnitude pruning with rewinding, 20% per round (lottery tickets)")
def _imp(problem: DistillProblem, opts: ImpOptions) -> MethodOutput:
    trainer = problem_trainer(problem, opts)
    samples, history, last = 0, [], None
    for item in iterative_magnitude_pruning(trainer, problem.allocation, opts.rate, opts.schedule, opts.rewind_step,
                                            opts.rounds, opts.score_step):
        result = item if isinstance(item, TrainResult) else item.result
        samples += result.samples
        if isinstance(item, ImpRound):
            last = item
            history.append({"round": item.round, "density": item.density, "steps": result.steps,
                            "train_loss": result.history[-1]["train_loss"]})
    return MethodOutput(last.masks, history=history, stats={"rounds": last.round, "gradient_samples": samples})


def _fitness(grad_sum: dict[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
             weights: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    magnitude = sum(float((w.abs() * masks[n].to(w.dtype)).sum()) for n, w in weights.items())
    gradient = sum(float(g.sum()) for g in grad_sum.values())
    return magnitude, gradient


def _train_candidate(trainer: Trainer, init: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
                     ) -> tuple[float, float, int]:
    """Train one K-starts candidate; (Σ|w| kept after training, Σ_t Σ|g_t| kept, samples)."""
    params = dict(trainer.model.named_parameters())
    grad_sum = {n: torch.zeros_like(params[n]) for n in trainer.names}

    def on_step(step: int) -> None:  # gradients are already masked when the step is taken
        for n, g in grad_sum.items():
            if params[n].grad is not None:
                g.add_(params[n].grad.abs())

    result = trainer.run(masks, init, on_step=on_step)
    magnitude, gradient = _fitness(grad_sum, masks, trainer.weights())
    return magnitude, gradient, result.samples


def _fittest(candidates: list[tuple[dict, float, float]], fitness: str) -> int:
    mags = [c[1] for c in candidates]
    grads = [c[2] for c in candidates]
    if fitness == "magnitude":
        values = mags
    elif fitness == "gradient":
        values = grads
    else:
        values = [m / max(max(mags), 1e-300) + g / max(max(grads), 1e-300) for m, g in zip(mags, grads)]
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _kstarts_search(problem: DistillProblem, opts: KstartsOptions | KstartsDissipatingOptions,
                    candidate: Callable[[Trainer, dict, int], tuple[dict[str, torch.Tensor], int]]) -> MethodOutput:
    """K-starts: candidate i = ``candidate(trainer, init, seed + i)`` → (mask, samples spent
    making it; the seed draws a random mask), trained from ``init``; the fittest mask is
    returned. The runs draw their batches in turn from the trainer's one seeded order."""
    trainer = problem_trainer(problem, opts)
    init, samples, candidates, history = trainer.state(), 0, [], []
    for i in range(opts.k):
        masks, spent = candidate(trainer, init, opts.seed + i)
        mag, grad, n = _train_candidate(trainer, init, masks)
        samples += spent + n
        candidates.append((masks, mag, grad))
        history.append({"start": i, "magnitude": mag, "gradient": grad})
    best = _fittest(candidates, opts.fitness)
    return MethodOutput(candidates[best][0], history=history, stats={"chosen": best, "gradient_samples": samples})


@register("kstarts", options=KstartsOptions, problems=(DistillProblem,), family="training", devices=DEVICE_TYPES,
          summary="K random masks trained a few epochs, keep the fittest (magnitude/gradient)")
def _kstarts(problem: DistillProblem, opts: KstartsOptions) -> MethodOutput:
    def random_mask(trainer, init, seed):
        return problem.allocation.project(_random_scores(problem.mask_shapes(), seed)), 0

    return _kstarts_search(problem, opts, random_mask)


def dissipating_scores(trainer: Trainer, init: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """max over the steps of a dense run from ``init`` of |w_t − w_0| / |w_0| per maskable
    weight (∞ where w_0 = 0 and the weight moved, 0 where it never moved), and the samples
    processed."""
    params = dict(trainer.model.named_parameters())
    w0 = {n: init[n].to(params[n].device).clone() for n in trainer.names}
    moved = {n: torch.zeros_like(w) for n, w in w0.items()}

    def on_step(step: int) -> None:
        with torch.no_grad():
            for n, m in moved.items():
                torch.maximum(m, (params[n] - w0[n]).abs(), out=m)

    result = trainer.run(None, init, on_step=on_step)
    return {n: torch.where(m == 0, 0.0, m / w0[n].abs()).cpu().double() for n, m in moved.items()}, result.samples


@register("dissipating", options=DissipatingOptions, problems=(DistillProblem,), family="training",
          devices=DEVICE_TYPES,
          summary="drop weights that stay near their initial value in the first epochs")
def _dissipating(problem: DistillProblem, opts: DissipatingOptions) -> MethodOutput:
    trainer = problem_trainer(problem, opts)
    scores, samples = dissipating_scores(trainer, trainer.state())
    low = sum(int((s <= opts.fraction).sum()) for s in scores.values())
    return MethodOutput(problem.allocation.project(scores),
                        stats={"dissipating": low, "gradient_samples": samples})


@register("kstarts_dissipating", options=KstartsDissipatingOptions, problems=(DistillProblem,),
          family="training", devices=DEVICE_TYPES,
          summary="K-starts whose candidates are dissipating-gradient masks")
def _kstarts_dissipating(problem: DistillProblem, opts: KstartsDissipatingOptions) -> MethodOutput:
    def dissipating_mask(trainer, init, seed):
        scores, spent = dissipating_scores(trainer, init)  # (the seed draws K-starts' random masks)
        return problem.allocation.project(scores), spent

    return _kstarts_search(problem, opts, dissipating_mask)
