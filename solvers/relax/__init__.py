"""Mask relaxations trained with torch (CPU or GPU): sigmoid, annealed sigmoid,
straight-through top-k, and their schedules. Solver side only: takes a loss closure over
a flat soft mask and the budget's scope units; never imports the rest of maskopt."""

from maskopt.solvers.relax.core import (
    STAGES,
    Anneal,
    Checks,
    Segments,
    Sigmoid,
    Stage,
    StageResult,
    Ste,
    TopK,
    Workspace,
    masked_product,
    run_stage,
)

__all__ = ["STAGES", "Anneal", "Checks", "Segments", "Sigmoid", "Stage", "StageResult", "Ste", "TopK", "Workspace",
           "masked_product", "run_stage"]
