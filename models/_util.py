"""Helpers shared by the registry and the initialisations."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def fork_seed(seed: int | None) -> Iterator[None]:
    """Run the block on torch's CPU generator seeded with ``seed``, restoring the global
    generator afterwards; a no-op for ``seed=None``."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_kwargs(what: str, fn: Callable[..., Any], kwargs: dict[str, Any], *args: Any) -> None:
    """Raise a TypeError naming ``what`` and ``fn``'s signature unless ``fn(*args, **kwargs)`` binds."""
    signature = inspect.signature(fn)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"{what}: {err}; it takes {signature}.") from None
