"""Mask containers, their file format, and applying masks to PyTorch modules.

File format (``MaskSet.save``): a safetensors file with one ``bool`` tensor per masked
parameter, keyed by its ``state_dict`` name (e.g. ``"0.weight"``), True = weight kept.
The safetensors metadata (str → str) holds ``maskopt_version``, ``method``, ``budget``
(JSON of :meth:`Budget.to_dict`, or ``"null"``), ``names`` (JSON list: the mapping's
order, which safetensors itself does not keep) and any user metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from maskopt.budget import Budget, max_per_group

_RESERVED_META = ("maskopt_version", "method", "budget", "names")


class MaskSet(Mapping[str, torch.Tensor]):
    """An immutable mapping from parameter names to bool mask tensors (True = keep).

    Values may be given as bool tensors/arrays or as numbers that are all exactly 0 or 1;
    anything else is an error. Masks are stored on the CPU.
    """

    def __init__(
        self,
        masks: Mapping[str, torch.Tensor | np.ndarray],
        *,
        method: str | None = None,
        budget: Budget | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._masks: dict[str, torch.Tensor] = {}
        for name, value in masks.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Mask names must be non-empty state_dict keys (str); got {name!r}.")
            self._masks[name] = _as_bool(name, value)
        self.method = method
        self.budget = budget
        self.metadata: dict[str, str] = dict(metadata or {})
        self.saved_with: str | None = None  # maskopt version that wrote the file, set by load()
        bad = [k for k in self.metadata if k in _RESERVED_META or not isinstance(self.metadata[k], str)]
        if bad:
            raise ValueError(f"metadata keys {bad} are reserved or their values are not str.")

    # Mapping interface
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __eq__(self, other: object) -> bool:
        """Equal when both have the same names and identical mask values (metadata ignored)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        return list(self) == list(other) and all(
            torch.equal(self._masks[n], torch.as_tensor(other[n]).cpu().to(torch.bool)) for n in self
        )

    __hash__ = None  # mutable-looking container of tensors: not hashable

    def __repr__(self) -> str:
        return f"MaskSet({len(self)} tensors, density={self.density:.4f}, method={self.method!r})"

    @property
    def kept(self) -> int:
        """Number of kept (True) entries over all masks."""
        return int(sum(int(m.sum()) for m in self._masks.values()))

    @property
    def size(self) -> int:
        """Number of masked entries over all masks."""
        return int(sum(m.numel() for m in self._masks.values()))

    @property
    def density(self) -> float:
        """Fraction of kept weights over all masks (1.0 for an empty MaskSet)."""
        return self.kept / self.size if self.size else 1.0

    @property
    def sparsity(self) -> float:
        """Fraction of removed weights: 1 − density."""
        return 1.0 - self.density

    def report(self) -> list[dict]:
        """Per-tensor rows: name, shape, kept, size, density; under an N:M budget also
        ``max per group``, the most weights kept in any group of M (≤ N within the budget)."""
        nm = self.budget.nm if self.budget is not None else None
        rows = []
        for n, m in self._masks.items():
            row = {"name": n, "shape": tuple(m.shape), "kept": int(m.sum()), "size": m.numel(),
                   "density": int(m.sum()) / m.numel() if m.numel() else 1.0}
            if nm is not None:
                row["max per group"] = max_per_group(m, nm[1])
            rows.append(row)
        return rows

    def report_table(self) -> str:
        """:meth:`report` plus a total row, as an aligned text table."""
        from maskopt.report import format_table

        total = {"name": "total", "shape": "", "kept": self.kept, "size": self.size, "density": self.density}
        rows = self.report()
        columns = ["name", "shape", "kept", "size", "density"]
        if rows and "max per group" in rows[0]:
            total["max per group"] = max(r["max per group"] for r in rows)
            columns.append("max per group")
        return format_table([*rows, total], columns)

    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Raise ValueError unless the masks have exactly these names and shapes."""
        missing = [n for n in shapes if n not in self._masks]
        extra = [n for n in self._masks if n not in shapes]
        if missing or extra:
            raise ValueError(
                f"Mask names do not match the maskable parameters: missing {missing}, "
                f"unexpected {extra}; expected {list(shapes)}."
            )
        for n, shape in shapes.items():
            if tuple(self._masks[n].shape) != tuple(shape):
                raise ValueError(f"Mask {n!r} has shape {tuple(self._masks[n].shape)}; expected {tuple(shape)}.")

    def save(self, path: str | os.PathLike) -> None:
        """Write the masks to ``path`` as safetensors, atomically.

        The file is written to a temporary file in the same directory and moved into place
        with ``os.replace``, so an interrupted save leaves any previous file intact.
        """
        from safetensors.torch import save_file

        from maskopt import __version__
        from maskopt.report import atomic_path

        path = Path(path)
        meta = dict(self.metadata)
        meta["maskopt_version"] = __version__
        meta["method"] = self.method or ""
        meta["budget"] = json.dumps(self.budget.to_dict() if self.budget else None)
        meta["names"] = json.dumps(list(self._masks))
        with atomic_path(path) as tmp:
            save_file({n: m.contiguous() for n, m in self._masks.items()}, tmp, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, method: str | None = None) -> MaskSet:
        """Read a MaskSet written by :meth:`save` (names, masks, method, budget, metadata), or
        one ``method``'s masks from a file of several (``maskopt compare`` / ``demo``'s
        ``masks.safetensors``, keyed ``"<method>/<parameter>"``; ``method`` is required there)."""
        from safetensors import SafetensorError, safe_open

        tensors, meta = {}, {}
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                for name in f.keys():
                    tensors[name] = f.get_tensor(name)
            order = json.loads(meta.pop("names", "null")) or sorted(tensors)
            tensors = {name: tensors[name] for name in order}
            budget = json.loads(meta.pop("budget", "null"))
            budget = Budget.from_dict(budget) if budget else None
            several = json.loads(meta.pop("methods")) if "methods" in meta else None
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a readable maskopt mask file ({type(err).__name__}: {err}).") from err
        saved_method = meta.pop("method", "") or None
        if several is not None:  # a comparison's file: one method's masks, their names unprefixed
            if method not in several:
                raise ValueError(f"{path} holds the masks of several methods ({', '.join(several)}); load one with "
                                 f"MaskSet.load(path, method=NAME){f', not {method!r}' if method else ''}.")
            tensors = {n[len(method) + 1:]: t for n, t in tensors.items() if n.startswith(f"{method}/")}
        elif method is not None and method != saved_method:
            raise ValueError(f"{path} holds the masks of method {saved_method!r}, not {method!r}.")
        saved_with = meta.pop("maskopt_version", None)
        out = cls(tensors, method=method or saved_method, budget=budget, metadata=meta)
        out.saved_with = saved_with
        return out


def _as_bool(name: str, value: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(value).detach().cpu()
    if t.dtype == torch.bool:
        return t.clone()
    if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"Mask {name!r} must be bool or contain only 0 and 1.")
    return t.to(torch.bool)


class _Mask(nn.Module):
    """Parametrization ``weight = original * mask``; the mask is a (non-trainable) buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask.to(original.dtype)


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_path, _, pname = name.rpartition(".")
    try:
        module = model.get_submodule(module_path) if module_path else model
    except AttributeError as e:
        raise ValueError(f"Mask {name!r} names no submodule of the model.") from e
    if pname not in dict(module.named_parameters(recurse=False)) and not (
        parametrize.is_parametrized(module, pname)
    ):
        raise ValueError(f"Mask {name!r}: module {module_path or '<root>'} has no parameter {pname!r}.")
    return module, pname


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask ``model``'s parameters in place with ``torch.nn.utils.parametrize``.

    Afterwards ``module.weight`` is ``original * mask``: pruned weights are exactly zero
    in every forward pass and receive zero gradient, whatever the optimizer (momentum and
    weight decay act on ``original``, which is never seen through the mask). The original
    Parameter object is kept (``module.parametrizations.weight.original``), so optimizers
    built before or after stay valid. The mask is a buffer, so it is in the state_dict and
    DDP broadcasts it from rank 0. A parameter that is already masked gets the new mask.
    Returns ``model``.
    """
    masks = masks if isinstance(masks, MaskSet) else MaskSet(masks)
    targets = [(name, *_owner(model, name)) for name in masks]
    for name, module, pname in targets:
        current = getattr(module, pname)
        if tuple(current.shape) != tuple(masks[name].shape):
            raise ValueError(
                f"Mask {name!r} has shape {tuple(masks[name].shape)}; parameter has {tuple(current.shape)}."
            )
    for name, module, pname in targets:
        mask = masks[name].to(getattr(module, pname).device)
        for holder, hname in _holders(model, _tensor(module, pname)):  # a tied weight is masked at every use
            if parametrize.is_parametrized(holder, hname):
                for p in holder.parametrizations[hname]:
                    if isinstance(p, _Mask):
                        p.mask.copy_(mask)
                        break
                else:
                    parametrize.register_parametrization(holder, hname, _Mask(mask))
            else:
                parametrize.register_parametrization(holder, hname, _Mask(mask))
    return model


def _tensor(module: nn.Module, pname: str) -> torch.Tensor:
    """The Parameter behind ``module.pname`` (its ``original`` when parametrized)."""
    if parametrize.is_parametrized(module, pname):
        return module.parametrizations[pname].original
    return module._parameters[pname]


def _holders(model: nn.Module, tensor: torch.Tensor) -> list[tuple[nn.Module, str]]:
    """Every (module, parameter name) of ``model`` that holds ``tensor`` (more than one when tied)."""
    out = []
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):  # holds ``original`` for the module above it
            continue
        names = list(module._parameters)
        if parametrize.is_parametrized(module):
            names += list(module.parametrizations.keys())
        out += [(module, n) for n in names if _tensor(module, n) is tensor]
    return out


def remove_masks(model: nn.Module, bake: bool = True) -> nn.Module:
    """Remove every maskopt mask from ``model``.

    With ``bake=True`` the parameter keeps its masked values (pruned weights stay zero);
    with ``bake=False`` it returns to the unmasked ``original`` values. The Parameter
    object is the original one either way. Returns ``model``.
    """
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for pname in list(module.parametrizations.keys()):
            plist = module.parametrizations[pname]
            if len(plist) == 1 and isinstance(plist[0], _Mask):
                parametrize.remove_parametrizations(module, pname, leave_parametrized=bake)
            elif any(isinstance(p, _Mask) for p in plist):
                raise ValueError(
                    f"{type(module).__name__}.{pname} has other parametrizations besides the mask; "
                    "remove them first."
                )
    return model


def masks_of(model: nn.Module) -> MaskSet:
    """The masks currently applied to ``model`` by :func:`apply_masks`, keyed by parameter name
    (a tied weight once, under its first name, as ``named_parameters`` gives it)."""
    out, seen = {}, set()
    for mod_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for pname, plist in module.parametrizations.items():
            for p in plist:
                if isinstance(p, _Mask) and id(plist.original) not in seen:
                    seen.add(id(plist.original))
                    out[f"{mod_name}.{pname}" if mod_name else pname] = p.mask
    return MaskSet(out)
