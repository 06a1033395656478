"""The losses of mask-selection objectives, defined once.

A loss compares outputs ``s`` with targets ``t`` over the last two dimensions (samples N ×
outputs K); leading dimensions are a batch of masks. Every consumer takes its value from
here: ``maskopt.evaluate`` and the problems' objectives, the relaxations, the baselines'
training losses and the exact solvers' checks of their answers. The exact encodings are
declared here too (which MILP form exists for which problem kind); the builders that
implement them look them up by loss name and refuse a name they do not have.

Adding a loss: one :class:`LossKind` in :data:`KINDS` (plus, optionally, its MILP encoding
in ``solvers/exact``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

REDUCTIONS = ("sum", "max")
PROBLEM_KINDS = ("layerwise", "distill")
ENCODINGS = ("milp", "oa")  # exact linear MILP; outer approximation of a convex loss (cuts in a MILP loop)


@dataclass(frozen=True)
class LossKind:
    """What a loss is: its formula, how sample terms combine (``reduce``: ``"sum"`` or
    ``"max"``; minibatch values of a ``"sum"`` loss are divided by the batch size), the problem
    kinds that take it and their exact encodings (problem kind -> ``"milp"``/``"oa"``)."""

    name: str
    formula: str
    reduce: str
    problems: tuple[str, ...]
    encodings: Mapping[str, str] = field(default_factory=dict)
    entry: Callable | None = None  # elementwise term of s − t (numpy or torch); None when not a residual loss


KINDS: dict[str, LossKind] = {k.name: k for k in (
    LossKind("l1", "Σ|s − t|", "sum", ("layerwise", "distill"), {"layerwise": "milp", "distill": "milp"}, abs),
    LossKind("l2", "Σ (s − t)²", "sum", ("layerwise", "distill"), {"layerwise": "oa"}, lambda d: d * d),
    LossKind("linf", "max |s − t| over all samples and outputs", "max", ("distill",), {"distill": "milp"}, abs),
    LossKind("kl", "T² · Σ_n KL(p_t,n ‖ softmax(s_n / T))", "sum", ("distill",)),
)}


def loss_kind(name: str) -> LossKind:
    """The :class:`LossKind` called ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    if name not in KINDS:
        raise ValueError(f"Unknown loss {name!r}; valid losses: "
                         + ", ".join(f"{k} ({v.formula})" for k, v in KINDS.items()) + ".")
    return KINDS[name]


@dataclass(frozen=True)
class Loss:
    """A loss with its settings: ``temperature`` T of ``"kl"`` (> 0) and ``alpha`` ∈ [0, 1],
    the weight of a cross-entropy term on labels: value = (1 − alpha)·loss + alpha·Σ_n CE(s_n, y_n)
    (the cross-entropy is summed over samples whatever ``reduce`` is).

    ``Loss("l1")(s, t)`` with ``s``, ``t`` of shape (..., N, K) returns shape (...).
    """

    name: str = "l1"
    temperature: float = 1.0
    alpha: float = 0.0

    def __post_init__(self) -> None:
        loss_kind(self.name)
        if not 0 < self.temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number > 0; got {self.temperature}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1]; got {self.alpha}.")

    @property
    def kind(self) -> LossKind:
        return KINDS[self.name]

    @property
    def reduce(self) -> str:
        """How sample terms (and minibatches) combine: ``"sum"`` or ``"max"``."""
        return self.kind.reduce

    @property
    def needs_labels(self) -> bool:
        return self.alpha > 0

    def encoding(self, problem: str) -> str | None:
        """The exact encoding of this loss for a problem kind (``"layerwise"``/``"distill"``):
        ``"milp"``, ``"oa"`` or None (no exact solver; a cross-entropy term has none)."""
        return None if self.alpha > 0 else self.kind.encodings.get(problem)

    def check_problem(self, problem: str) -> None:
        """Raise ``ValueError`` unless the problem kind takes this loss."""
        takes = [k for k, v in KINDS.items() if problem in v.problems]
        if problem not in self.kind.problems:
            raise ValueError(f"{problem} problems take losses {takes}; got {self.name!r}.")

    def __call__(self, s, target, target_probs: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        """The loss of outputs ``s`` (..., N, K) against ``target`` (N, K) (``target_probs``
        (N, K) for ``"kl"``, ``labels`` (N,) when alpha > 0), reduced over the last two
        dimensions. Residual losses (l1, l2, linf) also take numpy arrays."""
        dims = (-2, -1)
        if self.kind.entry is not None:
            terms = self.kind.entry(s - target)
            if self.reduce == "sum":
                value = terms.sum(dims)
            else:
                value = terms.amax(dims) if isinstance(terms, torch.Tensor) else np.max(terms, axis=dims, initial=0.0)
        else:
            logp = torch.log_softmax(s / self.temperature, dim=-1)
            q = target_probs
            kl = torch.where(q > 0, q * (torch.log(q.clamp_min(torch.finfo(q.dtype).tiny)) - logp),
                             torch.zeros_like(logp))
            value = self.temperature**2 * kl.sum(dims)
        if self.alpha > 0:
            if labels is None:
                raise ValueError("alpha > 0 mixes in cross-entropy, which needs labels: pass labels= to the "
                                 "problem, or use a loader that yields (inputs, labels) batches.")
            ce = -torch.log_softmax(s, dim=-1).gather(-1, labels.expand(*s.shape[:-1]).unsqueeze(-1)).sum(dims)
            value = (1 - self.alpha) * value + self.alpha * ce
        return value

    def batch_value(self, value, n: int):
        """A minibatch's value on the scale of one sample: ``value / n`` for a ``"sum"`` loss,
        ``value`` for a ``"max"`` loss (stochastic steps see comparable magnitudes)."""
        return value / n if self.reduce == "sum" else value

    def full_value(self, batch_values: list):
        """The value on all data from the values of disjoint batches (unscaled): their sum or maximum.
        Exact only without a cross-entropy term when ``reduce`` is ``"max"``; callers with
        alpha > 0 and a max loss evaluate all outputs at once (:attr:`combines_by_batch`)."""
        return sum(batch_values) if self.reduce == "sum" else max(batch_values)

    @property
    def combines_by_batch(self) -> bool:
        """Whether :meth:`full_value` of per-batch values equals the value on all data."""
        return self.reduce == "sum" or self.alpha == 0


def as_loss(loss: str | Loss, temperature: float = 1.0, alpha: float = 0.0) -> Loss:
    """A :class:`Loss` from a name and settings, or ``loss`` itself (then the settings must be
    left at their defaults)."""
    if isinstance(loss, Loss):
        if (temperature, alpha) != (1.0, 0.0):
            raise ValueError("pass temperature/alpha inside the Loss (Loss(name, temperature=, alpha=)), "
                             "not beside it.")
        return loss
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a name ({', '.join(KINDS)}) or a maskopt.Loss; got {type(loss).__name__}.")
    return Loss(loss, float(temperature), float(alpha))
