"""Sparsity budgets: how many weights a mask may keep, and where.

Definitions used everywhere in maskopt:

* **sparsity** = fraction of zeros of a mask, **density** = 1 − sparsity.
* A **scope unit** is the set of weights one count applies to: all maskable weights
  (``scope="global"``), one parameter tensor (``"layer"``), all maskable parameters of one
  module together, i.e. the names that agree up to their last dot, such as a Linear's
  ``weight`` and ``bias`` (``"module"``), or one output neuron, i.e. one slice ``param[j]``
  along the first dimension (``"row"``), or one group of M consecutive weights along a
  row (``"nm"``, N:M sparsity: at most N kept in every group; for a Linear weight (out, in)
  the groups run along ``in``, for a Conv weight (out, in, kh, kw) along the row-major
  flattened in × kh × kw; every row's size must be a multiple of M).
* **Rounding rule** (the only one): a density ``d`` over ``n`` weights allows
  ``k = floor(d·n + 1/2)`` kept weights (round half up, after rounding ``d·n`` to 9
  decimals so that ``sparsity=0.9`` and ``density=0.1`` give the same count).
* The budget is an **upper bound**: a mask may keep fewer weights than its cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from maskopt.solvers.topk import Units

SCOPES = ("global", "layer", "module", "row", "nm")
ALLOCATIONS = ("uniform", "erk")


def count_for_density(density: float, n: int) -> int:
    """The number of kept weights a ``density`` allows among ``n`` weights (round half up)."""
    return int(math.floor(round(density * n, 9) + 0.5))


def max_per_group(mask: torch.Tensor, m: int) -> int:
    """The most weights ``mask`` keeps in any group of ``m`` consecutive weights of its
    row-major flattening (its N:M groups when the rows are a multiple of ``m``); 0 for an
    empty mask."""
    return int(mask.reshape(-1, m).sum(1).max()) if mask.numel() else 0


@dataclass(frozen=True)
class Budget:
    """A sparsity budget: exactly one of ``k``, ``density``, ``sparsity`` or ``nm``.

    Args:
        k: kept weights per scope unit (an integer ≥ 0).
        density: fraction of weights kept, in [0, 1].
        sparsity: fraction of weights removed, in [0, 1].
        nm: ``(N, M)``, N:M sparsity: at most N of every M consecutive weights of a row kept
            (scope ``"nm"``, set by giving ``nm``; density N/M), e.g. ``Budget(nm=(2, 4))``,
            the pattern of sparse tensor cores.
        scope: ``"global"``, ``"layer"``, ``"module"``, ``"row"`` or ``"nm"`` (see module
            docstring).
        allocation: how a density is spread over layers for ``"layer"``/``"row"`` scope
            (``"module"`` scope takes ``"uniform"`` only):
            ``"uniform"`` (same density everywhere) or ``"erk"`` (Erdős–Rényi-kernel,
            density ∝ sum(shape)/prod(shape), saturated layers clipped to 1 and the rest
            rescaled). Layer scope hits the global count exactly (largest remainders); row
            scope gives every row of a layer the rounded count of its density, so the total
            may differ from the global count by up to half a weight per row (a row of one
            weight, e.g. a bias entry, is kept or pruned whole).
    """

    k: int | None = None
    density: float | None = None
    sparsity: float | None = None
    scope: str = "global"
    allocation: str = "uniform"
    nm: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("k", "density", "sparsity", "nm") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "Budget needs exactly one of k=, density=, sparsity= or nm=; "
                f"got {given or 'none'}. Example: Budget(sparsity=0.9) or Budget(nm=(2, 4))."
            )
        if self.nm is not None or self.scope == "nm":
            self._check_nm()
            return
        if self.k is not None:
            if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)):
                raise TypeError(f"Budget k must be an integer count of kept weights; got {self.k!r}.")
            if self.k < 0:
                raise ValueError(f"Budget k must be ≥ 0 (kept weights per scope unit); got {self.k}.")
            object.__setattr__(self, "k", int(self.k))
        for name in ("density", "sparsity"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"Budget {name} must be a number in [0, 1]; got {value!r}.")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"Budget {name} must lie in [0, 1]; got {value}.")
            object.__setattr__(self, name, float(value))
        if self.scope not in SCOPES:
            raise ValueError(f"Budget scope must be one of {SCOPES}; got {self.scope!r}.")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"Budget allocation must be one of {ALLOCATIONS}; got {self.allocation!r}.")
        if self.allocation != "uniform" and self.scope == "module":
            raise ValueError(
                f"allocation={self.allocation!r} is defined per parameter tensor; use scope='layer' "
                "(or allocation='uniform' with scope='module')."
            )
        if self.allocation != "uniform" and (self.scope == "global" or self.k is not None):
            raise ValueError(
                f"allocation={self.allocation!r} spreads a density over layers, so it needs "
                "scope='layer' or 'row' and density= or sparsity= (not k=)."
            )

    def _check_nm(self) -> None:
        nm = self.nm
        if nm is None:
            raise ValueError("scope='nm' needs nm=(N, M), e.g. Budget(nm=(2, 4)) (at most 2 of every 4 kept).")
        if (not isinstance(nm, (tuple, list)) or len(nm) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in nm)):
            raise TypeError(f"Budget nm must be a pair of integers (N, M); got {nm!r}.")
        n, m = int(nm[0]), int(nm[1])
        if not 0 <= n <= m or m < 1:
            raise ValueError(f"Budget nm=(N, M) needs 0 ≤ N ≤ M and M ≥ 1; got {nm!r}.")
        if self.scope not in ("global", "nm"):
            raise ValueError(f"nm={nm!r} is its own scope (groups of M weights); drop scope={self.scope!r}.")
        if self.allocation != "uniform":
            raise ValueError(f"nm={nm!r} keeps N of M everywhere; allocation={self.allocation!r} does not apply.")
        object.__setattr__(self, "nm", (n, m))
        object.__setattr__(self, "scope", "nm")

    @property
    def target_density(self) -> float | None:
        """The requested density (N/M for an N:M budget), or None for a count budget."""
        if self.nm is not None:
            return self.nm[0] / self.nm[1]
        if self.density is not None:
            return self.density
        if self.sparsity is not None:
            return 1.0 - self.sparsity
        return None

    def to_dict(self) -> dict:
        """A JSON-ready description (inverse of :meth:`from_dict`)."""
        return {
            "k": self.k,
            "density": self.density,
            "sparsity": self.sparsity,
            "scope": self.scope,
            "allocation": self.allocation,
            "nm": None if self.nm is None else list(self.nm),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Budget:
        """Rebuild a budget written by :meth:`to_dict` (one without ``nm`` too)."""
        d = dict(d)
        if d.get("nm") is not None:
            d["nm"] = tuple(d["nm"])
        return cls(**d)

    def allocate(self, shapes: Mapping[str, Sequence[int]]) -> Allocation:
        """Resolve the budget into integer caps per scope unit for parameters of ``shapes``.

        Raises ValueError when a count ``k`` exceeds the size of a scope unit.
        """
        shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        if not shapes:
            raise ValueError("Cannot allocate a budget over no maskable parameters.")
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        total = sum(sizes.values())
        if self.scope == "nm":
            return Allocation(self, shapes, {name: np.full(_n_groups(name, shape, self.nm[1]), self.nm[0])
                                             for name, shape in shapes.items()})
        if self.scope == "global":
            cap = self.k if self.k is not None else count_for_density(self.target_density, total)
            if cap > total:
                raise ValueError(f"Budget k={cap} exceeds the {total} maskable weights; use k ≤ {total}.")
            return Allocation(self, shapes, {"*": np.array([cap])})
        if self.scope == "module":
            modules = _modules(shapes)
            msizes = {m: sum(sizes[n] for n in names) for m, names in modules.items()}
            if self.k is not None:
                for m, size in msizes.items():
                    if self.k > size:
                        raise ValueError(f"Budget k={self.k} per module exceeds the {size} weights of module "
                                         f"{m!r}; use k ≤ {size} or a density budget.")
                return Allocation(self, shapes, {m: np.array([self.k]) for m in modules})
            counts = _round_to_total({m: self.target_density for m in modules}, {m: (s,) for m, s in msizes.items()},
                                     count_for_density(self.target_density, total))
            return Allocation(self, shapes, {m: np.array([c]) for m, c in counts.items()})
        if self.k is not None:
            caps = {}
            for name, shape in shapes.items():
                unit = sizes[name] if self.scope == "layer" else _row_size(shape)
                if self.k > unit:
                    what = "parameter" if self.scope == "layer" else "row of"
                    raise ValueError(
                        f"Budget k={self.k} per {self.scope} exceeds the {unit} weights of the "
                        f"{what} {name!r}; use k ≤ {unit} or a density budget."
                    )
                rows = 1 if self.scope == "layer" else _n_rows(shape)
                caps[name] = np.full(rows, self.k)
            return Allocation(self, shapes, caps)
        densities = _layer_densities(self.target_density, shapes, self.allocation)
        if self.scope == "layer":
            counts = _round_to_total(densities, shapes, count_for_density(self.target_density, total))
            return Allocation(self, shapes, {n: np.array([c]) for n, c in counts.items()})
        caps = {
            name: np.full(_n_rows(shape), count_for_density(densities[name], _row_size(shape)))
            for name, shape in shapes.items()
        }
        return Allocation(self, shapes, caps)


def module_of(name: str) -> str:
    """The module a parameter name belongs to: everything before its last dot (``""``, the
    root module, for a name without one, e.g. a bare Linear's ``weight`` and ``bias``)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def _modules(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """Parameter names grouped by module, in order; a module's parameters must be adjacent
    (as ``named_parameters()`` lists them) so that each module is one contiguous unit."""
    out: dict[str, list[str]] = {}
    last = None
    for name in shapes:
        m = module_of(name)
        if m in out and m != last:
            raise ValueError(f"Parameters of module {m!r} are not adjacent in the parameter order "
                             f"({out[m] + [name]}); list each module's parameters together.")
        out.setdefault(m, []).append(name)
        last = m
    return out


def _n_groups(name: str, shape: tuple[int, ...], m: int) -> int:
    """The number of N:M groups of a parameter (its rows split into groups of ``m``)."""
    row = _row_size(shape)
    if row % m:
        raise ValueError(f"Parameter {name!r} of shape {shape} has rows of {row} weights, not a multiple of M={m}: "
                         f"N:M groups run along each row (a Linear's inputs; a Conv's in × kh × kw). Leave it out "
                         f"of the maskable parameters (DistillProblem(params=...)) or use another scope.")
    return _n_rows(shape) * row // m


def _n_rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def _row_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if shape else 1


def _erk_factor(shape: tuple[int, ...]) -> float:
    return sum(shape) / math.prod(shape) if shape and math.prod(shape) else 1.0


def _layer_densities(density: float, shapes: dict[str, tuple[int, ...]], allocation: str) -> dict[str, float]:
    """Continuous per-layer densities d_l whose counts Σ d_l·n_l equal the global count.

    ``"uniform"``: d_l = the requested density.
    ``"erk"``: d_l = min(1, ε·r_l) with r_l = sum(shape)/prod(shape); layers with ε·r_l ≥ 1
    are saturated (kept dense) and ε is re-solved over the rest until none saturates.
    """
    if allocation == "uniform":
        return {n: density for n in shapes}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    K = count_for_density(density, sum(sizes.values()))
    ratio = {n: _erk_factor(s) for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense and sizes[n] > 0]
        remaining = K - sum(sizes[n] for n in dense)
        denom = sum(ratio[n] * sizes[n] for n in free)
        eps = remaining / denom if denom > 0 else 0.0
        saturated = {n for n in free if eps * ratio[n] >= 1.0}
        if not saturated or not free:
            break
        dense |= saturated
    return {n: 1.0 if n in dense else min(1.0, eps * ratio[n]) for n in shapes}


def _round_to_total(densities: dict[str, float], shapes: dict[str, tuple[int, ...]], total: int) -> dict[str, int]:
    """Integer counts ≈ d_l·n_l that sum exactly to ``total`` (largest-remainder rounding,
    ties to the earlier layer), never above n_l."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    cont = {n: round(densities[n] * sizes[n], 9) for n in shapes}
    counts = {n: min(sizes[n], int(math.floor(c + 1e-9))) for n, c in cont.items()}
    short = total - sum(counts.values())
    order = sorted(shapes, key=lambda n: (-(cont[n] - counts[n]), list(shapes).index(n)))
    for n in order:
        if short <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            short -= 1
    return counts


@dataclass(frozen=True)
class Allocation:
    """A budget resolved against parameter shapes: integer caps per scope unit.

    ``caps`` maps a parameter name to an int array: one cap per row for ``"row"`` scope,
    one per group of M for ``"nm"``, a single cap for ``"layer"``; for ``"module"`` it maps module names (see
    :func:`module_of`) to a single cap; for ``"global"`` it holds the single key ``"*"``.
    Flattened order (used by :meth:`units`): parameters in ``shapes`` order, each
    flattened row-major, so every scope unit is a contiguous range.
    """

    budget: Budget
    shapes: dict[str, tuple[int, ...]]
    caps: dict[str, np.ndarray]

    @property
    def scope(self) -> str:
        return self.budget.scope

    @property
    def size(self) -> int:
        """Number of maskable weights."""
        return sum(math.prod(s) for s in self.shapes.values())

    @property
    def total(self) -> int:
        """The largest number of weights a mask within this budget can keep."""
        return int(sum(int(c.sum()) for c in self.caps.values()))

    @property
    def offsets(self) -> dict[str, int]:
        """Where each parameter's entries start in the flattened mask vector."""
        out, offset = {}, 0
        for name, shape in self.shapes.items():
            out[name] = offset
            offset += math.prod(shape)
        return out

    def flatten(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The flattened mask vector ``(size,)`` (CPU) of ``masks`` (any dtype, kept)."""
        return torch.cat([torch.as_tensor(masks[n]).reshape(-1).cpu() for n in self.shapes])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flatten`; ``flat`` may carry leading batch dims ``(..., size)``."""
        lead = tuple(flat.shape[:-1])
        return {n: flat[..., o : o + math.prod(s)].reshape(*lead, *s) for (n, s), o in
                zip(self.shapes.items(), self.offsets.values())}

    def units(self) -> list[tuple[int, int, int]]:
        """Scope units as ``(start, stop, cap)`` ranges of the flattened mask vector."""
        if self.scope == "global":
            return [(0, self.size, int(self.caps["*"][0]))]
        if self.scope == "nm":
            n, m = self.budget.nm
            return [(start, start + m, n) for start in range(0, self.size, m)]
        if self.scope == "module":
            offsets = self.offsets
            return [(offsets[names[0]], offsets[names[-1]] + math.prod(self.shapes[names[-1]]), int(self.caps[m][0]))
                    for m, names in _modules(self.shapes).items()]
        out = []
        for (name, shape), offset in zip(self.shapes.items(), self.offsets.values()):
            if self.scope == "layer":
                out.append((offset, offset + math.prod(shape), int(self.caps[name][0])))
            else:
                rs = _row_size(shape)
                out.extend(
                    (offset + j * rs, offset + (j + 1) * rs, int(c)) for j, c in enumerate(self.caps[name])
                )
        return out

    def violations(self, masks: Mapping[str, torch.Tensor]) -> list[str]:
        """Human-readable descriptions of every scope unit whose kept count exceeds its cap.

        Raises ValueError when a mask is missing or has the wrong shape.
        """
        for name, shape in self.shapes.items():
            if name not in masks or tuple(masks[name].shape) != shape:
                got = tuple(masks[name].shape) if name in masks else "missing"
                raise ValueError(f"Mask {name!r} must have shape {shape}; got {got}.")
        flat = self.flatten(masks).to(torch.int64)
        csum = torch.cat([torch.zeros(1, dtype=torch.int64), flat.cumsum(0)])
        bad = []
        for start, stop, cap in self.units():
            kept = int(csum[stop] - csum[start])
            if kept > cap:
                bad.append(f"{kept} kept > cap {cap} in weights [{start}, {stop})")
        return bad

    def project(self, scores: Mapping[str, torch.Tensor], caps: Sequence[int] | None = None
                ) -> dict[str, torch.Tensor]:
        """The mask keeping the highest scores, exactly the cap of each scope unit (or
        ``caps[u]`` in unit u of :meth:`units`, e.g. an iterative method's intermediate round).

        Ties are broken deterministically by the lower flattened index. ``scores`` maps
        each parameter name to a tensor of its shape (any device; NaN is refused); the masks
        are bool tensors on the same device.
        """
        for name, shape in self.shapes.items():
            if name not in scores or tuple(scores[name].shape) != shape:
                raise ValueError(f"Scores for {name!r} must have shape {shape}.")
            if scores[name].is_floating_point() and torch.isnan(scores[name]).any():
                raise ValueError(f"Scores for {name!r} contain NaN, which has no rank; give every weight a number "
                                 "(e.g. torch.nan_to_num, or -inf for a weight never to keep).")
        units = self.units()
        if caps is not None:
            units = [(start, stop, int(c)) for (start, stop, _), c in zip(units, caps, strict=True)]
        flat = torch.cat([_sortable(scores[n].detach()).reshape(-1) for n in self.shapes])
        return self.unflatten(Units(units, self.size, flat.device).project(flat))


def _sortable(scores: torch.Tensor) -> torch.Tensor:
    """Scores in a dtype that orders them exactly: floats keep theirs, others become float64."""
    s = scores.detach()
    return s if s.is_floating_point() else s.to(torch.float64)
