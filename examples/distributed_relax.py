"""Data-parallel mask search with ``torch.distributed``: every rank builds the same problem
and calls ``solve`` with ``distributed=True``; each takes its share of every batch, the
score gradients are summed over the ranks, every rank ends with the same mask, and rank 0
writes it.

On CPU (gloo), two processes::

    torchrun --standalone --nproc_per_node=2 examples/distributed_relax.py --out dp-run

On GPUs (NCCL), one process per GPU::

    torchrun --standalone --nproc_per_node=8 examples/distributed_relax.py --backend nccl --device cuda --out dp-run

The problem: a 64-64-10 student at its initialization distilled from a 64-128-10 teacher
trained on scikit-learn's digits, at 90 % sparsity. Outputs in ``--out``:
``masks.safetensors`` and ``result.json`` (objective, history of training losses, world
size; written by rank 0); with ``--every-rank``, ``rank{r}.safetensors`` from every rank.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist

import maskopt as mo
from maskopt.report import write_json


def problem(samples: int) -> mo.DistillProblem:
    """The same problem on every rank (seeded)."""
    data = mo.data.digits(seed=0)
    torch.manual_seed(0)
    teacher = mo.models.create("mlp", in_features=64, hidden=[128], num_classes=10)
    mo.train(teacher, data, epochs=5, verbose=False)
    torch.manual_seed(1)
    student = mo.models.create("mlp", in_features=64, hidden=[64], num_classes=10)
    return mo.DistillProblem(student, [teacher], data.x[:samples], mo.Budget(sparsity=0.9), loss="kl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (each rank takes the GPU of its LOCAL_RANK)")
    ap.add_argument("--method", default="hierarchy", choices=["sigmoid", "anneal", "ste", "hierarchy"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=256, help="the global batch, split over the ranks")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--every-rank", action="store_true", help="every rank also writes its mask")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(args.backend)
    try:
        rank = dist.get_rank()
        res = mo.solve(problem(args.samples), method=args.method, steps=args.steps, batch_size=args.batch_size,
                       dtype=args.dtype, device=args.device, distributed=True, verbose=rank == 0)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.every_rank:
            res.masks.save(args.out / f"rank{rank}.safetensors")
        if rank == 0:
            res.masks.save(args.out / "masks.safetensors")
            write_json(args.out / "result.json", {
                "objective": res.objective, "world_size": res.stats["world_size"], "method": args.method,
                "losses": [h["loss"] for h in res.history], "training_objective": res.stats["training_objective"]})
            print(f"{args.method}: objective {res.objective:.6g} on {res.stats['world_size']} ranks -> {args.out}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
