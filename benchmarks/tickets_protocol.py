"""The MNIST-1D lottery-ticket protocol shared by ``bench_tickets.py`` and ``bench_headline.py``:
its settings (``experiments/tickets_mnist1d.toml``), the student at its initialization, ticket
training, and the row fields every ticket records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import maskopt as mo
from maskopt.config import read_toml

EXPERIMENTS = Path(__file__).resolve().parent / "experiments"


def by_sparsity(table: dict) -> dict[float, object]:
    """A TOML table keyed by sparsity strings ("0.95") as a dict keyed by floats."""
    return {float(k): (tuple(v) if isinstance(v, list) else v) for k, v in table.items()}


@dataclass(frozen=True)
class Mnist1dSetup:
    """Everything the protocol fixes (see ``experiments/tickets_mnist1d.toml``)."""

    protocol: dict  # every ticket's training options (maskopt.train_ticket keywords)
    scope: str  # the budget scope of IMP and of every method under the uniform allocation
    schedule: tuple[float, ...]  # IMP's sparsity per retrain (index 0: the dense run)
    retrain: dict[float, int]  # goal sparsity -> schedule index
    score_step: int  # IMP scores each round by the weights after this step
    erk: dict  # Budget keywords of the ERK allocation
    erk_targets: tuple[float, ...]  # the goal sparsities judged under ERK
    baselines: dict  # method -> its mo.solve options
    validation_seed: int
    student: tuple[str, dict] = ("mnist1d_mlp", {})  # model name and keywords of mo.models.create
    published: dict = field(default_factory=dict)  # method -> sparsity -> (trial 0, trial 1)
    notebook_rerun: dict = field(default_factory=dict)
    same_seed_dense: tuple = ()

    def sparsity(self, target: float) -> float:
        """The schedule's sparsity at the retrain of the goal sparsity ``target``."""
        return float(self.schedule[self.retrain[target]])

    @property
    def budget(self) -> dict:
        """Budget keywords of the uniform (per-layer) allocation."""
        return {"scope": self.scope}


def load_setup(quick: bool = False, path: Path = EXPERIMENTS / "tickets_mnist1d.toml") -> Mnist1dSetup:
    """The protocol of ``path``; ``quick``: with its ``[quick]`` overrides."""
    cfg = read_toml(path)
    imp, quick_cfg = cfg["imp"], cfg.get("quick", {}) if quick else {}
    points = quick_cfg.get("schedule_points", imp["schedule_points"])
    return Mnist1dSetup(
        protocol={**cfg["protocol"], **quick_cfg.get("protocol", {})},
        scope=imp["scope"],
        schedule=tuple(float(s) for s in np.linspace(0.0, 1.0, points)),
        retrain=by_sparsity(quick_cfg.get("retrain", imp["retrain"])),
        score_step=quick_cfg.get("score_step", imp["score_step"]),
        erk=dict(cfg["erk"]["budget"]),
        erk_targets=tuple(quick_cfg.get("erk_targets", cfg["erk"]["targets"])),
        baselines=cfg["baselines"],
        validation_seed=cfg["validation"]["seed"],
        student=(cfg["student"]["model"], {**cfg["student"]["kwargs"], **quick_cfg.get("student", {})}),
        published={m: by_sparsity(t) for m, t in cfg["published"].items()},
        notebook_rerun={m: by_sparsity(t) for m, t in cfg["notebook_rerun"].items()},
        same_seed_dense=tuple(tuple(t) for t in cfg["published_same_seed_dense"]["trials"]),
    )


def student(setup: Mnist1dSetup, trial: int) -> torch.nn.Module:
    """The setup's student (the notebook's 40-500-500-10 MLP) at initialization ``trial`` (seed 42 + trial)."""
    torch.manual_seed(42 + trial)
    name, kwargs = setup.student
    return mo.models.create(name, **kwargs)


def all_params(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def validation_data(setup: Mnist1dSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the validation split: the test samples of a fresh MNIST-1D draw
    (``setup.validation_seed``), independent of the 4000/1000 split the tickets use."""
    draw = mo.data.mnist1d(seed=setup.validation_seed)
    return draw.x_test, draw.y_test


def ticket(init: torch.nn.Module, masks, data: mo.data.Dataset, protocol: dict):
    """``init`` trained with ``masks`` fixed under ``protocol``."""
    return mo.train_ticket(init, masks, data, epochs=None, **protocol)


def selection(result) -> dict:
    """A ticket's test accuracy at its last evaluation and at the one its validation accuracy
    chooses (the first best), with each evaluation's (step, val acc, test acc); {} when it was
    trained without a validation split."""
    if not any("val_acc" in h for h in result.history):
        return {}
    chosen = result.chosen("val_acc")
    return {"last test acc": result.final("test_acc"), "val-chosen test acc": chosen["test_acc"],
            "val-chosen step": chosen["step"],
            "evals": [[h["step"], h["val_acc"], h["test_acc"]] for h in result.history]}


def ticket_row(trial: int, method: str, target: float, result, steps: float, sparsity: float) -> dict:
    """The record of one ticket of bench_tickets.py."""
    return {"trial": trial, "method": method, "sparsity": target, "actual sparsity": sparsity,
            "max test acc": result.best("test_acc"), "final test acc": result.final("test_acc"),
            "train steps": steps, **selection(result)}
