"""Helpers shared by the registry and the initialisations."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def fork_seed(seed: int | None, devices: Iterable[torch.device] = ()) -> Iterator[None]:
    """Run the block on torch's CPU generator, and the CUDA generators of ``devices``, seeded
    with ``seed``, restoring them afterwards; a no-op for ``seed=None``. The same seed gives the
    same numbers on the same kind of device (CPU and CUDA draw differently)."""
    if seed is None:
        yield
        return
    devices = set(devices)
    if other := sorted(str(d) for d in devices if d.type not in ("cpu", "cuda")):
        raise ValueError(f"seed= is supported on CPU and CUDA; the model is on {other}. Initialise it on the CPU.")
    cuda = sorted({torch.cuda.current_device() if d.index is None else d.index for d in devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def check_kwargs(what: str, fn: Callable[..., Any], kwargs: dict[str, Any], *args: Any) -> None:
    """Raise a TypeError naming ``what`` and ``fn``'s signature unless ``fn(*args, **kwargs)`` binds."""
    signature = inspect.signature(fn)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"{what}: {err}; it takes {signature}.") from None
