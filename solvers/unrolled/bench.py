"""One method on the sparse-coding benchmark: train or tune it, then its test NMSE after
every layer (or iteration). Behind ``maskopt lista-bench``.

All NMSE values are on the test split, in dB; ``nmse_db`` uses the aggregate convention
10·log10(Σ‖x̂ − x‖² / Σ‖x‖²) and ``nmse_db_per_sample`` the mean of per-sample dB values.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from maskopt.solvers.unrolled.classical import Continuation, fista, ista
from maskopt.solvers.unrolled.models import MODELS, HyperLISTA, build_model
from maskopt.solvers.unrolled.problem import SparseCodingProblem, nmse_db
from maskopt.solvers.unrolled.train import TrainConfig, evaluate_layers, train_stagewise, tune_hyperlista

METHODS = ("ista", "fista", *MODELS)
LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
CONVENTION = "aggregate: 10·log10(Σ‖x̂−x‖² / Σ‖x‖²) over the test set"
# stage-1 learning rates (·0.2 and ·0.02 in the later stages): the LISTA-CPSS code's 5e-4 for matrices; scalar
# thresholds and steps learn faster (with 5e-4 they barely move in a short run)
DEFAULT_CONFIGS = {
    "lista": TrainConfig(lr=5e-4, scalar_lr=3e-3),
    "lista-cp": TrainConfig(lr=5e-4, scalar_lr=3e-2),
    "lista-cpss": TrainConfig(lr=5e-4, scalar_lr=3e-2),
    "alista": TrainConfig(lr=3e-2),
}


def default_config(method: str, seed: int = 0) -> TrainConfig:
    """The default training settings of ``method`` with training seed ``seed``."""
    return replace(DEFAULT_CONFIGS.get(method, TrainConfig()), seed=seed)


def run_method(method: str, *, layers: int = 16, snr_db: float = math.inf, m: int = 250, n: int = 500,
               seed: int = 0, device: str = "cpu", test_size: int = 1000, config: TrainConfig | None = None,
               search_points: int = 7, search_rounds: int = 3, search_local: int = 150,
               checkpoint: str | Path | None = None,
               model_options: dict | None = None, verbose: bool = True) -> dict:
    """Prepare ``method`` (train, tune, or pick λ on the validation split), evaluate it on the
    test split and return a JSON-ready record: per-layer NMSE in both conventions, the
    preparation time (wall and CPU seconds of this process) and the settings used.

    ista/fista: ``layers`` iterations with the λ of ``LAMBDAS`` best on validation after
    ``layers`` iterations. hyperlista: ``tune_hyperlista`` on the validation split (grid of
    ``search_points``³ × ``search_rounds``, then ``search_local`` Nelder–Mead evaluations). Others:
    ``train_stagewise`` with ``config`` (default: ``default_config(method, seed)``).
    ``model_options`` go to the model's constructor (e.g. ``{"init": "alista"}`` for LISTA-CP).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    problem = SparseCodingProblem(m=m, n=n, snr_db=snr_db, seed=seed, device=device)
    config = config or default_config(method, seed)
    y_test, x_test = problem.sample("test", test_size)
    start, start_cpu = time.perf_counter(), time.process_time()
    settings: dict = {}
    if method in ("ista", "fista"):
        solver = ista if method == "ista" else fista
        y_val, x_val = problem.sample("validation", config.val_size)
        lam = min(LAMBDAS, key=lambda lam: nmse_db(solver(problem.A, y_val, lam, layers).x, x_val))
        prep, prep_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        trace = solver(problem.A, y_test, lam, layers, x_true=x_test)
        curves, settings = {"aggregate": trace.nmse_db, "per_sample": trace.nmse_db_per_sample}, {"lam": lam}
    else:
        model = build_model(method, problem.A, layers, **(model_options or {}))
        if isinstance(model, HyperLISTA):
            y_val, x_val = problem.sample("validation", config.val_size)
            settings = tune_hyperlista(model, y_val, x_val, points=search_points, rounds=search_rounds,
                                       local_evals=search_local, verbose=verbose)
            settings["search"] = {"points": search_points, "rounds": search_rounds, "local_evals": search_local,
                                  "validation_samples": config.val_size}
        else:
            result = train_stagewise(model, problem, config, checkpoint=checkpoint, verbose=verbose)
            settings = {"config": asdict(config), "model_options": model_options or {}, "steps": result.steps,
                        "train_clock_s": result.time, "completed": result.completed, "val_nmse_db": result.val_nmse_db}
        prep, prep_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        curves = evaluate_layers(model, y_test, x_test)
    return {"method": method, "layers": layers, "snr_db": snr_db, "m": m, "n": n, "seed": seed,
            "test_size": test_size, "device": str(device), "convention": CONVENTION,
            "nmse_db": curves["aggregate"], "nmse_db_per_sample": curves["per_sample"],
            "prepare_time_s": prep, "prepare_cpu_s": prep_cpu, "settings": settings}


def fista_schedules(A: torch.Tensor, y: torch.Tensor, x: torch.Tensor, *, max_iters: int = 4000,
                    decays: tuple[float, ...] = (0.99, 0.995, 0.998), lams: tuple[float, ...] = (1e-4, 1e-3, 1e-2),
                    lam_final: float = 1e-6, lam0: float = 1.0) -> dict[str, list[float]]:
    """Aggregate NMSE (dB) after each of ``max_iters`` FISTA iterations on ``(y, x)``, for λ
    continuation λ_k = max(``lam_final``, ``lam0``·decay^k) with each of ``decays`` and for
    each fixed λ in ``lams``; keyed by a description of the schedule."""
    curves = {f"continuation decay={d}": fista(A, y, lam_final, max_iters, x_true=x,
                                               continuation=Continuation(lam0, d)).nmse_db for d in decays}
    curves.update({f"fixed lam={lam}": fista(A, y, lam, max_iters, x_true=x).nmse_db for lam in lams})
    return curves


def iterations_to_reach(curves: dict[str, list[float]], target_db: float) -> tuple[int | None, str | None]:
    """The fewest iterations after which some curve of ``curves`` is at or below
    ``target_db``, and that curve's key; ``(None, None)`` when none gets there."""
    hits = [(next((k + 1 for k, v in enumerate(c) if v <= target_db), math.inf), run) for run, c in curves.items()]
    its, run = min(hits, default=(math.inf, None))
    return (None, None) if math.isinf(its) else (its, run)
