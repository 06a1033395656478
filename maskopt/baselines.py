"""Heuristic baselines registered as methods. Each one only defines a score per weight;
the budget's projection (top scores within each scope unit) turns scores into a mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskopt.api import MethodOutput, register
from maskopt.problems import Problem


@dataclass(frozen=True)
class NoOptions:
    """This method has no options."""


@dataclass(frozen=True)
class RandomOptions:
    """Options of ``method="random"``: the seed of the random scores."""

    seed: int = 0


@register("magnitude", options=NoOptions, problems=(Problem,),
          summary="keep the largest |w| within each scope unit")
def _magnitude(problem: Problem, opts: NoOptions) -> MethodOutput:
    scores = {n: w.abs() for n, w in problem.weights().items()}
    return MethodOutput(problem.allocation.project(scores))


@register("random", options=RandomOptions, problems=(Problem,),
          summary="keep uniformly random weights within each scope unit (seeded)")
def _random(problem: Problem, opts: RandomOptions) -> MethodOutput:
    gen = torch.Generator().manual_seed(opts.seed)
    scores = {n: torch.rand(tuple(s), generator=gen) for n, s in problem.mask_shapes().items()}
    return MethodOutput(problem.allocation.project(scores))
