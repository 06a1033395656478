"""Unrolled sparse-optimization solvers on the sparse-coding benchmark: problem generator and
NMSE conventions, ISTA/FISTA (with λ continuation) and a cvxpy LASSO reference, LISTA,
LISTA-CP, LISTA-CPSS, ALISTA, HyperLISTA (torch, any device), stage-wise training and
HyperLISTA's hyperparameter search. Solver side only: never imports the rest of maskopt."""

from maskopt.solvers.unrolled.bench import METHODS, fista_schedules, iterations_to_reach, run_method
from maskopt.solvers.unrolled.classical import Continuation, ProxTrace, fista, ista, lasso_cvxpy, lipschitz, shrink
from maskopt.solvers.unrolled.models import (
    ALISTA,
    LISTA,
    LISTACP,
    MODELS,
    HyperLISTA,
    Unrolled,
    alista_weight,
    build_model,
    ss_schedule,
    support_shrink,
)
from maskopt.solvers.unrolled.problem import (
    SparseCodingProblem,
    debias,
    nmse_db,
    nmse_db_per_sample,
    oracle_nmse_db,
    support_least_squares,
)
from maskopt.solvers.unrolled.train import (
    StagewiseResult,
    TrainConfig,
    evaluate_layers,
    train_stagewise,
    tune_hyperlista,
)

__all__ = [
    "ALISTA", "LISTA", "LISTACP", "METHODS", "MODELS", "Continuation", "HyperLISTA", "ProxTrace",
    "SparseCodingProblem", "TrainConfig", "StagewiseResult", "Unrolled", "alista_weight", "build_model", "debias",
    "evaluate_layers", "fista", "fista_schedules", "ista", "iterations_to_reach", "lasso_cvxpy", "lipschitz",
    "nmse_db", "nmse_db_per_sample", "oracle_nmse_db", "run_method", "shrink", "ss_schedule",
    "support_least_squares", "support_shrink", "train_stagewise", "tune_hyperlista",
]
