"""Mask-selection problems. Each problem defines its objective once; every solver's answer
is scored by that same definition (:func:`maskopt.evaluate`)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from functools import cached_property

import numpy as np
import torch

from maskopt.budget import Allocation, Budget

LOSSES = ("l1", "l2")


def residual_loss(residual: torch.Tensor, loss: str, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """The loss of a residual tensor: ``"l1"`` = Σ|r|, ``"l2"`` = Σ r² (summed over ``dims``, all by default)."""
    if loss == "l1":
        values = residual.abs()
    elif loss == "l2":
        values = residual.square()
    else:
        raise ValueError(f"Unknown loss {loss!r}; expected one of {LOSSES}.")
    return values.sum() if dims is None else values.sum(dim=dims)


class Problem(abc.ABC):
    """A mask-selection problem: maskable parameter shapes, a budget and an objective."""

    budget: Budget

    @abc.abstractmethod
    def mask_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the maskable parameters, in a fixed order."""

    @abc.abstractmethod
    def objective_tensor(self, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
        """The objective as a differentiable float64 scalar tensor: the network with each
        maskable weight replaced by ``mask ⊙ weight``; ``masks`` may be real-valued (e.g. all
        ones with ``requires_grad`` for connection sensitivity) and ``weights`` replaces the
        problem's fixed weights (default :meth:`weights`)."""

    def objective(self, masks: Mapping[str, torch.Tensor]) -> float:
        """The objective (to minimise) of ``masks``; names and shapes already validated."""
        with torch.no_grad():
            return float(self.objective_tensor(masks))

    @cached_property
    def allocation(self) -> Allocation:
        """The budget resolved against :meth:`mask_shapes`."""
        return self.budget.allocate(self.mask_shapes())

    @abc.abstractmethod
    def weights(self) -> dict[str, torch.Tensor]:
        """The (fixed) values of the maskable parameters, keyed like :meth:`mask_shapes`."""

    def objective_batch(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Objectives ``(B,)`` of a batch of masks ``{name: (B, *shape)}``; the same
        definition as :meth:`objective` (subclasses vectorise it)."""
        batch = next(iter(masks.values())).shape[0]
        return torch.tensor([self.objective({n: m[b] for n, m in masks.items()}) for b in range(batch)],
                            dtype=torch.float64)


def _as_float_tensor(name: str, value, ndim: int | None = None) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"{name} must hold real numbers; got numpy dtype {value.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers; got torch dtype {t.dtype}.")
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor; got {type(value).__name__}.")
    t = t.to(device="cpu", dtype=torch.float64)
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {tuple(t.shape)}.")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return t


class LayerwiseProblem(Problem):
    """Choose a mask of one linear layer so its output matches a target.

    Args:
        inputs: ``(N, in)`` layer inputs.
        weight: ``(out, in)`` weights (``torch.nn.Linear`` layout), fixed.
        target: ``(N, out)`` outputs to match.
        budget: the sparsity budget; the mask is named ``"weight"``.
        loss: ``"l1"`` = Σ|residual| or ``"l2"`` = Σ residual², over all N·out entries.
        bias: optional ``(out,)`` bias, never masked.

    Prediction: ``inputs @ (mask * weight).T + bias``. Arrays may be numpy or torch; they
    are copied to float64 CPU tensors.
    """

    def __init__(self, inputs, weight, target, budget: Budget, loss: str = "l1", bias=None) -> None:
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a maskopt.Budget; got {type(budget).__name__}.")
        if loss not in LOSSES:
            raise ValueError(f"LayerwiseProblem loss must be one of {LOSSES}; got {loss!r}.")
        self.inputs = _as_float_tensor("inputs", inputs, 2)
        self.weight = _as_float_tensor("weight", weight, 2)
        self.target = _as_float_tensor("target", target, 2)
        n, d_in = self.inputs.shape
        d_out = self.weight.shape[0]
        if self.weight.shape[1] != d_in:
            raise ValueError(
                f"weight has shape {tuple(self.weight.shape)} but inputs have {d_in} features; "
                f"weight must be (out, in) = (out, {d_in}) like torch.nn.Linear."
            )
        if tuple(self.target.shape) != (n, d_out):
            raise ValueError(
                f"target must have shape (N, out) = ({n}, {d_out}); got {tuple(self.target.shape)}. "
                "For one output use target.reshape(-1, 1)."
            )
        self.bias = None if bias is None else _as_float_tensor("bias", bias, 1)
        if self.bias is not None and self.bias.shape[0] != d_out:
            raise ValueError(f"bias must have shape (out,) = ({d_out},); got {tuple(self.bias.shape)}.")
        self.budget = budget
        self.loss = loss

    def __repr__(self) -> str:
        n, d_in = self.inputs.shape
        out = self.weight.shape[0]
        return f"LayerwiseProblem(N={n}, in={d_in}, out={out}, loss={self.loss!r}, budget={self.budget})"

    def mask_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": tuple(self.weight.shape)}

    def weights(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight}

    def predict(self, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions ``(..., N, out)`` for a mask ``(..., out, in)`` (optionally batched)
        of ``weight`` (default the problem's)."""
        weight = self.weight if weight is None else weight
        out = torch.einsum("ni,...oi->...no", self.inputs, mask.to(torch.float64) * weight)
        return out if self.bias is None else out + self.bias

    def objective_tensor(self, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
        weight = None if weights is None else weights["weight"]
        return residual_loss(self.predict(masks["weight"], weight) - self.target, self.loss)

    def objective_batch(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Objectives ``(B,)`` of masks ``{"weight": (B, out, in)}``."""
        return residual_loss(self.predict(masks["weight"]) - self.target, self.loss, dims=(-2, -1))
