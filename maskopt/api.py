"""The solver registry, ``solve()``, ``evaluate()`` and the result type.

A method is a function ``fn(problem, options) -> MethodOutput`` registered under a name
with an options dataclass (defaults are no-ops; a subclass of :class:`CommonOptions`, so every
method takes ``device``, ``seed`` and ``verbose``), the problem types and the devices it
accepts. ``solve`` validates the options, refuses a device the method does not run on, runs
the method, checks the mask against the budget and scores it with :func:`evaluate`, the one
definition of the objective.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from maskopt.device import DEVICE_TYPES, device_type, resolve_device
from maskopt.masks import MaskSet
from maskopt.problems import Problem
from maskopt.solvers.exact.highs import bound_tolerance, gap_met

STATUSES = ("optimal", "time_limit", "node_limit", "numerical", "gap_limit", "feasible")


class CertificateError(RuntimeError):
    """A method's certificate is contradicted: its proven lower bound lies above a feasible
    objective by more than the solver tolerances allow, or the method values its own mask
    differently from :func:`evaluate`. Either is a bug (in maskopt or the solver), never a
    result: report it with the message."""


@dataclass
class MethodOutput:
    """What a registered method returns; ``solve`` turns it into a :class:`SolveResult`.

    ``bound`` is the raw proven lower bound (never clamped by the method); ``objective`` the
    method's own value of ``masks`` (checked against :func:`evaluate`); ``gap`` the relative
    gap that ``status="optimal"`` promises (checked against the final objective and bound).
    """

    masks: Mapping[str, torch.Tensor]
    status: str = "feasible"
    bound: float | None = None
    history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    objective: float | None = None
    gap: float | None = None


@dataclass
class SolveResult:
    """The answer of :func:`solve`.

    Attributes:
        masks: the mask, within the problem's budget.
        objective: ``evaluate(problem, masks)``.
        bound: a proven lower bound on the optimal objective (exact methods), else None.
        gap: ``relative_gap(objective, bound)``, None without a bound.
        status: ``"optimal"`` (proven: the final gap is within the requested one, up to
            :func:`bound_tolerance`), ``"time_limit"`` / ``"node_limit"`` (stopped by the
            time or node limit; masks is the incumbent, bound still valid), ``"numerical"``
            (the solver stopped but its bound misses the requested gap through solver
            tolerances; bound still valid, ``gap`` is what was reached), ``"gap_limit"`` (the
            method ran to its end and its bound leaves this gap, which more time would not
            close: the decomposition of a layer budget over rows after its last round; bound
            still valid) or ``"feasible"`` (a mask within budget, no optimality claim).
        method: the registered method name. time: wall-clock seconds of the whole call.
        history: per-iteration records (method specific). stats: solver statistics; with a
            bound, ``stats["bound_raw"]`` is the bound as the method proved it and
            ``stats["bound_rounded"]`` how much it was lowered to the objective (within
            tolerance; 0.0 when it was not).
    """

    masks: MaskSet
    objective: float
    bound: float | None
    gap: float | None
    status: str
    method: str
    time: float
    history: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """A flat dict of the scalar fields (for tables and JSON)."""
        return {
            "method": self.method,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "status": self.status,
            "time": self.time,
            "density": self.masks.density,
        }


def relative_gap(objective: float, bound: float | None) -> float | None:
    """``(objective − bound) / |objective|``; 0 when they meet, None without a bound.

    (The HiGHS/Gurobi convention. An objective of 0 with a bound of 0 has gap 0.)
    """
    if bound is None:
        return None
    diff = objective - bound
    if diff <= 1e-12 * max(1.0, abs(objective)):
        return 0.0
    return diff / max(abs(objective), 1e-12)


FAMILIES = ("exact", "relaxation", "one-shot", "training")


@dataclass(frozen=True, kw_only=True)
class CommonOptions:
    """The options every registered method takes (its options dataclass subclasses this one;
    the three are keyword-only, so they never shift a subclass's positional fields).

    Attributes:
        device: where the method computes: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``
            (CUDA when it is available and the method runs there, else the CPU). A method runs
            on the devices its registration lists (:attr:`MethodSpec.devices`); :func:`solve`
            refuses any other before running. Masks come back as CPU bool tensors whatever
            the device.
        seed: seeds every random choice the method makes (an integer ≥ 0). A deterministic
            method accepts it and ignores it (its registration says ``uses_seed=False``).
        verbose: progress bars (tqdm) or the solver's log; a method that finishes at once
            shows nothing.

    :func:`solve` records the device the method ran on and the seed in ``res.stats``
    (``"device"``, ``"seed"``). A method may give ``device`` or ``verbose`` another default
    by redeclaring the field (the relaxations show progress bars by default).
    """

    device: str = "cpu"
    seed: int = 0
    verbose: bool = False

    def __post_init__(self) -> None:
        device_type(self.device)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0; got {self.seed!r}.")


COMMON_OPTIONS = tuple(f.name for f in dataclasses.fields(CommonOptions))


@dataclass(frozen=True)
class MethodSpec:
    """A registered method and what it can take.

    Attributes:
        fn, options: the function and its options dataclass. summary: one line.
        family: one of :data:`FAMILIES` (exact: proven bounds; relaxation: trained mask
            scores; one-shot: scores from the weights or one gradient; training: masks found
            by training the network).
        problems: the problem types it takes. losses: the loss names it takes (None: any).
        scopes: the budget scopes it takes (None: any).
        check: further conditions, ``check(problem) -> reason or None`` (e.g. an exact
            solver's size guard at its default options).
        devices: the device types it runs on, ``("cpu",)`` or ``("cpu", "cuda")``.
        device_reason: why it runs on no other device (shown when one is refused).
        uses_seed: whether its result depends on the ``seed`` option (:func:`compare` runs
            it once per seed only then).
    """

    name: str
    fn: Callable[[Problem, object], MethodOutput]
    options: type
    problems: tuple[type, ...]
    summary: str
    family: str
    losses: tuple[str, ...] | None = None
    scopes: tuple[str, ...] | None = None
    check: Callable[[Problem], str | None] | None = None
    devices: tuple[str, ...] = ("cpu",)
    device_reason: str = ""
    uses_seed: bool = True

    @property
    def option_names(self) -> set[str]:
        """The names of the options it takes (the fields of its options dataclass)."""
        return {f.name for f in dataclasses.fields(self.options)}

    def runs_on(self, device: str) -> bool:
        """Whether the method takes the ``device`` option value (``"auto"`` always: it picks
        a device the method runs on)."""
        kind = device_type(device)
        return kind == "auto" or kind in self.devices

    def resolve_device(self, device: str) -> torch.device:
        """The torch device the method runs on for the ``device`` option: ``"auto"`` is
        CUDA when available and listed in :attr:`devices`, else the CPU. A device of a type
        the method does not list raises ValueError (why, and what to use) whether or not
        that device exists here; ``"cuda"`` without CUDA raises ValueError too."""
        if not self.runs_on(device):
            why = f" ({self.device_reason})" if self.device_reason else ""
            kind = device_type(device)
            others = [m for m in methods() if kind in _REGISTRY[m].devices]
            raise ValueError(
                f"Method {self.name!r} runs on {' and '.join(self.devices)} only{why}; got device={device!r}. "
                f"Use device='cpu' with it, or a method that runs on {kind}: {', '.join(others) or 'none'}. "
                f"(compare(..., device={device!r}) runs such methods on the CPU and says so in its rows.)")
        if device_type(device) == "auto" and "cuda" not in self.devices:
            return torch.device("cpu")
        return resolve_device(device)

    def refusal(self, problem: Problem, deep: bool = True) -> str | None:
        """Why the method cannot take ``problem`` (None when it can); ``deep=False`` checks
        the declared problem types, losses and scopes only, not :attr:`check`."""
        if not isinstance(problem, self.problems):
            takes = ", ".join(t.__name__ for t in self.problems)
            return f"Method {self.name!r} does not take a {type(problem).__name__}; it takes {takes}."
        loss = getattr(problem, "criterion", None)
        if self.losses is not None and loss is not None and loss.name not in self.losses:
            return f"Method {self.name!r} takes losses {list(self.losses)}; the problem's loss is {loss.name!r}."
        if self.scopes is not None and problem.budget.scope not in self.scopes:
            return (f"Method {self.name!r} takes budget scopes {list(self.scopes)}; the problem's budget has "
                    f"scope {problem.budget.scope!r}.")
        return self.check(problem) if deep and self.check is not None else None

    def accepts(self, problem: Problem) -> bool:
        """Whether the method can take ``problem`` at its default options."""
        return self.refusal(problem) is None


_REGISTRY: dict[str, MethodSpec] = {}


MethodFn = Callable[[Problem, object], MethodOutput]


def register(name: str, *, options: type, problems: tuple[type, ...], summary: str, family: str,
             losses: tuple[str, ...] | None = None, scopes: tuple[str, ...] | None = None,
             check: Callable[[Problem], str | None] | None = None, devices: tuple[str, ...] = ("cpu",),
             device_reason: str = "", uses_seed: bool = True) -> Callable[[MethodFn], MethodFn]:
    """Decorator registering ``fn(problem, options) -> MethodOutput`` under ``name``; the
    keywords are the fields of :class:`MethodSpec`. ``options`` must have the fields of
    :class:`CommonOptions` (subclass it); ``devices`` must include ``"cpu"``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")
    missing = [f for f in COMMON_OPTIONS if f not in {g.name for g in dataclasses.fields(options)}]
    if missing:
        raise TypeError(f"The options of method {name!r} lack {missing}: subclass maskopt.api.CommonOptions "
                        "(device, seed, verbose), which every method takes.")
    devices = tuple(devices)
    if "cpu" not in devices or not set(devices) <= set(DEVICE_TYPES):
        raise ValueError(f"devices must include 'cpu' and list only {DEVICE_TYPES}; got {devices!r}.")

    def deco(fn: MethodFn) -> MethodFn:
        if name in _REGISTRY:
            raise ValueError(f"A method named {name!r} is already registered.")
        _REGISTRY[name] = MethodSpec(name=name, fn=fn, options=options, problems=problems, summary=summary,
                                     family=family, losses=losses, scopes=scopes, check=check, devices=devices,
                                     device_reason=device_reason, uses_seed=uses_seed)
        return fn

    return deco


# the modules that register maskopt's methods
_BUILTIN = ("maskopt.baselines", "maskopt.exact", "maskopt.posttrain", "maskopt.relax", "maskopt.sparse_training")


def _registry() -> dict[str, MethodSpec]:
    """The registry, with maskopt's own methods loaded (their modules register on import)."""
    for module in _BUILTIN:
        importlib.import_module(module)
    return _REGISTRY


def methods(family: str | None = None, problem: Problem | None = None) -> list[str]:
    """Names of the registered methods, sorted; only those of ``family`` and only those
    that accept ``problem`` (:meth:`MethodSpec.accepts`) when given."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")
    return sorted(name for name, spec in _registry().items()
                  if (family is None or spec.family == family) and (problem is None or spec.accepts(problem)))


def method_spec(name: str) -> MethodSpec:
    """The registration of ``name``; an unknown name lists the registered ones."""
    _registry()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown method {name!r}. Registered methods: {', '.join(methods())}.") from None


def evaluate(problem: Problem, masks: Mapping[str, torch.Tensor]) -> float:
    """The objective of ``masks`` on ``problem``: the single definition every method is scored by.

    The masks must have exactly the problem's maskable names and shapes (the budget is not
    checked here, so any mask can be scored).
    """
    ms = masks if isinstance(masks, MaskSet) else MaskSet(masks)
    ms.check_shapes(problem.mask_shapes())
    return problem.objective(ms)


def make_options(spec: MethodSpec, options: Mapping[str, object]) -> object:
    """Build ``spec``'s options dataclass; unknown names list the valid ones."""
    valid = [f.name for f in dataclasses.fields(spec.options)]
    unknown = [k for k in options if k not in valid]
    if unknown:
        own = [k for k in valid if k not in COMMON_OPTIONS]
        raise TypeError(f"Unknown option(s) {unknown} for method {spec.name!r}; valid options: {own or 'none'} "
                        f"and the common options {list(COMMON_OPTIONS)}.")
    hints = _type_hints(spec.options)
    for key, value in options.items():
        _check_kind(spec.name, key, value, hints[key])
    return spec.options(**options)


_type_hints = functools.cache(typing.get_type_hints)  # an options class's resolved annotations, once


def _check_kind(method: str, key: str, value: object, hint: object) -> None:
    """Refuse a value of the wrong kind for a bool, mapping or iterable option (e.g. from a
    TOML config), which would otherwise be read as true or fail deep inside the method."""
    kinds = {typing.get_origin(a) or a for a in (typing.get_args(hint) or (hint,))}
    where = f"Option {key!r} of method {method!r}"
    if hint is bool and not isinstance(value, (bool, np.bool_)):  # "no" would read as true
        raise TypeError(f"{where} must be True or False; got {value!r}.")
    if value is None:
        return
    if any(k in (str, int, float) and isinstance(value, k) for k in kinds):
        return  # a plain value of a kind the option also takes (e.g. a method name where a mask is allowed)
    if Mapping in kinds and not isinstance(value, Mapping):
        raise TypeError(f"{where} must map parameter names to tensors (e.g. a MaskSet); got {value!r}.")
    iterable = any(isinstance(k, type) and issubclass(k, Iterable) and not issubclass(k, (str, bytes, Mapping))
                   for k in kinds)  # e.g. a loader or a schedule
    if iterable and isinstance(value, (str, bytes, Mapping)):
        raise TypeError(f"{where} must be a sequence or a loader of batches, not a {type(value).__name__}; "
                        f"got {value!r}.")


def solve(problem: Problem, method: str = "exact", **options) -> SolveResult:
    """Find a mask for ``problem`` with the registered ``method``.

    Every method takes the :class:`CommonOptions` ``device``, ``seed`` and ``verbose``;
    ``res.stats["device"]`` is the device it ran on, ``res.stats["seed"]`` the seed.

    Raises ValueError for an unknown method, TypeError for an unknown option, and
    ValueError when the method cannot take this kind of problem or does not run on
    ``device`` (before running).
    """
    spec = method_spec(method)
    reason = spec.refusal(problem, deep=False)
    if reason is not None:
        others = [m for m in methods() if _REGISTRY[m].refusal(problem, deep=False) is None]
        raise ValueError(f"{reason} Methods for this problem: {', '.join(others) or 'none'}.")
    default = next(f.default for f in dataclasses.fields(spec.options) if f.name == "device")
    device = spec.resolve_device(options.get("device", default))  # before the options class sees it
    opts = make_options(spec, options)
    t0 = time.perf_counter()
    out = spec.fn(problem, opts)
    elapsed = time.perf_counter() - t0
    if out.status not in STATUSES:
        raise RuntimeError(f"Method {method!r} returned unknown status {out.status!r}.")
    masks = MaskSet(out.masks, method=method, budget=problem.budget)
    masks.check_shapes(problem.mask_shapes())
    bad = problem.allocation.violations(masks)
    if bad:
        raise RuntimeError(f"Method {method!r} returned a mask over budget ({bad[0]}); this is a bug.")
    objective = evaluate(problem, masks)
    stats = {"device": str(device), "seed": opts.seed, **out.stats}
    if out.objective is not None and not abs(out.objective - objective) <= bound_tolerance(objective):
        raise CertificateError(
            f"Method {method!r} values its mask at {out.objective!r} but evaluate() gives {objective!r} (tolerance "
            f"{bound_tolerance(objective):.3g}): the solver and the problem disagree on the objective; this is a bug."
        )
    bound, status = None, out.status
    if out.bound is not None:
        bound, rounded = checked_bound(method, objective, float(out.bound))
        stats.update(bound_raw=float(out.bound), bound_rounded=rounded)
        status = proven_status(method, out.status, objective, bound, out.gap)
        if status != out.status:
            stats["status_reported"] = out.status  # what the method claimed before the check
    return SolveResult(
        masks=masks,
        objective=objective,
        bound=bound,
        gap=relative_gap(objective, bound),
        status=status,
        method=method,
        time=elapsed,
        history=list(out.history),
        stats=stats,
    )


def checked_bound(method: str, objective: float, bound: float) -> tuple[float, float]:
    """``(bound to report, how much it was lowered)`` for a raw proven ``bound`` and the
    feasible ``objective`` of a mask: a bound above the objective by more than
    :func:`bound_tolerance` raises :class:`CertificateError`; one above it within the
    tolerance is reported as the objective (solver tolerances, not a better bound)."""
    excess = bound - objective
    if not excess <= bound_tolerance(objective):  # also catches NaN
        raise CertificateError(
            f"Method {method!r} proved a lower bound {bound!r} above the objective {objective!r} of a mask within "
            f"the budget (by {excess:.6g}; tolerance {bound_tolerance(objective):.3g} = BOUND_ATOL + "
            "BOUND_RTOL·|objective|): the certificate is wrong; this is a bug in the solver or its encoding."
        )
    return (objective, excess) if excess > 0 else (bound, 0.0)


def proven_status(method: str, status: str, objective: float, bound: float, gap: float | None) -> str:
    """The status a method's answer has earned: ``"optimal"`` stands only when
    :func:`~maskopt.solvers.exact.highs.gap_met` holds for the final objective and bound; an
    "optimal" that misses it becomes ``"numerical"`` (the solver believed it met the gap;
    the certificate says not)."""
    if status != "optimal":
        return status
    if gap is None:
        raise RuntimeError(f"Method {method!r} claims 'optimal' with a bound but no requested gap; this is a bug.")
    return "optimal" if gap_met(objective, bound, gap) else "numerical"
