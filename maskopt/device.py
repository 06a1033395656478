"""Devices: one parser of the ``device=`` option every method and trainer takes."""

from __future__ import annotations

import torch

DEVICE_TYPES = ("cpu", "cuda")


def device_type(device: str) -> str:
    """The kind of device ``device`` names: ``"cpu"``, ``"cuda"`` (also for ``"cuda:N"``) or
    ``"auto"``; anything else raises ValueError. Whether CUDA is available is not checked
    (:func:`resolve_device` does)."""
    if device == "auto":
        return "auto"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}.") from None
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}.")
    return dev.type


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available) as a torch device."""
    kind = device_type(device)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'.")
    return torch.device(device)
