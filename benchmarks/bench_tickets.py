"""The MNIST-1D lottery-ticket experiment (Greydanus 2020) reproduced with maskopt, plus every
baseline at the same sparsities.

The published numbers are the outputs of the notebook's 2020 execution on CUDA
(greydanus/mnist1d ``notebooks/lottery-tickets.ipynb``); ``notebooks/5. lottery_tickets.ipynb``
holds a later re-execution of the same code on CPU. Both are reference data in
``experiments/tickets_mnist1d.toml``, with the protocol itself (``tickets_protocol.py`` reads it):

- data: MNIST-1D from ``mnist1d.data.make_dataset(get_dataset_args())`` (4000/1000);
- model: the 40-500-500-10 MLP with its residual connection (``mnist1d_mlp``), PyTorch's
  default initialization after ``torch.manual_seed(42 + trial)``;
- training: Adam, lr 2e-2, batch 100 taken in order (no shuffling), 1501 steps, test
  accuracy every 100 steps; the reported number is the maximum test accuracy;
- IMP: 100 retrains on the schedule ``linspace(0, 1, 100)`` of sparsities, layer-wise
  magnitude pruning of each layer's weight and bias together as one vector (the notebook's
  ``SparseLinear`` masks the concatenated weight+bias: maskopt's ``scope="module"``),
  survivors rewound to the initialization; "90 %" is retrain #90 (sparsity 89/99 = 0.899),
  95 % #95 (0.949), 98 % #98 (0.980), 99 % #99 (0.990);
- IMP scores the next round by the weights of each run's last checkpoint, not its final
  weights: the notebook's ``train_model`` checkpoints every 1000 steps and
  ``find_lottery_ticket`` continues from the last checkpoint, which for 1501 steps is the one
  after optimizer step 1001 (maskopt's ``score_step=1001``);
- random: a fresh uniformly random mask of each layer's weight+bias at the same sparsity,
  from the same initialization.
Small difference left: the notebook takes 1502 optimizer steps per run and evaluates after
steps 1, 101, ..., 1501 (maskopt: 1501 steps, after 100, 200, ..., 1500, 1501); its 1502nd
step changes no number it reports.

The other baselines (magnitude at init, SNIP, GraSP, SynFlow, K-starts, dissipating
gradients, their combination) choose their mask at the same sparsities (SNIP/GraSP from
the cross-entropy on the 4000 training samples; K-starts/dissipating trained 2 epochs on
the labels) and the ticket is trained with the same protocol. Compute = training steps
(batches of 100) spent to find the mask, then + 1501 for the ticket.

    python benchmarks/bench_tickets.py                      # trials 0 and 1, every method
    python benchmarks/bench_tickets.py --trials 0 --rows-out tickets_mnist1d_trial0   # one trial's rows
    python benchmarks/bench_tickets.py --rows-in tickets_mnist1d_trial0 tickets_mnist1d_trial1
    python benchmarks/bench_tickets.py --random-seeds 10   # random tickets over 10 mask seeds
    python benchmarks/bench_tickets.py --imp-trials 2 3    # IMP from further initializations
    python benchmarks/bench_tickets.py --imp-erk 0 1       # IMP under the ERK allocation
    python benchmarks/bench_tickets.py --report            # rewrite docs/benchmarks/tickets.md's blocks
    python benchmarks/bench_tickets.py --quick             # the pipeline in seconds (results to a temp dir)
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from _common import load_results, machine, results_dir, save_results, use_scratch_results, write_sections
from tickets_protocol import Mnist1dSetup, load_setup
from tickets_report import goals, plot, sections
from tickets_tasks import imp_erk_task, imp_trial, random_spread, run_trial

import maskopt as mo

PAGE = "tickets"
__all__ = ["PAGE", "goals", "sections"]


def table_main(args: argparse.Namespace, setup: Mnist1dSetup) -> int:
    """Every method from each trial's initialization (section tickets_mnist1d); ``--rows-out``
    saves one run's rows only, ``--rows-in`` pools saved runs instead of running."""
    t0 = time.perf_counter()
    if args.rows_in:
        records = [load_results(name) for name in args.rows_in]
        rows = [r for record in records for r in record["rows"]]
        ran_on = "; ".join(dict.fromkeys(record["machine"] for record in records))
    else:
        data = mo.data.mnist1d()
        rows = [r for trial in args.trials for r in run_trial(setup, trial, data, args.methods)]
        ran_on = machine()
    if args.rows_out:
        save_results(args.rows_out, {"machine": ran_on, "rows": rows})
        return 0
    save_results("tickets_mnist1d", {"machine": ran_on, "rows": rows, "seconds": time.perf_counter() - t0})
    return 0


def spread_main(args: argparse.Namespace, setup: Mnist1dSetup) -> int:
    """Random-mask tickets over ``--random-seeds`` mask seeds (section tickets_random_spread)."""
    if args.random_seeds < 2:
        raise SystemExit("--random-seeds needs at least 2 seeds (a spread).")
    data = mo.data.mnist1d()
    rows = [r for t in args.trials for r in random_spread(setup, t, args.random_seeds, data)]
    save_results("tickets_random_spread", {"rows": rows, "threads": args.threads})
    return 0


def imp_spread_main(args: argparse.Namespace, setup: Mnist1dSetup) -> int:
    """IMP from further initializations pooled with tickets_mnist1d.json's (section tickets_imp_spread)."""
    recorded = load_results("tickets_mnist1d")
    if recorded is None:
        raise SystemExit(f"no tickets_mnist1d.json in {results_dir()}: run the table first.")
    rows = [r for r in recorded["rows"] if r["method"] == "imp"]
    if args.jobs <= 1:
        rows += [r for t in args.imp_trials for r in imp_trial(setup, t)]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for out in [pool.submit(imp_trial, setup, t) for t in args.imp_trials]:
                rows += out.result()
    save_results("tickets_imp_spread", {"rows": rows})
    return 0


def imp_erk_main(args: argparse.Namespace, setup: Mnist1dSetup) -> int:
    """IMP to the ERK allocation, one chain per goal sparsity (section tickets_imp_erk); the
    recorded rows of other initializations are kept."""
    old = load_results("tickets_imp_erk")
    kept = [r for r in old["rows"] if r["trial"] not in args.imp_erk] if old else []
    calls = [(t, target) for t in args.imp_erk for target in setup.erk_targets]
    if args.jobs <= 1:
        rows = [imp_erk_task(setup, t, target) for t, target in calls]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:  # 3 chains on 2 cores: less idle time
            rows = [f.result() for f in [pool.submit(imp_erk_task, setup, t, target) for t, target in calls]]
    save_results("tickets_imp_erk", {"rows": sorted(kept + rows, key=lambda r: (r["trial"], r["sparsity"])),
                                     "budget": setup.erk})
    return 0


def report_main(args: argparse.Namespace, setup: Mnist1dSetup) -> int:
    """Rewrite this page's blocks and the plot from the results JSON."""
    write_sections(PAGE, sections())
    plot(results_dir() / "tickets_mnist1d.png")
    return 0


def quick_main(args: argparse.Namespace, setup: Mnist1dSetup) -> int:
    """Every run of this script on the [quick] setting: short trainings, one sparsity, trial 0
    (plus trial 1 for the IMP spread), two mask seeds."""
    use_scratch_results()
    quick = argparse.Namespace(**{**vars(args), "trials": [0], "methods": ["imp", "random", "magnitude"],
                                  "random_seeds": 2, "imp_trials": [2], "imp_erk": [0], "jobs": 1})
    for step in (table_main, spread_main, imp_spread_main, imp_erk_main):
        step(quick, setup)
    return 0


MODES = {"report": report_main, "quick": quick_main, "random_seeds": spread_main, "imp_trials": imp_spread_main,
         "imp_erk": imp_erk_main}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=["imp", "random", *load_setup().baselines])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of --imp-trials (3 for --imp-erk)")
    ap.add_argument("--rows-out", metavar="NAME", help="only run the trials and save their rows as results NAME")
    ap.add_argument("--rows-in", nargs="+", metavar="NAME", help="pool the rows of saved --rows-out runs")
    ap.add_argument("--random-seeds", type=int, help="instead: random-mask tickets over this many mask seeds "
                    "per trial and sparsity (section tickets_random_spread)")
    ap.add_argument("--imp-trials", type=int, nargs="+", help="instead: IMP from these further initializations "
                    "(seed 42 + trial, one process each), pooled with trials 0 and 1 of tickets_mnist1d.json "
                    "(section tickets_imp_spread)")
    ap.add_argument("--imp-erk", type=int, nargs="+", metavar="TRIAL",
                    help="instead: IMP to the ERK allocation from these initializations, one chain per "
                    "target (section tickets_imp_erk)")
    ap.add_argument("--report", action="store_true", help="instead: rewrite the docs blocks and the plot, run nothing")
    ap.add_argument("--quick", action="store_true", help="instead: every run on a tiny setting (seconds)")
    return ap


def main() -> int:
    args = parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mode = next((m for m in MODES if getattr(args, m)), None)
    return MODES.get(mode, table_main)(args, load_setup(quick=args.quick))


if __name__ == "__main__":
    sys.exit(main())
