r"""Relaxations of a binary mask m ∈ {0,1}ⁿ under cardinality budgets, trained by gradient.

Scores s ∈ ℝⁿ parametrise the mask. The budget is a list of scope units, contiguous ranges
u = [a, b) of the flat mask with a cap c_u (at most c_u of them kept).

Soft stages (``"sigmoid"``, ``"anneal"``) use, with temperature τ,

    m_i = σ((s_i − θ_u) / τ)                       for i ∈ u,

where θ_u is the Lagrange multiplier of the expected-budget constraint Σ_{i∈u} m_i = c_u:
the unique root of that equation (m maximises Σ s_i m_i + τ·H(m) subject to it), found
each step (to 1e-6 of the unit's size) by safeguarded Newton iterations warm-started from
the previous step's θ. The gradient includes θ's dependence on s (implicit function theorem),

    ∂θ_u/∂s_i = σ'_i / Σ_{j∈u} σ'_j,

so the expected density equals the budget at every step (to that tolerance) and the gradient
is the loss gradient projected onto that constraint. A unit with c_u ≥ |u| is all ones,
one with c_u = 0 all zeros.

* ``"sigmoid"``: fixed τ.
* ``"anneal"``: τ_t = 1/β_t with β raised from β₀ to β₁ geometrically (or linearly) over
  the stage, so m tends to the binary top-c_u mask (continuous sparsification).
* ``"ste"``: the forward pass uses the hard mask P(s) (the top c_u scores of each unit,
  ties to the lower index: exactly the budget at every step); the backward pass passes
  ∂L/∂m straight through to s (as in edge-popup): m = P(s) + s − stop_grad(s).

The answer of a stage is P(s) at the check whose hard mask scored best (:func:`run_stage`
states the rule: screening on a subset, finalists re-scored on all samples).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from maskopt.solvers.topk import TopK, Units

SCHEDULES = ("geometric", "linear")


class Segments(Units):
    """:class:`~maskopt.solvers.topk.Units` plus the relaxation's per-unit operations
    (expected-budget threshold, sigmoid, projections of gradients)."""

    def __init__(self, units: Sequence[tuple[int, int, int]], size: int, device: torch.device | str = "cpu"):
        super().__init__(units, size, device)
        unit = torch.repeat_interleave(torch.arange(len(units), device=self.cap.device), self.lengths)
        full, empty = self.cap == self.lengths, self.cap == 0
        self.fixed_value = torch.where(full, 1.0, 0.0)[unit]  # (size,) value of entries in fixed units
        self.fixed = (full | empty)[unit]  # (size,) entries whose unit leaves no choice
        self.active = ~(full | empty)  # (U,) units with a choice
        self.has_fixed = bool(self.fixed.any())
        self._host = (self.cap.cpu().numpy().astype(np.float64), self.lengths.cpu().numpy().astype(np.float64),
                      self.active.cpu().numpy())  # caps, lengths, active flags for the host-side Newton

    def _host_sums(self, v: torch.Tensor, w: torch.Tensor | None = None) -> np.ndarray:
        """Per-unit sums of v (or of v·w) as a float64 numpy array (U,) on the host."""
        if len(self) == 1:
            return np.array([float(v.sum() if w is None else torch.dot(v, w))])
        return self.sums(v if w is None else v * w).cpu().numpy()

    def sigma(self, s: torch.Tensor, theta: torch.Tensor, tau: float, out: torch.Tensor | None = None
              ) -> torch.Tensor:
        """σ((s − θ_u)/τ) (size,) for θ (U,), into ``out`` when given: the argument in one
        pass (s/τ − θ/τ, broadcast per run of equal-length units; no per-entry index), then
        the clipped in-place sigmoid."""
        out = torch.empty_like(s) if out is None else out
        shift = (theta * (-1.0 / tau)).to(device=s.device, dtype=s.dtype)
        if len(self) == 1:
            torch.add(shift, s, alpha=1.0 / tau, out=out)
        else:
            for sb, ob, pb in zip(self._views(s), self._views(out), shift.split(self._row_counts)):
                torch.add(pb.unsqueeze(1), sb, alpha=1.0 / tau, out=ob)
        return _sigmoid_(out)

    def minus_times(self, v: torch.Tensor, w: torch.Tensor, per_unit: torch.Tensor) -> torch.Tensor:
        """v − per_unit[unit of each entry]·w (size,), in place in ``v`` (one pass)."""
        per_unit = per_unit.to(v.dtype)
        if len(self) == 1:
            return torch.addcmul(v, w, per_unit, value=-1.0, out=v)
        for vb, wb, pb in zip(self._views(v), self._views(w), per_unit.split(self._row_counts)):
            torch.addcmul(vb, wb, pb.unsqueeze(1), value=-1.0, out=vb)
        return v

    def threshold(self, scores: torch.Tensor, tau: float, theta: torch.Tensor | None = None,
                  tol: float = 1e-6, max_iter: int = 100, out: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """θ (U,) float64 with Σ_{i∈u} σ((s_i − θ_u)/τ) = c_u for every active unit, to
        ``tol``·|u| (safeguarded Newton from ``theta``; bisection when a step leaves the
        bracket); σ((s − θ)/τ) (size,) at that θ (written into ``out`` when given); and the
        expected number of kept entries Σ m of the soft mask (:meth:`fix` of that σ).

        σ is evaluated in the scores' dtype: in float32, with many tied scores at the cut and
        |s/τ| in the thousands, the rounding of (s − θ)/τ can keep Σσ a few entries from c_u
        (about 6 in 33 333 at worst in our tests); the loop then stops after ``max_iter`` with
        the last θ. The hard top-c_u projection is exact regardless.

        The per-unit bookkeeping (U numbers) runs in numpy on the host: each iteration moves
        the unit sums there and θ back, instead of a dozen tiny device operations."""
        s = scores.detach()
        cap, lengths, active = self._host
        limit = np.where(active, tol * lengths + 1e-9, np.inf)
        n = len(self)

        def outer() -> tuple[float, float]:  # Σσ ≈ |u| ≥ c_u at the first, Σσ ≈ 0 at the second
            return float(s.min()) - 40.0 * tau, float(s.max()) + 40.0 * tau

        if theta is None:
            lo, hi = (np.full(n, v) for v in outer())
            th = (lo + hi) / 2
        else:  # warm start: the bracket is built from the signs seen, the outer one only if needed
            th = theta.detach().cpu().numpy().astype(np.float64)
            lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        sig = torch.empty_like(s) if out is None else out  # one buffer for all iterations
        for it in range(max_iter):
            at = th  # the θ that sig is evaluated at (returned with it)
            self.sigma(s, torch.from_numpy(th), tau, out=sig)
            total = self._host_sums(sig)
            f = total - cap  # decreasing in θ
            if bool(np.all(np.abs(f) <= limit)):
                break
            lo = np.where(f > 0, th, lo)
            hi = np.where(f < 0, th, hi)
            if it == 2:  # not converged from the warm start: add the outer bracket
                low, high = outer()
                lo, hi = np.maximum(lo, low), np.minimum(hi, high)
            slope = total - self._host_sums(sig, sig)  # Σσ(1 − σ)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf brackets, tiny slopes
                newton = th + f / np.maximum(slope / tau, 1e-300)
                ok = (newton > lo) & (newton < hi) & np.isfinite(newton)
                th = np.where(ok, newton, (lo + hi) / 2)
        kept = float(np.where(active, total, cap).sum())  # fixed units hold their constant 0 or 1
        return torch.from_numpy(at).to(s.device), sig, kept

    def soft(self, scores: torch.Tensor, tau: float, theta: torch.Tensor, sig: torch.Tensor | None = None
             ) -> torch.Tensor:
        """m = σ((s − θ(s))/τ) (size,) with θ = ``theta`` (from :meth:`threshold`, which also
        gives ``sig`` = that value) and its implicit gradient; entries of fixed units are
        their constant 0 or 1."""
        if sig is None:
            sig = self.sigma(scores.detach(), theta, tau)
        return masked_product(scores, self.fix(sig), self, sig, tau)[0]

    def hard_ste(self, scores: torch.Tensor, hard: torch.Tensor | None = None) -> torch.Tensor:
        """m = P(s) (``hard``, computed when None) in the forward pass, gradient straight to s."""
        hard = self.project(scores) if hard is None else hard
        return masked_product(scores, hard.to(scores.dtype), self)[0]

    def fix(self, sig: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``sig`` (size,) with the entries of fixed units set to their constant 0 or 1
        (``sig`` itself when there are none; else a new tensor or ``out``)."""
        if not self.has_fixed:
            return sig
        value = self.fixed_value.to(sig.dtype)
        return torch.where(self.fixed, value, sig) if out is None else torch.where(self.fixed, value, sig, out=out)


@dataclass
class Workspace:
    """Buffers (size,) reused by every step of a training run instead of fresh tensors
    (on CPU a fresh tensor of a MiB or more costs page faults worth about ten passes over
    it). A step's buffers are overwritten by the next step: ``sig`` holds σ, then σ(1 − σ)
    after the backward pass; ``grad`` receives the scores' gradient (:func:`masked_product`
    writes it there instead of returning it, so the training loop sets ``scores.grad =
    work.grad`` once)."""

    sig: torch.Tensor
    mask: torch.Tensor
    product: torch.Tensor
    grad: torch.Tensor

    @classmethod
    def like(cls, t: torch.Tensor) -> Workspace:
        """Uninitialised buffers of ``t``'s shape, dtype and device."""
        return cls(*(torch.empty_like(t) for _ in range(4)))


def masked_product(scores: torch.Tensor, mask: torch.Tensor, segments: Segments, sig: torch.Tensor | None = None,
                   tau: float = 1.0, weight: torch.Tensor | None = None, sizes: Sequence[int] | None = None,
                   work: Workspace | None = None) -> tuple[torch.Tensor, ...]:
    r"""The pieces of m ⊙ w split by ``sizes`` (or ``(m,)`` when ``weight`` is None), with
    the mask's gradient flowing to ``scores``: m = ``mask`` (size,) is the soft mask
    σ((s − θ)/τ) with fixed units set when ``sig`` (that σ) is given, else a hard mask
    passed straight through. Backward, with g = ∂L/∂m = (∂L/∂pieces) ⊙ w and
    d = σ(1 − σ) (0 in fixed units):

        soft:  ∂L/∂s_j = d_j/τ · (g_j − Σ_{i∈u} g_i d_i / Σ_{i∈u} d_i)   (θ's implicit derivative)
        hard:  ∂L/∂s = g.

    With ``work`` the product goes into ``work.product``, the backward pass overwrites
    ``sig`` with d (σ is not needed after it) and writes the gradient of ``scores`` into
    ``work.grad`` instead of returning it; without it every result is a new tensor."""
    return _MaskedProduct.apply(scores, mask, weight, tuple(sizes or (segments.size,)), segments, sig, tau, work)


class _MaskedProduct(torch.autograd.Function):
    """See :func:`masked_product`."""

    @staticmethod
    def forward(ctx, scores, mask, weight, sizes, seg, sig, tau, work):  # noqa: D102
        ctx.save_for_backward(sig, weight)
        ctx.seg, ctx.tau, ctx.sizes, ctx.work = seg, tau, sizes, work
        if weight is None:
            return (mask,)
        product = torch.mul(mask, weight) if work is None else torch.mul(mask, weight, out=work.product)
        return tuple(product.split(sizes))

    @staticmethod
    def backward(ctx, *grads):  # noqa: D102
        sig, weight = ctx.saved_tensors
        seg, work = ctx.seg, ctx.work
        scale = 1.0 if sig is None else 1.0 / ctx.tau
        g = torch.empty_like(grads[0] if weight is None else weight) if work is None else work.grad
        pieces = (grads[0],) if weight is None else grads
        weights = (None,) if weight is None else weight.split(ctx.sizes)
        for gi, wi, out in zip(pieces, weights, g.split(ctx.sizes)):  # g = (∂L/∂pieces) ⊙ w / τ
            if gi is None:
                out.zero_()
            elif wi is None:
                torch.mul(gi, scale, out=out)
            elif scale == 1.0:
                torch.mul(gi, wi, out=out)
            else:
                torch.addcmul(out.new_zeros(()), gi, wi, value=scale, out=out)
        if sig is not None:
            d = torch.addcmul(sig, sig, sig, value=-1.0, out=None if work is None else sig)  # σ(1 − σ)
            if seg.has_fixed:
                d.masked_fill_(seg.fixed, 0.0)
            total = seg.sums(d)
            gd = g.mul_(d)
            mean = seg.sums(gd) / torch.where(total > 0, total, math.inf)
            seg.minus_times(gd, d, mean)
        return (g if work is None else None), None, None, None, None, None, None, None


def _sigmoid_(z: torch.Tensor) -> torch.Tensor:
    """σ(z) in place, with z clipped to [−30, 30] (changes σ by < 1e-13): keeps the mask and
    σ' out of the subnormal range, where CPU arithmetic (and the masked matrix products)
    slow down by orders of magnitude."""
    return z.clamp_(-30.0, 30.0).sigmoid_()


class Stage(abc.ABC):
    """One relaxation stage: how the scores become the forward mask at a step, and its
    temperature τ over the stage (nan where none applies). Subclasses: :class:`Sigmoid`,
    :class:`Anneal`, :class:`Ste` (:data:`STAGES` by name)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def tau(self, step: int, steps: int) -> float:
        """Temperature at ``step`` of ``steps``."""

    def forward_mask(self, scores: torch.Tensor, tau: float, state: _StepState
                     ) -> tuple[torch.Tensor, torch.Tensor | None, float, torch.Tensor | None]:
        """(mask m written into ``state.work.mask``, σ or None, expected kept count, the hard
        mask when m is one). Soft stages: m = σ((s − θ_u)/τ) at the expected-budget θ."""
        state.theta, sig, kept = state.segments.threshold(scores, tau, state.theta, out=state.work.sig)
        return state.segments.fix(sig, out=state.work.mask), sig, kept, None


@dataclass(frozen=True)
class Sigmoid(Stage):
    """Fixed temperature τ = ``temperature``."""

    temperature: float = 1.0
    name: ClassVar[str] = "sigmoid"

    def __post_init__(self) -> None:
        if not 0 < self.temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0; got {self.temperature}.")

    def tau(self, step: int, steps: int) -> float:
        return self.temperature


@dataclass(frozen=True)
class Anneal(Stage):
    """τ = 1/β with β raised from ``beta0`` to ``beta1`` (``schedule``: geometric or linear in the step)."""

    beta0: float = 1.0
    beta1: float = 200.0
    schedule: str = "geometric"
    name: ClassVar[str] = "anneal"

    def __post_init__(self) -> None:
        if not 0 < self.beta0 <= self.beta1 < math.inf:
            raise ValueError(f"need 0 < beta0 <= beta1 < inf; got beta0={self.beta0}, beta1={self.beta1}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")

    def tau(self, step: int, steps: int) -> float:
        frac = step / max(steps - 1, 1)
        if self.schedule == "geometric":
            beta = self.beta0 * (self.beta1 / self.beta0) ** frac
        else:
            beta = self.beta0 + (self.beta1 - self.beta0) * frac
        return 1.0 / beta


@dataclass(frozen=True)
class Ste(Stage):
    """The hard top-c_u mask forward, the gradient straight through to the scores."""

    name: ClassVar[str] = "ste"

    def tau(self, step: int, steps: int) -> float:
        return math.nan

    def forward_mask(self, scores, tau, state):
        hard = state.topk(scores)
        return state.work.mask.copy_(hard), None, state.budget, hard  # the hard mask meets the budget exactly


STAGES: dict[str, type[Stage]] = {cls.name: cls for cls in (Sigmoid, Anneal, Ste)}


@dataclass
class _StepState:
    """What a stage's forward mask needs across steps: the units, buffers, top-k, θ."""

    segments: Segments
    work: Workspace
    topk: TopK
    budget: float
    theta: torch.Tensor | None = None


@dataclass
class Checks:
    """How a stage keeps its best hard mask (the rule of :func:`run_stage`).

    Attributes:
        full: the objective (lower is better) of a hard bool mask (size,) on all samples.
        screen: its value on a fixed screening subset of the samples (None: ``full``, and
            then no mask is scored twice).
        every: steps between checks (every check also follows the last step).
        finalists: screened masks kept for the final re-scoring on all samples (≥ 1).
        free: ``free(loss, batch)`` → ``full``'s value of the mask whose training loss on
            ``batch`` is ``loss``, or None when the batch is not all the data (in ``"ste"``
            the forward mask is hard, so with full batches every step's mask is scored free).
    """

    full: Callable[[torch.Tensor], float]
    screen: Callable[[torch.Tensor], float] | None = None
    every: int = 10
    finalists: int = 3
    free: Callable[[torch.Tensor, object], float | None] | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or self.finalists < 1:
            raise ValueError(f"need every ≥ 1 and finalists ≥ 1; got {self.every}, {self.finalists}.")


@dataclass
class _KeepBest:
    """The candidates of :class:`Checks`' rule: the best mask scored on all samples, and the
    ``finalists`` distinct masks with the lowest screening values (value, step, mask)."""

    checks: Checks
    best: tuple[float, int, torch.Tensor | None] = (math.inf, -1, None)
    shortlist: list[tuple[float, int, torch.Tensor]] = field(default_factory=list)
    last: torch.Tensor | None = None  # the mask of the previous check
    counts: dict = field(default_factory=lambda: {"screened": 0, "unchanged": 0, "rescored": 0, "free": 0})

    def offer_full(self, value: float, step: int, mask: torch.Tensor) -> None:
        if value < self.best[0]:
            self.best = (value, step, mask)

    def check(self, step: int, mask: torch.Tensor) -> float | None:
        """Score ``mask`` at a check (None when it equals the previous check's mask)."""
        if self.last is not None and torch.equal(mask, self.last):
            self.counts["unchanged"] += 1
            return None
        self.last = mask
        self.counts["screened"] += 1
        if self.checks.screen is None:
            value = self.checks.full(mask)
            self.offer_full(value, step, mask)
            return value
        value = self.checks.screen(mask)
        if any(torch.equal(mask, m) for _, _, m in self.shortlist):
            return value
        self.shortlist.append((value, step, mask))
        self.shortlist.sort(key=lambda c: (c[0], c[1]))
        del self.shortlist[self.checks.finalists:]
        return value

    def result(self) -> tuple[float, int, torch.Tensor | None]:
        """Re-score the shortlist on all samples; the best (value, step, mask) overall."""
        for _, step, mask in sorted(self.shortlist, key=lambda c: c[1]):
            self.counts["rescored"] += 1
            self.offer_full(self.checks.full(mask), step, mask)
        self.shortlist.clear()
        return self.best


@dataclass
class StageResult:
    """Scores after the stage, the best hard mask (bool, size) by :class:`Checks`' rule and
    its ``full`` value, the step it was seen at, per-step history and the check counts
    (``screened``: masks scored at checks; ``unchanged``: checks skipped because the mask
    equalled the previous check's; ``rescored``: finalists scored on all samples; ``free``:
    masks scored free from full-batch training losses)."""

    scores: torch.Tensor
    mask: torch.Tensor
    value: float
    best_step: int
    history: list[dict] = field(default_factory=list)
    checks: dict = field(default_factory=dict)


def run_stage(
    loss_fn: Callable[[tuple[torch.Tensor, ...], object], torch.Tensor],
    scores: torch.Tensor,
    segments: Segments,
    stage: Stage,
    steps: int,
    batches: Iterator,
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    checks: Checks,
    verbose: bool = True,
    weight: torch.Tensor | None = None,
    sizes: Sequence[int] | None = None,
    all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> StageResult:
    """Train ``scores`` (size,) for ``steps`` steps of ``stage``.

    The answer is the best hard mask by this rule: every ``checks.every`` steps and after
    the last step the hard mask P(s) is scored on the screening set (a mask equal to the
    previous check's is not scored again); the ``checks.finalists`` distinct masks with the
    lowest screening values are scored on all samples at the end, together with every mask
    scored free on all samples; the lowest full value wins (the earliest among equals). With
    no screening set (``checks.screen`` None) every check scores on all samples, and the
    answer is the best hard mask of all checks.

    Args:
        loss_fn: ``loss_fn(pieces, batch)`` → scalar loss on ``batch``, where ``pieces`` is
            the flat mask m (size,) ⊙ ``weight`` split by ``sizes`` (or ``(m,)`` without a
            weight); see :func:`masked_product`.
        batches: yields one batch key per step (passed to ``loss_fn``).
        make_optimizer: builds the optimizer over ``[scores]``.
        checks: the hard-mask checks (:class:`Checks`).
        weight: (size,) the weights the mask multiplies (same dtype and device as scores).
        all_sum: sums a tensor over data-parallel ranks in place (an all-reduce), applied
            to the scores' gradient (size,) after each backward pass, before the optimizer
            step, and to the stage's training losses at its end (each rank's loss is its
            share of the global batch's).
    """
    scores = scores.detach().clone().requires_grad_(True)
    opt = make_optimizer([scores])
    work = Workspace.like(scores.detach())
    scores.grad = work.grad
    losses, densities, taus = [], [], []
    keep = _KeepBest(checks)
    topk = TopK(segments)
    state = _StepState(segments, work, topk, float(segments.cap.sum()))
    bar = tqdm(range(steps), desc=stage.name, disable=not verbose, leave=False)
    for step in bar:
        tau = stage.tau(step, steps)
        batch = next(batches)
        m, sig, kept, hard = stage.forward_mask(scores, tau, state)
        densities.append(kept / segments.size)
        loss = loss_fn(masked_product(scores, m, segments, sig, tau, weight, sizes, work), batch)
        free = checks.free(loss.detach(), batch) if hard is not None and checks.free is not None else None
        if free is not None:
            keep.counts["free"] += 1
            keep.offer_full(free, step, hard)
        loss.backward()  # writes the scores' gradient into work.grad
        if all_sum is not None:
            all_sum(work.grad)
        opt.step()
        losses.append(loss.detach())
        taus.append(tau)
        # with free scores the next step scores this mask anyway: check only after the last step
        if step == steps - 1 or (free is None and (step + 1) % checks.every == 0):
            value = keep.check(step, topk(scores))
            if verbose and value is not None:
                bar.set_postfix(loss=f"{float(loss.detach()):.4g}", hard=f"{value:.4g}")
    bar.close()
    best_value, best_step, best_mask = keep.result()
    if best_mask is None:  # steps == 0
        best_mask = segments.project(scores)
        best_value = checks.full(best_mask)
    values = torch.stack(losses) if losses else torch.zeros(0)
    if all_sum is not None and losses:
        all_sum(values)
    hist = [{"stage": stage.name, "step": i, "loss": lv, "density": float(d), "temperature": t}
            for i, (lv, d, t) in enumerate(zip(values.tolist(), densities, taus))]
    return StageResult(scores.detach(), best_mask, best_value, best_step, hist, dict(keep.counts))
