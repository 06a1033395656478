"""Benchmark: unrolled sparse solvers on the sparse-coding benchmark.

250×500 dictionary (seed 0), x Bernoulli(0.1)×N(0,1), 16 layers, test set of 1000 samples;
NMSE in the aggregate convention 10·log10(Σ‖x̂−x‖² / Σ‖x‖²) (per-sample mean dB in the JSON too).
Results go to ``results_dir()/lista_*.json``; the page ``docs/benchmarks/unrolled.md`` is
built from them by ``lista_report.py``.

1. ``train``: one method at one SNR with the settings of ``SETTINGS`` (one torch thread),
   written to ``lista_<method>_snr<snr>.json``.
2. ``fista``: FISTA's NMSE after each of 4000 iterations on the same test set, for λ
   continuation and fixed λ → ``lista_fista_iters.json``; the report reads off the
   iterations each method's 16-layer NMSE takes FISTA.
3. ``transfer``: a noise-free trained model (from its checkpoint) on the SNR-40 test set.
4. ``lasso``: the LASSO solution at SNR 40 (2000 FISTA iterations, λ best on validation),
   the reference of what the convex formulation reaches at that noise level.
5. ``refit``: HyperLISTA at SNR 40 followed by two-stage least-squares debiasing.
6. ``report`` (or ``--report``): the plot ``lista_nmse.png`` and the page's blocks.

    nice -n 10 python benchmarks/bench_lista.py train --method alista --snr inf
    nice -n 10 python benchmarks/bench_lista.py fista
    python benchmarks/bench_lista.py --report
    python benchmarks/bench_lista.py --quick     # the whole pipeline on a 20×40 problem, in seconds
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from maskopt.solvers.unrolled import (
    SparseCodingProblem,
    TrainConfig,
    build_model,
    debias,
    evaluate_layers,
    fista,
    fista_schedules,
    nmse_db,
    nmse_db_per_sample,
    oracle_nmse_db,
    run_method,
)
from maskopt.solvers.unrolled.bench import CONVENTION

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import load_results, results_dir, save_results, use_scratch_results, write_sections  # noqa: E402
from lista_report import PAGE, clean_records, goals, name, sections  # noqa: E402,F401  (the page's contract)


@dataclass(frozen=True)
class Size:
    """The benchmark's dimensions: problem m×n, layers, test samples, FISTA and LASSO iterations,
    HyperLISTA's search (grid points, rounds) noise-free and at finite SNR, Nelder–Mead evaluations."""

    m: int = 250
    n: int = 500
    layers: int = 16
    test: int = 1000
    fista_iters: int = 4000
    lasso_iters: int = 2000
    search_clean: tuple[int, int] = (7, 4)
    search_noisy: tuple[int, int] = (5, 3)
    search_local: int = 150


FULL = Size()
QUICK = Size(m=20, n=40, layers=3, test=50, fista_iters=40, lasso_iters=20, search_clean=(2, 1), search_noisy=(2, 1),
             search_local=3)
BASE = TrainConfig(batch_size=128, val_size=1000, val_every=25, patience=3, clock="process")
SETTINGS = {  # stage-wise training budgets in CPU seconds of one thread (the machine is shared)
    "alista": replace(BASE, lr=3e-2, max_steps=200, time_limit=1200.0),
    "lista-cpss": replace(BASE, lr=5e-4, scalar_lr=3e-2, max_steps=150, patience=2, time_limit=1500.0),
    "lista-cp": replace(BASE, lr=5e-4, scalar_lr=3e-2, max_steps=400, patience=2, time_limit=1500.0),
    "lista": replace(BASE, lr=5e-4, scalar_lr=3e-3, max_steps=400, patience=2, time_limit=1500.0),
    "fista": BASE, "ista": BASE, "hyperlista": replace(BASE, val_size=500),  # search on 500 validation samples
}
QUICK_CONFIG = replace(BASE, batch_size=16, val_size=50, val_every=2, patience=1, max_steps=2, time_limit=30.0)
# LISTA-CP(SS) start from the analytic ALISTA weight (W_k = W̃): from the standard ISTA start
# (W_k = A/L) the 30-minute budget is far from enough
MODEL_OPTIONS = {"lista-cpss": {"init": "alista"}, "lista-cp": {"init": "alista"}}
NOISY_SETTINGS = {"alista": replace(SETTINGS["alista"], max_steps=100, patience=2, time_limit=600.0)}  # SNR 40: less
LASSO_LAMBDAS = (3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2)
REFIT_THRESHOLDS = (0.0, 1e-2, 2e-2, 3e-2)  # support {|x̂| > t} of the first least-squares stage
PRUNE_THRESHOLDS = (0.0, 5e-3, 1e-2, 1.5e-2, 2e-2, 2.5e-2, 3e-2, 4e-2)  # second stage drops |z| <= this
CHECKPOINTS = Path(tempfile.gettempdir()) / "maskopt-lista"  # per-layer checkpoints; a rerun resumes from them


def config_of(method: str, snr: float, size: Size) -> TrainConfig:
    if size != FULL:
        return QUICK_CONFIG
    return SETTINGS[method] if math.isinf(snr) else NOISY_SETTINGS.get(method, SETTINGS[method])


def train(method: str, snr: float, size: Size = FULL, checkpoints: Path = CHECKPOINTS) -> None:
    torch.set_num_threads(1)
    checkpoints.mkdir(parents=True, exist_ok=True)
    points, rounds = size.search_clean if math.isinf(snr) else size.search_noisy
    record = run_method(method, layers=size.layers, snr_db=snr, m=size.m, n=size.n, test_size=size.test,
                        config=config_of(method, snr, size), verbose=False, search_points=points,
                        search_rounds=rounds, search_local=size.search_local, model_options=MODEL_OPTIONS.get(method),
                        checkpoint=checkpoints / f"{name(method, snr)}.pt")
    if not math.isinf(snr):
        problem = SparseCodingProblem(m=size.m, n=size.n, snr_db=snr)
        y, x = problem.sample("test", size.test)
        record["noise_floor_db"] = oracle_nmse_db(problem.A, y, x)
    save_results(name(method, snr), record)
    print(method, snr, f"{record['nmse_db'][-1]:.2f} dB", f"{record['prepare_time_s']:.0f} s")


def transfer(method: str, snr: float, size: Size = FULL, checkpoints: Path = CHECKPOINTS) -> None:
    """The noise-free trained ``method`` (its checkpoint) evaluated on the SNR-``snr`` test set."""
    torch.set_num_threads(1)
    saved = torch.load(checkpoints / f"{name(method, math.inf)}.pt", weights_only=False)
    problem = SparseCodingProblem(m=size.m, n=size.n, snr_db=snr)
    model = build_model(method, problem.A, size.layers, **MODEL_OPTIONS.get(method, {}))
    model.load_state_dict(saved["state"])
    y, x = problem.sample("test", size.test)
    curves = evaluate_layers(model, y, x)
    clean = load_results(name(method, math.inf))
    save_results(f"{name(method, snr)}_transfer", {
        "method": f"{method} (trained noise-free)", "layers": size.layers, "snr_db": snr, "convention": CONVENTION,
        "nmse_db": curves["aggregate"], "nmse_db_per_sample": curves["per_sample"],
        "prepare_time_s": clean["prepare_time_s"], "prepare_cpu_s": clean["prepare_cpu_s"],
        "settings": clean["settings"], "noise_floor_db": oracle_nmse_db(problem.A, y, x)})
    print(method, snr, f"{curves['aggregate'][-1]:.2f} dB")


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def _save_reference(record_name: str, method: str, command: str, problem: SparseCodingProblem, y: torch.Tensor,
                    x: torch.Tensor, est: torch.Tensor, prep: tuple[float, float], settings: dict,
                    **extra) -> None:
    """Write the record of a reference estimator at SNR ``problem.snr_db``: its test NMSE
    (``est`` of ``x`` from ``y``), its preparation time ``prep`` = (wall, CPU) seconds and
    the oracle floor, in the format of the trained models' records."""
    snr = problem.snr_db
    save_results(record_name, {
        "method": method, "command": f"{command} --snr {snr:g}", "snr_db": snr, "convention": CONVENTION,
        "nmse_db": [nmse_db(est, x)], "nmse_db_per_sample": [nmse_db_per_sample(est, x)],
        "prepare_time_s": prep[0], "prepare_cpu_s": prep[1], "settings": settings,
        "noise_floor_db": oracle_nmse_db(problem.A, y, x), **extra})


def lasso_part(snr: float = 40.0, size: Size = FULL) -> None:
    """The LASSO solution (``size.lasso_iters`` FISTA iterations) at SNR ``snr``, λ of
    ``LASSO_LAMBDAS`` best on the validation split, evaluated on the test split."""
    torch.set_num_threads(1)
    start = _clock()
    problem = SparseCodingProblem(m=size.m, n=size.n, snr_db=snr)
    y_val, x_val = problem.sample("validation", size.test)
    val = {lam: fista(problem.A, y_val, lam, size.lasso_iters).x for lam in LASSO_LAMBDAS}
    lam = min(LASSO_LAMBDAS, key=lambda v: nmse_db(val[v], x_val))
    prepared = tuple(now - then for now, then in zip(_clock(), start))
    y, x = problem.sample("test", size.test)
    est = fista(problem.A, y, lam, size.lasso_iters).x
    _save_reference(name("lasso", snr), f"lasso solution ({size.lasso_iters} FISTA iterations)", "lasso", problem, y,
                    x, est, prepared,
                    {"lam": lam, "validation_nmse_db": {str(v): nmse_db(val[v], x_val) for v in LASSO_LAMBDAS}})
    print(f"lasso, SNR {snr:g}: λ={lam}, {nmse_db(est, x):.2f} dB")


def refit_part(snr: float = 40.0, size: Size = FULL) -> None:
    """HyperLISTA at SNR ``snr`` with its recorded hyperparameters (``train --method
    hyperlista`` first), followed by two-stage least-squares debiasing (``debias``: least
    squares on {|x̂| > t}, drop |z| <= prune, least squares again; the pair (t, prune) of
    ``REFIT_THRESHOLDS`` × ``PRUNE_THRESHOLDS`` best on the validation split, prune = 0 being
    the plain refit): how close debiasing brings a non-oracle estimate to the oracle floor."""
    torch.set_num_threads(1)
    record = load_results(name("hyperlista", snr))
    if record is None:
        raise SystemExit(f"refit needs {name('hyperlista', snr)}.json: run train --method hyperlista "
                         f"--snr {snr:g} first.")
    start = _clock()
    problem = SparseCodingProblem(m=size.m, n=size.n, snr_db=snr)
    hyper = {k: record["settings"][k] for k in ("c_theta", "c_beta", "c_p")}
    model = build_model("hyperlista", problem.A, size.layers, **hyper)
    y_val, x_val = problem.sample("validation", size.test)
    with torch.no_grad():
        est_val = model(y_val)
    val = {}
    for t in REFIT_THRESHOLDS:  # the first stage once per t; debias(z, threshold=p) is the second stage
        z = debias(problem.A, y_val, est_val, t)
        val |= {(t, p): nmse_db(debias(problem.A, y_val, z, p) if p > 0 else z, x_val) for p in PRUNE_THRESHOLDS}
    t, p = min(val, key=val.get)
    plain = min(REFIT_THRESHOLDS, key=lambda k: val[(k, 0.0)])
    prepared = tuple(now - then for now, then in zip(_clock(), start))
    y, x = problem.sample("test", size.test)
    with torch.no_grad():
        raw = model(y)
    est = debias(problem.A, y, raw, t, p)
    plain_db = nmse_db(debias(problem.A, y, raw, plain), x)
    clean_y = x @ problem.A.T  # the measurement noise's std: y's deviation from A x
    _save_reference(f"{name('hyperlista', snr)}_refit", "hyperlista + two-stage LS debiasing", "refit", problem, y, x,
                    est, prepared, {**hyper, "threshold": t, "prune": p, "plain_refit": {"threshold": plain,
                                                                                          "test_nmse_db": plain_db},
                                    "validation_nmse_db": {f"{k[0]:g},{k[1]:g}": v for k, v in val.items()}},
                    noise_std=float((y - clean_y).std()))
    print(f"hyperlista + debias, SNR {snr:g}: t={t:g}, prune={p:g}: {nmse_db(est, x):.2f} dB "
          f"(plain refit t={plain:g}: {plain_db:.2f} dB)")


def fista_part(size: Size = FULL) -> None:
    torch.set_num_threads(1)
    problem = SparseCodingProblem(m=size.m, n=size.n)
    y, x = problem.sample("test", size.test)
    curves = fista_schedules(problem.A, y, x, max_iters=size.fista_iters)
    save_results("lista_fista_iters", {"test_samples": size.test, "max_iters": size.fista_iters,
                                       "curves": {run: [round(v, 3) for v in c] for run, c in curves.items()}})
    print({run: min(c) for run, c in curves.items()})


def plot() -> None:
    """``results_dir()/lista_nmse.png``: NMSE per layer of every noise-free record, and the
    FISTA curves of λ continuation and the smallest fixed λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, fista_iters = clean_records(), load_results("lista_fista_iters")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in records:
        ax.plot(range(1, len(r["nmse_db"]) + 1), r["nmse_db"], marker="o", ms=3, label=r["method"])
    if fista_iters:
        for run, c in fista_iters["curves"].items():
            if run.startswith("continuation") or run == "fixed lam=0.0001":
                ax.plot(range(1, len(c) + 1), c, lw=1, ls="--", label=f"FISTA {run}")
    ax.set_xscale("log")
    ax.set_xlabel("layer / iteration")
    ax.set_ylabel("test NMSE (dB, aggregate)")
    if records:
        ax.set_title(f"Sparse coding {records[0]['m']}×{records[0]['n']}, noise-free")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    results_dir().mkdir(parents=True, exist_ok=True)
    fig.savefig(results_dir() / "lista_nmse.png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def report() -> None:
    """The plot and the page's generated blocks, from the JSON."""
    plot()
    write_sections(PAGE, sections())


def quick() -> None:
    """Every part on the ``QUICK`` problem (20×40, 3 layers, a few training steps), writing
    the same result names as the full run into ``results_dir()``."""
    use_scratch_results()
    checkpoints = Path(tempfile.mkdtemp(prefix="maskopt-lista-quick-"))
    for method in ("alista", "lista-cpss", "hyperlista", "fista"):
        train(method, math.inf, QUICK, checkpoints)
    for method in ("alista", "hyperlista"):
        train(method, 40.0, QUICK, checkpoints)
    transfer("alista", 40.0, QUICK, checkpoints)
    refit_part(40.0, QUICK)
    lasso_part(40.0, QUICK)
    fista_part(QUICK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("train", "transfer", "fista", "lasso", "refit", "report"))
    parser.add_argument("--method", choices=sorted(SETTINGS), help="for train and transfer")
    parser.add_argument("--snr", type=float, default=math.inf,
                        help="for train and transfer: SNR in dB (default inf); for lasso and refit (default 40)")
    parser.add_argument("--report", action="store_true", help="the plot and the page's blocks (same as `report`)")
    parser.add_argument("--quick", action="store_true", help="every part on a tiny problem, in seconds")
    args = parser.parse_args()
    if args.quick:
        quick()
        return
    part = "report" if args.report else args.part
    if part is None:
        parser.error("give a part, --report or --quick")
    if part in ("train", "transfer") and args.method is None:
        parser.error(f"{part} needs --method")
    if part == "train":
        train(args.method, args.snr)
    elif part == "transfer":
        transfer(args.method, args.snr)
    elif part == "fista":
        fista_part()
    elif part in ("lasso", "refit"):
        (lasso_part if part == "lasso" else refit_part)(args.snr if not math.isinf(args.snr) else 40.0)
    else:
        report()


if __name__ == "__main__":
    main()
