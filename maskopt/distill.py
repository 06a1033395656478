"""Distilling a teacher ensemble into a masked student at its initialization."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from maskopt.budget import Budget
from maskopt.problems import BatchObjective, Problem, _as_float_tensor
from maskopt.solvers.losses import Loss, as_loss


class DistillProblem(Problem):
    """Choose a mask of ``student`` so that it imitates the ensemble of ``teachers``.

    Args:
        student: an ``nn.Module`` at its initialization; its weights stay fixed (a float64
            copy is kept; the module itself is never modified).
        teachers: one or more modules (any architectures) mapping ``inputs`` to logits
            of the student's output shape.
        inputs: ``(N, ...)`` the samples, numpy or torch.
        budget: the sparsity budget over the maskable parameters.
        loss: a name or a :class:`~maskopt.Loss`; with s = student logits (N, K) and t = the
            ensemble target (N, K):
            ``"l1"`` = Σ|s − t|, ``"linf"`` = max |s − t| (over all samples and logits),
            ``"l2"`` = Σ (s − t)², ``"kl"`` = T² · Σ_n KL(p_t ‖ softmax(s_n / T)) with
            p_t the weighted mean of the teachers' softmax(logits / T) (Hinton et al.).
            For l1/linf/l2 the target t is the weighted mean of the teachers' logits.
        temperature: T of ``"kl"`` (> 0).
        labels: ``(N,)`` class indices; with ``alpha`` > 0 the objective becomes
            ``(1 − alpha)·loss + alpha·Σ_n CE(s_n, labels_n)``.
        alpha: weight of the cross-entropy term, in [0, 1].
        teacher_weights: non-negative weights of the teachers (normalised to sum 1);
            default equal.
        params: names of the maskable parameters (``state_dict`` names, e.g.
            ``"0.weight"``); default: the weights of every Linear and Conv layer.

    The objective is computed by a float64 torch forward pass of the masked student
    (:meth:`objective`), the one definition every method is scored by. The teachers are
    kept as float64 eval-mode copies (``teachers``) so methods can compute targets of new
    inputs (e.g. a DataLoader); ``target``/``target_probs`` cache them for ``inputs``.
    """

    def __init__(
        self,
        student: nn.Module,
        teachers: nn.Module | Sequence[nn.Module],
        inputs,
        budget: Budget,
        loss: str | Loss = "l1",
        temperature: float = 1.0,
        labels=None,
        alpha: float = 0.0,
        teacher_weights: Sequence[float] | None = None,
        params: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be a torch.nn.Module; got {type(student).__name__}.")
        teachers = [teachers] if isinstance(teachers, nn.Module) else list(teachers)
        if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
            raise TypeError("teachers must be a non-empty list of torch.nn.Module.")
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a maskopt.Budget; got {type(budget).__name__}.")
        criterion = as_loss(loss, temperature, alpha)
        criterion.check_problem("distill")
        if criterion.needs_labels and labels is None:
            raise ValueError("alpha > 0 mixes in cross-entropy, which needs labels=.")
        self.student = copy.deepcopy(student).double().eval()
        for p in self.student.parameters():
            p.requires_grad_(False)
        self.inputs = _as_float_tensor("inputs", inputs)
        if self.inputs.ndim < 2:
            raise ValueError(f"inputs must be (N, ...) with a sample dimension; got shape {tuple(self.inputs.shape)}.")
        n = self.inputs.shape[0]
        w = np.ones(len(teachers)) if teacher_weights is None else np.asarray(teacher_weights, dtype=float)
        if w.shape != (len(teachers),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"teacher_weights must be {len(teachers)} non-negative numbers with a positive sum; got {w.tolist()}."
            )
        self.teacher_weights = torch.as_tensor(w / w.sum(), dtype=torch.float64)
        self.criterion, self.budget = criterion, budget
        with torch.no_grad():
            s_out = self.student(self.inputs)
            if s_out.ndim != 2 or s_out.shape[0] != n:
                raise ValueError(f"the student must map (N, ...) inputs to (N, K) logits; got {tuple(s_out.shape)}.")
            logits, teacher_copies = [], []
            for i, t in enumerate(teachers):
                teacher_copies.append(copy.deepcopy(t).double().eval())
                out = teacher_copies[-1](self.inputs)
                if tuple(out.shape) != tuple(s_out.shape):
                    raise ValueError(
                        f"teacher {i} outputs shape {tuple(out.shape)}; the student outputs {tuple(s_out.shape)}."
                    )
                logits.append(out)
        self.teachers = teacher_copies
        self.target, self.target_probs = ensemble_targets(torch.stack(logits), self.teacher_weights, self.temperature)
        self.labels = None
        if labels is not None:
            lab = torch.as_tensor(labels).reshape(-1)
            if lab.shape[0] != n or lab.dtype.is_floating_point or lab.dtype == torch.bool:
                raise ValueError(f"labels must be ({n},) integer class indices; got {tuple(lab.shape)} {lab.dtype}.")
            if int(lab.min()) < 0 or int(lab.max()) >= s_out.shape[1]:
                raise ValueError(f"labels must lie in [0, {s_out.shape[1]}).")
            self.labels = lab.to(torch.int64)
        named = dict(self.student.named_parameters())
        if params is None:  # every Linear/Conv weight, once each (a tied weight under its named_parameters name)
            name_of = parameter_names(self.student)
            params = list(dict.fromkeys(
                name_of[id(mod.weight)] for mod in self.student.modules()
                if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
            ))
        unknown = [p for p in params if p not in named]
        if unknown:
            raise ValueError(f"params {unknown} are not parameters of the student; its parameters: {list(named)}.")
        if not params:
            raise ValueError("No maskable parameters: the student has no Linear/Conv layer; name them with params=.")
        self.params = list(params)
        self._weights = {p: named[p].detach() for p in self.params}

    def __repr__(self) -> str:
        return (f"DistillProblem(N={self.inputs.shape[0]}, params={self.params}, loss={self.loss!r}, "
                f"budget={self.budget})")

    @property
    def temperature(self) -> float:
        return self.criterion.temperature

    @property
    def alpha(self) -> float:
        return self.criterion.alpha

    def mask_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p: tuple(w.shape) for p, w in self._weights.items()}

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(self._weights)

    def logits(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(N, K)`` float64 logits of the student with ``masks`` applied."""
        with torch.no_grad():
            return self._forward(masks)

    def _forward(self, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None,
                 student: nn.Module | None = None, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of ``student`` (default the problem's float64 copy) on ``inputs`` (default the
        problem's) with each maskable weight replaced by ``mask ⊙ weight``."""
        weights = self._weights if weights is None else weights
        masked = {p: weights[p] * masks[p].to(device=weights[p].device, dtype=weights[p].dtype)
                  for p in self._weights}
        return functional_call(self.student if student is None else student, masked,
                               (self.inputs if inputs is None else inputs,))

    def objective_tensor(self, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
        return self.objective_fn()(masks, weights)

    def objective_fn(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
                     ) -> Callable[..., torch.Tensor]:
        """The objective ``f(masks, weights=None)`` on ``device``/``dtype`` (see
        :meth:`Problem.objective_fn`): :meth:`loss_of_logits` of the masked student's logits;
        elsewhere than the CPU in float64 a copy of the student and the data are moved there."""
        dev = torch.device("cpu") if device is None else torch.device(device)
        if dev.type == "cpu" and dtype == torch.float64:  # the problem's own tensors, no copy
            return lambda masks, weights=None: self.loss_of_logits(self._forward(masks, weights))
        student = self.student_on(dev, dtype)
        fixed = {p: w.to(device=dev, dtype=dtype) for p, w in self._weights.items()}
        obj = self.batch_objective(dev, dtype)

        def objective(masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
                      ) -> torch.Tensor:
            logits = self._forward(masks, fixed if weights is None else weights, student, obj.inputs)
            return obj.value(logits, obj.targets)

        return objective

    def student_on(self, device: torch.device | str, dtype: torch.dtype = torch.float64) -> nn.Module:
        """The problem's eval-mode student (weights frozen) on ``device`` in ``dtype``: itself
        on the CPU in float64, else a copy."""
        dev = torch.device(device)
        if dev.type == "cpu" and dtype == torch.float64:
            return self.student
        return copy.deepcopy(self.student).to(device=dev, dtype=dtype)

    def loss_of_logits(self, s: torch.Tensor) -> torch.Tensor:
        """The objective of student logits ``s`` (N, K) (or a batch (B, N, K) → (B,))."""
        return self.criterion(s, self.target, self.target_probs, self.labels)

    def batch_objective(self, device=None, dtype=torch.float64) -> BatchObjective:
        """The objective on minibatches on ``device``/``dtype``: of the problem's samples (cached
        targets) or of a loader's inputs (targets from copies of the teachers on ``device``)."""
        teachers = []

        def targets_of(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if not teachers:
                teachers.extend(copy.deepcopy(t).to(device=device, dtype=dtype) for t in self.teachers)
            return ensemble_targets(torch.stack([t(x) for t in teachers]), self.teacher_weights, self.temperature)

        return BatchObjective(self.criterion, self.inputs, (self.target, self.target_probs, self.labels), device,
                              dtype, targets_of)

    def objective_batch(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Objectives ``(B,)`` of a batch of masks ``{name: (B, *shape)}`` (vectorised with vmap)."""
        with torch.no_grad():
            logits = torch.vmap(self._forward)(dict(masks))
        return self.loss_of_logits(logits)


def parameter_names(module: nn.Module) -> dict[int, str]:
    """``id(tensor)`` → the name ``module.named_parameters()`` gives it (the first of its names,
    for a tensor that is tied or sits in a module used twice)."""
    names: dict[int, str] = {}
    for name, tensor in module.named_parameters(remove_duplicate=False):
        names.setdefault(id(tensor), name)
    return names


def ensemble_targets(logits: torch.Tensor, weights: torch.Tensor,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ensemble target of teacher logits ``(teachers, N, K)`` with ``weights`` (teachers,)
    summing to 1: (weighted mean of logits, weighted mean of softmax(logits / T)), each (N, K)."""
    wts = weights.to(logits).reshape(-1, 1, 1)
    return (wts * logits).sum(0), (wts * torch.softmax(logits / temperature, dim=-1)).sum(0)
