"""Training of unrolled models: the stage-wise layer-by-layer schedule of LISTA-CPSS/ALISTA,
per-layer evaluation, and the hyperparameter search of HyperLISTA.

Stage-wise schedule, for each layer t = 1..K in turn (loss: mean over the batch of
‖x_t − x‖², fresh batches every step):

1. stage 1 trains only layer t's parameters at ``lr`` (earlier layers run without gradient);
2. the next stages train layers 1..t together at ``lr·decay`` for each ``decay`` in
   ``stage_decays[1:]`` (default 0.2, then 0.02).

Each stage ends when the validation NMSE of x_t has not improved for ``patience``
consecutive checks (one every ``val_every`` steps) or after ``max_steps`` steps; the
parameters of its best check are kept.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import torch
from tqdm.auto import tqdm

from maskopt.solvers.unrolled.models import HyperLISTA, Unrolled
from maskopt.solvers.unrolled.problem import SparseCodingProblem, nmse_db, nmse_db_per_sample


@dataclass
class TrainConfig:
    """Settings of ``train_stagewise`` (see the module docstring). ``scalar_lr``: learning rate
    of the scalar parameters (thresholds, step sizes) instead of ``lr``, with the same stage
    decays (None: ``lr``). ``time_limit``: seconds for
    the whole run on ``clock`` ("wall", or "process": CPU seconds of this process, which
    on a shared machine measures the work done rather than the waiting); when it is exceeded
    the run stops at the next check and the remaining layers keep their initial parameters
    (the result says so)."""

    lr: float = 1e-3
    scalar_lr: float | None = None
    stage_decays: tuple[float, ...] = (1.0, 0.2, 0.02)
    batch_size: int = 128
    val_size: int = 1000
    val_every: int = 50
    patience: int = 3
    max_steps: int = 2000
    time_limit: float = math.inf
    clock: str = "wall"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0 or (self.scalar_lr or 1.0) <= 0 or not self.stage_decays or min(self.stage_decays) <= 0:
            raise ValueError("lr, scalar_lr and every stage decay must be positive.")
        if min(self.batch_size, self.val_size, self.val_every, self.patience, self.max_steps) < 1:
            raise ValueError("batch_size, val_size, val_every, patience and max_steps must be >= 1.")
        if self.clock not in ("wall", "process"):
            raise ValueError(f"clock must be 'wall' or 'process', got {self.clock!r}.")


@dataclass
class StagewiseResult:
    """val_nmse_db: validation NMSE (aggregate, dB) of x_t after training layer t, for each
    trained layer; steps; time: seconds on the config's clock; completed: False when the
    time limit cut the run short;
    log: one record per stage (layer, stage, steps, best validation NMSE)."""

    val_nmse_db: list[float] = field(default_factory=list)
    steps: int = 0
    time: float = 0.0
    completed: bool = True
    log: list[dict] = field(default_factory=list)


def _output(model: Unrolled, y: torch.Tensor, t: int, only_last: bool) -> torch.Tensor:
    """x_t for ``y``; with ``only_last`` the first t − 1 layers run without gradient."""
    if not only_last or t == 1:
        return model(y, t)
    with torch.no_grad():
        its = model.iterates(y, t - 1)
    x_prev = its[-2] if t > 2 else torch.zeros_like(its[-1])
    return model.step(t - 1, its[-1], x_prev, y, model.prepare(y))


def train_stagewise(model: Unrolled, problem: SparseCodingProblem, config: TrainConfig | None = None, *,
                    checkpoint: str | Path | None = None, verbose: bool = True) -> StagewiseResult:
    """Train ``model`` (on ``problem``'s device and dtype) with the stage-wise schedule.

    ``checkpoint``: a file written after every layer (model state, result, config); when it
    already exists with the same config, training resumes after its last finished layer.
    """
    config = config or TrainConfig()
    y_val, x_val = problem.sample("validation", config.val_size)
    result, first = StagewiseResult(), 1
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, map_location=problem.A.device, weights_only=False)
        if saved["config"] == asdict(config):
            model.load_state_dict(saved["state"])
            result = StagewiseResult(**saved["result"])
            first = len(result.val_nmse_db) + 1
    batches = problem.stream(config.batch_size, seed=config.seed + 1000 * first)
    clock = time.perf_counter if config.clock == "wall" else time.process_time
    start = clock() - result.time
    bar = tqdm(range(first, model.layers + 1), desc=type(model).__name__, disable=not verbose)
    for t in bar:
        best = math.inf
        for stage, decay in enumerate(config.stage_decays, start=1):
            params = model.layer_parameters(t - 1) if stage == 1 else [
                p for k in range(t) for p in model.layer_parameters(k)]
            scalar_lr = config.lr if config.scalar_lr is None else config.scalar_lr
            opt = torch.optim.Adam([{"params": [p for p in params if p.ndim], "lr": config.lr * decay},
                                    {"params": [p for p in params if not p.ndim], "lr": scalar_lr * decay}])
            best_state, since_best, steps = copy.deepcopy(model.state_dict()), 0, 0
            while steps < config.max_steps and since_best < config.patience:
                for _ in range(config.val_every):
                    y, x = next(batches)
                    loss = (_output(model, y, t, stage == 1) - x).pow(2).sum(dim=1).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                steps += config.val_every
                with torch.no_grad():
                    val = nmse_db(model(y_val, t), x_val)
                if val < best:
                    best, best_state, since_best = val, copy.deepcopy(model.state_dict()), 0
                else:
                    since_best += 1
                if clock() - start > config.time_limit:
                    break
            model.load_state_dict(best_state)
            result.steps += steps
            result.log.append({"layer": t, "stage": stage, "steps": steps, "val_nmse_db": best})
            bar.set_postfix(layer=t, stage=stage, val_db=f"{best:.2f}")
            if clock() - start > config.time_limit:
                break
        result.time = clock() - start
        if result.log[-1]["stage"] < len(config.stage_decays) or (
                t < model.layers and clock() - start > config.time_limit):
            result.completed = False
        result.val_nmse_db.append(best)
        if checkpoint is not None:
            torch.save({"state": model.state_dict(), "result": asdict(result), "config": asdict(config)}, checkpoint)
        if not result.completed:
            break
    return result


def evaluate_layers(model: Unrolled, y: torch.Tensor, x: torch.Tensor) -> dict[str, list[float]]:
    """NMSE (dB) of x_1..x_K against ``x``, in both conventions: ``{"aggregate": [...],
    "per_sample": [...]}``."""
    with torch.no_grad():
        its = model.iterates(y)
    return {"aggregate": [nmse_db(i, x) for i in its], "per_sample": [nmse_db_per_sample(i, x) for i in its]}


HYPER_RANGES = {"c_theta": (1e-4, 1.0), "c_beta": (1e-4, 1e-1), "c_p": (1e-3, 1.0)}


def tune_hyperlista(model: HyperLISTA, y: torch.Tensor, x: torch.Tensor, *, points: int = 7, rounds: int = 3,
                    local_evals: int = 0, verbose: bool = True) -> dict[str, float]:
    """Search of HyperLISTA's three hyperparameters minimising the aggregate NMSE of the last
    layer on ``(y, x)``: a log-spaced ``points``³ grid over ``HYPER_RANGES``, then
    ``rounds − 1`` finer grids (spacing halved each round) centred on the best point so far,
    then (``local_evals`` > 0) a Nelder–Mead search in log space from the best grid point
    with at most that many evaluations (initial simplex steps of ×e^0.3; deterministic).
    Sets the best values on ``model`` and returns them with their ``nmse_db``."""
    if points < 2 or rounds < 1 or local_evals < 0:
        raise ValueError("need points >= 2, rounds >= 1 and local_evals >= 0.")
    names = list(HYPER_RANGES)
    axes = [np.geomspace(*HYPER_RANGES[n], points) for n in names]
    log_step = [math.log(a[1] / a[0]) for a in axes]
    best: dict[str, float] = {"nmse_db": math.inf}
    bar = tqdm(total=points ** 3 * rounds + local_evals, desc="HyperLISTA search", disable=not verbose)

    def value(values) -> float:
        nonlocal best
        model.c_theta, model.c_beta, model.c_p = (float(v) for v in values)
        with torch.no_grad():
            val = nmse_db(model(y), x)
        if val < best["nmse_db"]:
            best = {**dict(zip(names, map(float, values))), "nmse_db": val}
        bar.update()
        return val

    for r in range(rounds):
        if r:
            log_step = [s / 2 for s in log_step]
            half = (points - 1) / 2
            axes = [best[n] * np.exp(log_step[i] * (np.arange(points) - half)) for i, n in enumerate(names)]
        for values in itertools.product(*axes):
            value(values)
        bar.set_postfix(val_db=f"{best['nmse_db']:.2f}")
    if local_evals:
        start = np.log([best[n] for n in names])
        scipy.optimize.minimize(lambda v: value(np.exp(v)), start, method="Nelder-Mead",
                                options={"maxfev": local_evals, "xatol": 1e-3, "fatol": 1e-3,
                                         "initial_simplex": start + np.vstack([np.zeros(3), 0.3 * np.eye(3)])})
        bar.set_postfix(val_db=f"{best['nmse_db']:.2f}")
    bar.close()
    model.c_theta, model.c_beta, model.c_p = best["c_theta"], best["c_beta"], best["c_p"]
    return best
