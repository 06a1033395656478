"""From a mask to a smaller or faster model: :func:`export`.

Two formats:

* ``"compressed"`` (any device, any maskable parameter): a :class:`CompressedState`, the
  model's ``state_dict`` with every masked tensor stored as its kept values (in row-major
  order) and its mask packed to bits (1 bit per weight, ``numpy.packbits`` order); every
  other entry dense. At density d with 4-byte values a masked tensor takes (4d + 1/8) bytes
  per weight instead of 4: about 7.6× smaller at 90 % sparsity, 1.9× at 2:4.
  :meth:`CompressedState.save` writes one safetensors file (atomically); ``load`` and
  :meth:`CompressedState.load_into` restore the dense architecture's ``state_dict`` with the
  pruned weights exactly zero.
* ``"semi_structured"`` (CUDA, compute capability ≥ 8.0, float16 or bfloat16): a copy of the
  model whose ``nn.Linear`` weights with a 2:4 mask (at most 2 kept of every 4 consecutive
  inputs, ``Budget(nm=(2, 4))``) are ``torch.sparse`` semi-structured tensors, which run on
  the GPU's sparse tensor cores; other parameters stay dense with their masks baked in.
  Layers torch's kernels cannot take (weight rows and columns not multiples of its minimum
  sizes, e.g. 64 × 64 blocks for fp16 with CUTLASS) are refused with their shapes.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskopt.budget import max_per_group

FORMATS = ("compressed", "semi_structured")
_FILE_FORMAT = "maskopt-compressed/1"


@dataclass
class CompressedState:
    """A ``state_dict`` with masked tensors stored as kept values + packed mask bits.

    Attributes:
        dense: the entries stored whole (name → tensor).
        values: masked entries' kept values, 1-D in row-major order (name → tensor).
        bits: masked entries' masks as packed bits, uint8 (name → tensor).
        shapes: masked entries' shapes (name → tuple).
    """

    dense: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    bits: dict[str, torch.Tensor] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The dense ``state_dict`` (pruned entries exactly zero), on the CPU."""
        out = dict(self.dense)
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            mask = np.unpackbits(self.bits[name].numpy(), count=n).astype(bool)
            full = torch.zeros(n, dtype=self.values[name].dtype)
            full[torch.from_numpy(mask)] = self.values[name]
            out[name] = full.reshape(shape)
        return out

    def load_into(self, model: nn.Module) -> nn.Module:
        """Load :meth:`state_dict` into ``model`` (strict: every key must match); returns it."""
        model.load_state_dict(self.state_dict())
        return model

    @property
    def nbytes(self) -> int:
        """Bytes of all stored tensors (what the file holds besides its header)."""
        tensors = [*self.dense.values(), *self.values.values(), *self.bits.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file, written atomically: ``dense/<name>``, ``values/<name>``,
        ``bits/<name>``, the shapes in the metadata."""
        from safetensors.torch import save_file

        from maskopt.report import atomic_path

        tensors = {f"dense/{k}": v for k, v in self.dense.items()}
        tensors |= {f"values/{k}": v for k, v in self.values.items()}
        tensors |= {f"bits/{k}": v for k, v in self.bits.items()}
        meta = {"format": _FILE_FORMAT, "shapes": json.dumps({k: list(s) for k, s in self.shapes.items()})}
        with atomic_path(Path(path)) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CompressedState:
        """Read a file written by :meth:`save`."""
        from maskopt.report import read_tagged

        tensors, meta = read_tagged(path, _FILE_FORMAT, "maskopt compressed state")
        try:
            shapes = {k: tuple(s) for k, s in json.loads(meta["shapes"]).items()}
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a readable maskopt compressed state "
                             f"({type(err).__name__}: {err}).") from err
        out = cls(shapes=shapes)
        for key, t in tensors.items():
            kind, name = key.split("/", 1)
            getattr(out, kind)[name] = t
        return out


def export(model: nn.Module, masks: Mapping[str, torch.Tensor], format: str = "compressed"
           ) -> CompressedState | nn.Module:
    """Bake ``masks`` (parameter name → bool tensor of its shape, e.g. a MaskSet) into
    ``model`` for storage or speed; ``model`` itself is not modified.

    ``format="compressed"``: a :class:`CompressedState` (any device; see the module docstring).
    ``format="semi_structured"``: a copy of ``model`` with its 2:4-masked ``nn.Linear``
    weights as semi-structured sparse tensors (CUDA, compute capability ≥ 8.0, model in
    float16 or bfloat16); raises ValueError naming what is missing otherwise.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {format!r}.")
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask {name!r} names no parameter of the model; its parameters: {list(params)}.")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}; the parameter has "
                             f"{tuple(params[name].shape)}.")
    if format == "compressed":
        return _compressed(model, masks)
    return _semi_structured(model, masks)


def _compressed(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> CompressedState:
    out = CompressedState()
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if name not in masks:
            out.dense[name] = value.clone()
            continue
        keep = torch.as_tensor(masks[name]).cpu().to(torch.bool).reshape(-1)
        out.values[name] = value.reshape(-1)[keep].clone()
        out.bits[name] = torch.from_numpy(np.packbits(keep.numpy()))
        out.shapes[name] = tuple(value.shape)
    return out


def semi_structured_support(device: torch.device | str | None = None) -> str | None:
    """Why 2:4 semi-structured tensors cannot run here (None when they can)."""
    if not torch.cuda.is_available():
        return "semi-structured sparse tensors need a CUDA GPU; none is available (use format='compressed')."
    dev = torch.device("cuda") if device is None else torch.device(device)
    major, minor = torch.cuda.get_device_capability(dev)
    if major < 8:
        return (f"semi-structured sparse tensors need compute capability ≥ 8.0 (Ampere or newer); "
                f"{torch.cuda.get_device_name(dev)} has {major}.{minor}.")
    return None


def is_two_four(mask: torch.Tensor) -> bool:
    """Whether a bool (out, in) mask keeps at most 2 of every 4 consecutive inputs of each row."""
    return mask.ndim == 2 and mask.shape[1] % 4 == 0 and max_per_group(mask, 4) <= 2


def _semi_structured(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    from torch.sparse import to_sparse_semi_structured

    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError("format='semi_structured' needs the model on a CUDA GPU (model.cuda().half()); "
                         f"it is on {device}.")
    reason = semi_structured_support(device)
    if reason is not None:
        raise ValueError(reason)
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    linear_weights = {f"{m}.weight" if m else "weight": mod for m, mod in out.named_modules()
                      if isinstance(mod, nn.Linear)}
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(torch.as_tensor(mask).to(device=device, dtype=params[name].dtype))
        for name, mask in masks.items():
            if name not in linear_weights or not is_two_four(torch.as_tensor(mask)):
                continue
            mod, weight = linear_weights[name], params[name]
            if weight.dtype not in (torch.float16, torch.bfloat16):
                raise ValueError(f"{name}: semi-structured weights need float16 or bfloat16 (model.half()); "
                                 f"got {weight.dtype}.")
            try:
                mod.weight = nn.Parameter(to_sparse_semi_structured(weight.detach()), requires_grad=False)
            except (RuntimeError, ValueError) as err:
                raise ValueError(f"{name} of shape {tuple(weight.shape)} cannot become a semi-structured tensor "
                                 f"here: {err}") from err
    return out
