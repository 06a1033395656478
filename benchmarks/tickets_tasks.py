"""The runs of ``bench_tickets.py``: one initialization's tickets of every method, random
masks over mask seeds, and IMP to the ERK allocation (each returns result rows)."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tickets_protocol import Mnist1dSetup, all_params, student, ticket, ticket_row

import maskopt as mo
from maskopt.baselines import ImpRound, iterative_magnitude_pruning
from maskopt.train import Trainer, train


def log(msg: str) -> None:
    print(msg, flush=True, file=sys.stderr)


def imp_rows(setup: Mnist1dSetup, trial: int, trainer: Trainer, protocol: dict) -> tuple[list[dict], object]:
    """IMP's chain from initialization ``trial`` (the notebook's schedule up to the largest
    goal sparsity): the dense row, a row per goal sparsity, and the trained dense network."""
    last = max(setup.retrain.values())
    final = mo.Budget(sparsity=setup.schedule[last], scope=setup.scope).allocate(
        {n: tuple(p.shape) for n, p in trainer.model.named_parameters()})
    rows, steps, teacher, t0 = [], 0, None, time.perf_counter()
    for item in iterative_magnitude_pruning(trainer, final, schedule=list(setup.schedule[1:last + 1]),
                                            score_step=setup.score_step):
        result = item.result if isinstance(item, ImpRound) else item
        steps += result.steps
        if not isinstance(item, ImpRound):  # the dense run (retrain #1)
            rows.append(ticket_row(trial, "dense", 0.0, result, steps, 0.0))
            teacher = student(setup, trial)
            teacher.load_state_dict(trainer.state())
            continue
        for target, index in setup.retrain.items():
            if item.round == index:
                rows.append(ticket_row(trial, "imp", target, result, steps, setup.schedule[index]))
                log(f"trial {trial} imp {target}: max test acc {result.best():.1f} ({time.perf_counter() - t0:.0f} s)")
    return rows, teacher


def run_trial(setup: Mnist1dSetup, trial: int, data: mo.data.Dataset, methods: list[str],
              protocol: dict | None = None) -> list[dict]:
    """One initialization's rows of ``methods`` at every goal sparsity; ``protocol``: every
    training run's options (default the setup's; with ``validation`` the rows carry
    :func:`tickets_protocol.selection`'s fields)."""
    protocol = protocol or setup.protocol
    model = student(setup, trial)
    names = all_params(model)
    rows, teacher = [], None
    if "imp" in methods:
        rows, teacher = imp_rows(setup, trial, Trainer(model, data, names, options=protocol), protocol)
    if teacher is None:  # no IMP run: the dense network for the data-dependent baselines' problem
        teacher = train(student(setup, trial), data, **setup.protocol).model
    init = student(setup, trial)
    for target in setup.retrain:
        s = setup.sparsity(target)
        for method in (m for m in methods if m != "imp"):
            prob = mo.DistillProblem(init, [teacher], data.x, mo.Budget(sparsity=s, scope=setup.scope),
                                     loss="kl", labels=data.y, alpha=1.0, params=names)
            opts = {"seed": trial} if method == "random" else dict(setup.baselines.get(method, {}))
            res = mo.solve(prob, method=method, **opts)
            result = ticket(init, res.masks, data, protocol)
            spent = res.stats["gradient_samples"] / setup.protocol["batch_size"]  # in steps of 100 samples
            rows.append(ticket_row(trial, method, target, result, spent + result.steps, s))
            log(f"trial {trial} {method} {target}: max test acc {result.best():.1f}")
    return rows


def random_spread(setup: Mnist1dSetup, trial: int, seeds: int, data: mo.data.Dataset) -> list[dict]:
    """Max test accuracy of random-mask tickets over ``seeds`` mask seeds (1000·(trial + 1) +
    0, 1, ...) from initialization ``trial``, at each goal sparsity."""
    init = student(setup, trial)
    rows = []
    for target in setup.retrain:
        # the problem only carries the budget and the parameters: "random" reads neither data nor teacher
        prob = mo.DistillProblem(init, [init], data.x, mo.Budget(sparsity=setup.sparsity(target), scope=setup.scope),
                                 params=all_params(init))
        accs = [ticket(init, mo.solve(prob, method="random", seed=1000 * (trial + 1) + seed).masks, data,
                       setup.protocol).best("test_acc") for seed in range(seeds)]
        pub, mean, std = setup.published["random"][target][trial], float(np.mean(accs)), float(np.std(accs, ddof=1))
        rows.append({"trial": trial, "sparsity": target, "seeds": seeds, "mean": mean, "std": std, "min": min(accs),
                     "max": max(accs), "published": pub, "published z": (pub - mean) / std,
                     "accs": [round(a, 2) for a in accs]})
        log(f"trial {trial} random {target}: {mean:.1f} ± {std:.1f} (published {pub})")
    return rows


def imp_trial(setup: Mnist1dSetup, trial: int) -> list[dict]:
    """IMP rows of one initialization (a worker process of one thread)."""
    torch.set_num_threads(1)
    return [r for r in run_trial(setup, trial, mo.data.mnist1d(), ["imp"]) if r["method"] == "imp"]


def imp_erk_task(setup: Mnist1dSetup, trial: int, target: float, protocol: dict | None = None) -> dict:
    """IMP (the notebook's 1 % per retrain, rewinding to init) to ``Budget(sparsity=s, **erk)``
    at one target: its own chain, whose last round has exactly the ERK allocation at s (the
    rounds before keep each tensor's final count as a floor). A worker process of one thread;
    returns the row of the last round."""
    torch.set_num_threads(1)
    protocol = protocol or setup.protocol
    data = mo.data.mnist1d()
    model = student(setup, trial)
    index = setup.retrain[target]
    s = setup.schedule[index]
    final = mo.Budget(sparsity=s, **setup.erk).allocate({n: tuple(p.shape) for n, p in model.named_parameters()})
    trainer = Trainer(model, data, all_params(model), options=protocol)
    steps, last = 0, None
    for item in iterative_magnitude_pruning(trainer, final, schedule=list(setup.schedule[1:index + 1]),
                                            score_step=setup.score_step):
        steps += (item.result if isinstance(item, ImpRound) else item).steps
        last = item
    log(f"trial {trial} imp-erk {target}: max test acc {last.result.best():.1f}")
    return ticket_row(trial, "imp", target, last.result, steps, s)
