"""maskopt: sparse subnetworks (masks) of neural networks found by optimization.

See README.md for the definitions (sparsity, budget scopes, objective, certificate).

Names are loaded on first use (PEP 562): ``import maskopt`` imports nothing else, so the
engines (``maskopt.solvers``, ``maskopt.models``) load without the rest of the library.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "maskopt.api": ("CertificateError", "MethodOutput", "MethodSpec", "SolveResult", "evaluate", "method_spec",
                    "methods", "register", "relative_gap", "solve"),
    "maskopt.budget": ("Allocation", "Budget", "count_for_density"),
    "maskopt.compare": ("Comparison", "compare", "plot_tradeoff"),
    "maskopt.distill": ("DistillProblem",),
    "maskopt.export": ("CompressedState", "export"),
    "maskopt.exact": ("Certificate", "ProblemTooLargeError", "SolverUnavailableError", "TooManyCandidatesError",
                      "UnsupportedProblemError", "certify"),
    "maskopt.masks": ("MaskSet", "apply_masks", "masks_of", "remove_masks"),
    "maskopt.posttrain": ("PruneResult", "layer_problems", "prune_layerwise"),
    "maskopt.problems": ("LayerwiseProblem", "Problem"),
    "maskopt.solvers.losses": ("Loss",),
    "maskopt.sparse_training": ("SparseTrainResult", "sparse_train"),
    "maskopt.train": ("TrainResult", "load_teachers", "train", "train_teachers", "train_ticket"),
    "maskopt.transfer": ("class_subset", "transfer"),
}
_SUBMODULES = ("data", "models")
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted([*_WHERE, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = importlib.import_module(f"maskopt.{name}")
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'maskopt' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _Package(types.ModuleType):
    """Importing a submodule binds it as an attribute of its package; for the submodules
    named like the function they define (``maskopt.compare``, ``maskopt.train``) the
    function keeps the name, so ``mo.compare``/``mo.train`` stay the functions."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
