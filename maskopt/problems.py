"""Mask-selection problems. Each problem defines its objective once; every solver's answer
is scored by that same definition (:func:`maskopt.evaluate`)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from functools import cached_property

import numpy as np
import torch

from maskopt.budget import Allocation, Budget
from maskopt.solvers.losses import Loss, as_loss


class BatchObjective:
    """A problem's objective on minibatches, on one device and dtype: the data plumbing
    around its :class:`~maskopt.solvers.losses.Loss` (which alone defines the value).

    ``at(idx)`` gives ``(x, targets)`` of the problem's samples ``idx`` (None = all);
    ``of_loader(batch)`` those of a loader batch (``x`` or ``(x, y)``), the targets computed by
    ``targets_of(x) -> (target, target_probs)``. ``value(s, targets)`` is the loss of outputs
    ``s`` (N, K); ``batch_value`` the same on the scale of one sample (divided by the batch
    size for a ``"sum"`` loss), the training loss of stochastic methods.
    """

    def __init__(self, loss: Loss, inputs: torch.Tensor, targets: tuple, device=None, dtype=torch.float64,
                 targets_of: Callable | None = None) -> None:
        self.loss, self.device, self.dtype, self.targets_of = loss, device, dtype, targets_of
        self.inputs = inputs.to(device=device, dtype=dtype)
        self.targets = tuple(None if t is None else t.to(device=device, dtype=dtype if t.is_floating_point() else None)
                             for t in targets)

    @property
    def n(self) -> int:
        return int(self.inputs.shape[0])

    def at(self, idx: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
        if idx is None:
            return self.inputs, self.targets
        return self.inputs[idx], tuple(None if t is None else t[idx] for t in self.targets)

    def of_loader(self, batch) -> tuple[torch.Tensor, tuple]:
        x, y = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (tuple, list)) else (batch, None)
        x = x.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            target, probs = self.targets_of(x)
        return x, (target, probs, None if y is None else y.to(self.device).reshape(-1))

    def value(self, s: torch.Tensor, targets: tuple) -> torch.Tensor:
        return self.loss(s, *targets)

    def batch_value(self, s: torch.Tensor, targets: tuple) -> torch.Tensor:
        return self.loss.batch_value(self.loss(s, *targets), s.shape[-2])


class Problem(abc.ABC):
    """A mask-selection problem: maskable parameter shapes, a budget and an objective."""

    budget: Budget
    criterion: Loss  # the loss definition of the objective (maskopt.Loss)

    @property
    def loss(self) -> str:
        """The loss name (``self.criterion.name``)."""
        return self.criterion.name

    @abc.abstractmethod
    def mask_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the maskable parameters, in a fixed order."""

    @abc.abstractmethod
    def objective_tensor(self, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
        """The objective as a differentiable float64 scalar tensor: the network with each
        maskable weight replaced by ``mask ⊙ weight``; ``masks`` may be real-valued (e.g. all
        ones with ``requires_grad`` for connection sensitivity) and ``weights`` replaces the
        problem's fixed weights (default :meth:`weights`). The problems of maskopt define it
        as ``objective_fn()`` (CPU, float64)."""

    def objective_fn(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
                     ) -> Callable[..., torch.Tensor]:
        """:meth:`objective_tensor` as a closure ``f(masks, weights=None)`` computing on
        ``device`` (None: the CPU) in ``dtype``, with the problem's data copied there once:
        ``masks`` (any device, any real dtype) are moved to the weights; given ``weights``
        must already lie on ``device`` in ``dtype``. This base version computes on the CPU
        in float64 only (a problem that can compute elsewhere overrides it)."""
        dev = torch.device("cpu") if device is None else torch.device(device)
        if dev.type != "cpu" or dtype != torch.float64:
            raise ValueError(f"{type(self).__name__} computes its objective on the CPU in float64 only; got "
                             f"device={str(dev)!r}, dtype={dtype}. Run the method with device='cpu'.")
        return self.objective_tensor

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
        loss: ``"l1"`` = Σ|residual| or ``"l2"`` = Σ residual², over all N·out entries (a name
            or a :class:`~maskopt.Loss`).
        bias: optional ``(out,)`` bias, never masked.

    Prediction: ``inputs @ (mask * weight).T + bias``. Arrays may be numpy or torch; they
    are copied to float64 CPU tensors.
    """

    def __init__(self, inputs, weight, target, budget: Budget, loss: str | Loss = "l1", bias=None) -> None:
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a maskopt.Budget; got {type(budget).__name__}.")
        criterion = as_loss(loss)
        criterion.check_problem("layerwise")
        if criterion.alpha > 0:
            raise ValueError("a LayerwiseProblem has no labels: its loss takes no cross-entropy term (alpha=0).")
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
        self.budget, self.criterion = budget, criterion

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
        return _predict(self.inputs, self.weight if weight is None else weight, self.bias, mask)

    def objective_tensor(self, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
        return self.objective_fn()(masks, weights)

    def objective_fn(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
                     ) -> Callable[..., torch.Tensor]:
        """The objective ``f(masks, weights=None)`` on ``device``/``dtype`` (see
        :meth:`Problem.objective_fn`): the criterion of :meth:`predict`'s predictions and the
        target, both computed there."""
        x, w, y = (t.to(device=device, dtype=dtype) for t in (self.inputs, self.weight, self.target))
        b = None if self.bias is None else self.bias.to(device=device, dtype=dtype)

        def objective(masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
                      ) -> torch.Tensor:
            return self.criterion(_predict(x, w if weights is None else weights["weight"], b, masks["weight"]), y)

        return objective

    def objective_batch(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Objectives ``(B,)`` of masks ``{"weight": (B, out, in)}``."""
        return self.criterion(self.predict(masks["weight"]), self.target)

    def batch_objective(self, device=None, dtype=torch.float64) -> BatchObjective:
        """The objective on minibatches on ``device``/``dtype``; outputs are :meth:`predict`'s."""
        return BatchObjective(self.criterion, self.inputs, (self.target, None, None), device, dtype)


def _predict(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """``x @ (mask ⊙ weight)ᵀ + bias``: x (N, in), weight (out, in), mask (..., out, in) → (..., N, out),
    in the weight's dtype on its device."""
    out = torch.einsum("ni,...oi->...no", x, mask.to(device=weight.device, dtype=weight.dtype) * weight)
    return out if bias is None else out + bias
