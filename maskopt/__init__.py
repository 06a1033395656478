"""maskopt: sparse subnetworks (masks) of neural networks found by optimization.

See README.md for the definitions (sparsity, budget scopes, objective, certificate).
"""

__version__ = "0.1.0"

from maskopt import baselines as _baselines  # noqa: E402,F401  (registers methods)
from maskopt import data, models  # noqa: E402
from maskopt import exact as _exact  # noqa: E402,F401  (registers methods)
from maskopt import relax as _relax  # noqa: E402,F401  (registers methods)
from maskopt.api import CertificateError, MethodOutput, SolveResult, evaluate, methods, register, relative_gap, solve  # noqa: E402
from maskopt.budget import Allocation, Budget, count_for_density  # noqa: E402
from maskopt.compare import Comparison, compare, plot_tradeoff  # noqa: E402
from maskopt.distill import DistillProblem  # noqa: E402
from maskopt.exact import (  # noqa: E402
    Certificate,
    ProblemTooLargeError,
    SolverUnavailableError,
    TooManyCandidatesError,
    UnsupportedProblemError,
    certify,
)
from maskopt.masks import MaskSet, apply_masks, masks_of, remove_masks  # noqa: E402
from maskopt.problems import LayerwiseProblem, Problem  # noqa: E402
from maskopt.train import TrainResult, load_teachers, train, train_teachers, train_ticket  # noqa: E402

__all__ = [
    "Allocation",
    "Budget",
    "Certificate",
    "CertificateError",
    "Comparison",
    "DistillProblem",
    "LayerwiseProblem",
    "MaskSet",
    "MethodOutput",
    "Problem",
    "ProblemTooLargeError",
    "SolveResult",
    "SolverUnavailableError",
    "TrainResult",
    "TooManyCandidatesError",
    "UnsupportedProblemError",
    "apply_masks",
    "certify",
    "compare",
    "count_for_density",
    "data",
    "evaluate",
    "masks_of",
    "methods",
    "plot_tradeoff",
    "models",
    "register",
    "relative_gap",
    "remove_masks",
    "solve",
    "train",
    "train_teachers",
    "train_ticket",
    "load_teachers",
]
