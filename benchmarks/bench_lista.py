"""Benchmark: unrolled sparse solvers on the sparse-coding benchmark (issue 7).

250×500 dictionary (seed 0), x Bernoulli(0.1)×N(0,1), 16 layers, test set of 1000 samples;
NMSE in the aggregate convention 10·log10(Σ‖x̂−x‖² / Σ‖x‖²) (per-sample mean dB in the JSON too).

1. ``train``: one method at one SNR with the settings of ``SETTINGS`` (one torch thread),
   written to ``results/lista_<method>_snr<snr>.json``.
2. ``fista``: FISTA iterations (fixed best λ, or λ continuation) needed to reach each trained
   method's final test NMSE, on the same test set → ``results/lista_fista_iters.json``.
3. ``report``: the plot ``results/lista_nmse.png`` and the BENCHMARKS.md section.

    nice -n 10 python benchmarks/bench_lista.py train --method alista --snr inf
    nice -n 10 python benchmarks/bench_lista.py fista
    python benchmarks/bench_lista.py report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from maskopt.solvers.unrolled import (
    SparseCodingProblem,
    TrainConfig,
    fista_iterations_to_reach,
    oracle_nmse_db,
    run_method,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import machine, replace_section, save_results  # noqa: E402

LAYERS = 16
FISTA_ITERS = 4000
BASE = TrainConfig(batch_size=128, val_size=1000, val_every=25, patience=3)
SETTINGS = {  # stage-wise training budgets chosen to fit 30 minutes on 2 shared cores
    "alista": replace(BASE, lr=3e-2, max_steps=400, time_limit=1500.0),
    "lista-cpss": replace(BASE, lr=1e-3, max_steps=300, time_limit=1750.0),
    "lista-cp": replace(BASE, lr=1e-3, max_steps=150, time_limit=900.0),
    "lista": replace(BASE, lr=1e-3, max_steps=150, time_limit=900.0),
    "fista": BASE, "ista": BASE, "hyperlista": BASE,
}
OPEN_L2O = {"alista": -78.0, "lista-cpss": -63.0, "lista": -35.0}  # 256×512, 16 layers, noise-free


def _name(method: str, snr: float) -> str:
    return f"lista_{method}_snr{'inf' if math.isinf(snr) else int(snr)}"


def train(method: str, snr: float) -> None:
    torch.set_num_threads(1)
    record = run_method(method, layers=LAYERS, snr_db=snr, config=SETTINGS[method], verbose=False,
                        checkpoint=RESULTS / f"{_name(method, snr)}.pt" if method in SETTINGS and method not in (
                            "fista", "ista", "hyperlista") else None)
    if not math.isinf(snr):
        problem = SparseCodingProblem(snr_db=snr)
        y, x = problem.sample("test", 1000)
        record["noise_floor_db"] = oracle_nmse_db(problem.A, y, x)
    save_results(_name(method, snr), record)
    print(method, snr, f"{record['nmse_db'][-1]:.2f} dB", f"{record['prepare_time_s']:.0f} s")


def fista_part() -> None:
    torch.set_num_threads(1)
    problem = SparseCodingProblem()
    y, x = problem.sample("test", 1000)
    targets = {}
    for method in ("alista", "lista-cpss", "lista-cp", "lista", "hyperlista"):
        path = RESULTS / f"{_name(method, math.inf)}.json"
        if path.exists():
            targets[method] = json.loads(path.read_text())["nmse_db"][-1]
    found = fista_iterations_to_reach(problem, y, x, targets, max_iters=FISTA_ITERS)
    keep = sorted({*range(1, 101), *range(100, FISTA_ITERS + 1, 10)})  # iterations stored for the plot
    curves = {run: {"iteration": keep, "nmse_db": [c[k - 1] for k in keep]} for run, c in found["curves"].items()}
    save_results("lista_fista_iters", {"test_samples": 1000, "max_iters": FISTA_ITERS, "targets": found["targets"],
                                       "best_reached_db": {r: min(c) for r, c in found["curves"].items()},
                                       "curves": curves})
    print(json.dumps(found["targets"], indent=1))


def report() -> None:
    raise NotImplementedError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("train", "fista", "report"))
    parser.add_argument("--method", choices=sorted(SETTINGS), help="for train")
    parser.add_argument("--snr", type=float, default=math.inf, help="for train: SNR in dB (default inf)")
    args = parser.parse_args()
    if args.part == "train":
        if args.method is None:
            parser.error("train needs --method")
        train(args.method, args.snr)
    elif args.part == "fista":
        fista_part()
    else:
        report()


if __name__ == "__main__":
    main()
