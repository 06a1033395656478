"""Benchmark: unrolled sparse solvers on the sparse-coding benchmark (issue 7).

250×500 dictionary (seed 0), x Bernoulli(0.1)×N(0,1), 16 layers, test set of 1000 samples;
NMSE in the aggregate convention 10·log10(Σ‖x̂−x‖² / Σ‖x‖²) (per-sample mean dB in the JSON too).

1. ``train``: one method at one SNR with the settings of ``SETTINGS`` (one torch thread),
   written to ``results/lista_<method>_snr<snr>.json``.
2. ``fista``: FISTA's NMSE after each of 4000 iterations on the same test set, for λ
   continuation and fixed λ → ``results/lista_fista_iters.json``; the report reads off the
   iterations each method's 16-layer NMSE takes FISTA.
3. ``transfer``: a noise-free trained model (from its checkpoint) on the SNR-40 test set.
4. ``lasso``: the LASSO solution at SNR 40 (2000 FISTA iterations, λ best on validation),
   the reference of what the convex formulation reaches at that noise level.
5. ``report``: the plot ``results/lista_nmse.png`` and the BENCHMARKS.md section.

    nice -n 10 python benchmarks/bench_lista.py train --method alista --snr inf
    nice -n 10 python benchmarks/bench_lista.py fista
    python benchmarks/bench_lista.py report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
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
    iterations_to_reach,
    nmse_db,
    nmse_db_per_sample,
    oracle_nmse_db,
    run_method,
)
from maskopt.solvers.unrolled.bench import CONVENTION

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import replace_section, save_results  # noqa: E402

LAYERS = 16
FISTA_ITERS = 4000
BASE = TrainConfig(batch_size=128, val_size=1000, val_every=25, patience=3, clock="process")
SETTINGS = {  # stage-wise training budgets in CPU seconds of one thread (the machine is shared)
    "alista": replace(BASE, lr=3e-2, max_steps=200, time_limit=1200.0),
    "lista-cpss": replace(BASE, lr=5e-4, scalar_lr=3e-2, max_steps=150, patience=2, time_limit=1500.0),
    "lista-cp": replace(BASE, lr=5e-4, scalar_lr=3e-2, max_steps=400, patience=2, time_limit=1500.0),
    "lista": replace(BASE, lr=5e-4, scalar_lr=3e-3, max_steps=400, patience=2, time_limit=1500.0),
    "fista": BASE, "ista": BASE, "hyperlista": replace(BASE, val_size=500),  # search on 500 validation samples
}
# LISTA-CP(SS) start from the analytic ALISTA weight (W_k = W̃): from the standard ISTA start
# (W_k = A/L) the 30-minute budget is far from enough
MODEL_OPTIONS = {"lista-cpss": {"init": "alista"}, "lista-cp": {"init": "alista"}}
CHECKPOINTS = Path(tempfile.gettempdir()) / "maskopt-lista"  # per-layer checkpoints; a rerun resumes from them
NOISY_SETTINGS = {"alista": replace(SETTINGS["alista"], max_steps=100, patience=2, time_limit=600.0)}  # SNR 40: less
GOAL_MODELS = ("alista", "lista-cpss", "hyperlista")  # the models the goals name
OPEN_L2O = {"alista": -78.0, "lista-cpss": -63.0, "lista": -35.0}  # 256×512, 16 layers, noise-free


def _name(method: str, snr: float) -> str:
    return f"lista_{method}_snr{'inf' if math.isinf(snr) else int(snr)}"


def train(method: str, snr: float) -> None:
    torch.set_num_threads(1)
    CHECKPOINTS.mkdir(exist_ok=True)
    config = SETTINGS[method] if math.isinf(snr) else NOISY_SETTINGS.get(method, SETTINGS[method])
    record = run_method(method, layers=LAYERS, snr_db=snr, config=config, verbose=False,
                        search_points=7 if math.isinf(snr) else 5, search_rounds=4 if math.isinf(snr) else 3,
                        model_options=MODEL_OPTIONS.get(method), checkpoint=CHECKPOINTS / f"{_name(method, snr)}.pt")
    if not math.isinf(snr):
        problem = SparseCodingProblem(snr_db=snr)
        y, x = problem.sample("test", 1000)
        record["noise_floor_db"] = oracle_nmse_db(problem.A, y, x)
    save_results(_name(method, snr), record)
    print(method, snr, f"{record['nmse_db'][-1]:.2f} dB", f"{record['prepare_time_s']:.0f} s")


def transfer(method: str, snr: float) -> None:
    """The noise-free trained ``method`` (its checkpoint) evaluated on the SNR-``snr`` test set."""
    torch.set_num_threads(1)
    saved = torch.load(CHECKPOINTS / f"{_name(method, math.inf)}.pt", weights_only=False)
    problem = SparseCodingProblem(snr_db=snr)
    model = build_model(method, problem.A, LAYERS, **MODEL_OPTIONS.get(method, {}))
    model.load_state_dict(saved["state"])
    y, x = problem.sample("test", 1000)
    curves = evaluate_layers(model, y, x)
    clean = _load(_name(method, math.inf))
    save_results(f"{_name(method, snr)}_transfer", {
        "method": f"{method} (trained noise-free)", "layers": LAYERS, "snr_db": snr, "convention": CONVENTION,
        "nmse_db": curves["aggregate"], "nmse_db_per_sample": curves["per_sample"],
        "prepare_time_s": clean["prepare_time_s"], "prepare_cpu_s": clean["prepare_cpu_s"],
        "settings": clean["settings"], "noise_floor_db": oracle_nmse_db(problem.A, y, x)})
    print(method, snr, f"{curves['aggregate'][-1]:.2f} dB")


LASSO_LAMBDAS = (3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2)
LASSO_ITERS = 2000


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def _save_reference(name: str, method: str, command: str, problem: SparseCodingProblem, y: torch.Tensor,
                    x: torch.Tensor, est: torch.Tensor, prep: tuple[float, float], settings: dict) -> None:
    """Write the record of a reference estimator at SNR ``problem.snr_db``: its test NMSE
    (``est`` of ``x`` from ``y``), its preparation time ``prep`` = (wall, CPU) seconds and
    the oracle floor, in the format of the trained models' records."""
    snr = problem.snr_db
    save_results(name, {
        "method": method, "command": f"{command} --snr {snr:g}", "snr_db": snr, "convention": CONVENTION,
        "nmse_db": [nmse_db(est, x)], "nmse_db_per_sample": [nmse_db_per_sample(est, x)],
        "prepare_time_s": prep[0], "prepare_cpu_s": prep[1], "settings": settings,
        "noise_floor_db": oracle_nmse_db(problem.A, y, x)})


def lasso_part(snr: float = 40.0) -> None:
    """The LASSO solution (``LASSO_ITERS`` FISTA iterations) at SNR ``snr``, λ of
    ``LASSO_LAMBDAS`` best on the validation split, evaluated on the test split."""
    torch.set_num_threads(1)
    start = _clock()
    problem = SparseCodingProblem(snr_db=snr)
    y_val, x_val = problem.sample("validation", 1000)
    val = {lam: fista(problem.A, y_val, lam, LASSO_ITERS).x for lam in LASSO_LAMBDAS}
    lam = min(LASSO_LAMBDAS, key=lambda v: nmse_db(val[v], x_val))
    prepared = tuple(now - then for now, then in zip(_clock(), start))
    y, x = problem.sample("test", 1000)
    est = fista(problem.A, y, lam, LASSO_ITERS).x
    _save_reference(_name("lasso", snr), f"lasso solution ({LASSO_ITERS} FISTA iterations)", "lasso", problem, y, x,
                    est, prepared,
                    {"lam": lam, "validation_nmse_db": {str(v): nmse_db(val[v], x_val) for v in LASSO_LAMBDAS}})
    print(f"lasso, SNR {snr:g}: λ={lam}, {nmse_db(est, x):.2f} dB")


REFIT_THRESHOLDS = (0.0, 1e-2, 2e-2, 3e-2)  # support {|x̂| > t} of the first least-squares stage
PRUNE_THRESHOLDS = (0.0, 5e-3, 1e-2, 1.5e-2, 2e-2, 2.5e-2, 3e-2, 4e-2)  # second stage drops |z| <= this


def refit_part(snr: float = 40.0) -> None:
    """HyperLISTA at SNR ``snr`` with its recorded hyperparameters (``train --method
    hyperlista`` first), followed by two-stage least-squares debiasing (``debias``: least
    squares on {|x̂| > t}, drop |z| <= prune, least squares again; the pair (t, prune) of
    ``REFIT_THRESHOLDS`` × ``PRUNE_THRESHOLDS`` best on the validation split, prune = 0 being
    the plain refit): how close debiasing brings a non-oracle estimate to the oracle floor."""
    torch.set_num_threads(1)
    record = _load(_name("hyperlista", snr))
    if record is None:
        raise SystemExit(f"refit needs results/{_name('hyperlista', snr)}.json: run train --method hyperlista "
                         f"--snr {snr:g} first.")
    start = _clock()
    problem = SparseCodingProblem(snr_db=snr)
    hyper = {k: record["settings"][k] for k in ("c_theta", "c_beta", "c_p")}
    model = build_model("hyperlista", problem.A, LAYERS, **hyper)
    y_val, x_val = problem.sample("validation", 1000)
    with torch.no_grad():
        est_val = model(y_val)
    val = {}
    for t in REFIT_THRESHOLDS:  # the first stage once per t; debias(z, threshold=p) is the second stage
        z = debias(problem.A, y_val, est_val, t)
        val |= {(t, p): nmse_db(debias(problem.A, y_val, z, p) if p > 0 else z, x_val) for p in PRUNE_THRESHOLDS}
    t, p = min(val, key=val.get)
    plain = min(REFIT_THRESHOLDS, key=lambda k: val[(k, 0.0)])
    prepared = tuple(now - then for now, then in zip(_clock(), start))
    y, x = problem.sample("test", 1000)
    with torch.no_grad():
        raw = model(y)
    est = debias(problem.A, y, raw, t, p)
    plain_db = nmse_db(debias(problem.A, y, raw, plain), x)
    _save_reference(f"{_name('hyperlista', snr)}_refit", "hyperlista + two-stage LS debiasing", "refit", problem, y, x,
                    est, prepared, {**hyper, "threshold": t, "prune": p, "plain_refit": {"threshold": plain,
                                                                                          "test_nmse_db": plain_db},
                                    "validation_nmse_db": {f"{k[0]:g},{k[1]:g}": v for k, v in val.items()}})
    print(f"hyperlista + debias, SNR {snr:g}: t={t:g}, prune={p:g}: {nmse_db(est, x):.2f} dB "
          f"(plain refit t={plain:g}: {plain_db:.2f} dB)")


def fista_part() -> None:
    torch.set_num_threads(1)
    problem = SparseCodingProblem()
    y, x = problem.sample("test", 1000)
    curves = fista_schedules(problem.A, y, x, max_iters=FISTA_ITERS)
    save_results("lista_fista_iters", {"test_samples": 1000, "max_iters": FISTA_ITERS,
                                       "curves": {run: [round(v, 3) for v in c] for run, c in curves.items()}})
    print({run: min(c) for run, c in curves.items()})


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _settings(record: dict) -> str:
    s = record["settings"]
    if "lam" in s:
        return f"λ={s['lam']} (best on validation)"
    if "threshold" in s:
        plain = s["plain_refit"]
        return (f"the SNR-40 HyperLISTA (c_θ={s['c_theta']:.3g}, c_β={s['c_beta']:.3g}, c_p={s['c_p']:.3g}), then "
                f"least squares on S = {{i : |x̂_i| > {s['threshold']:g}}}, drop |z_i| ≤ {s['prune']:g}, least "
                f"squares again (t and prune best on validation; one stage alone, t = {plain['threshold']:g}: "
                f"{plain['test_nmse_db']:.2f} dB)")
    if "c_theta" in s:
        g = s.get("search")
        how = (f"grid {g['points']}³ × {g['rounds']} rounds + {g['local_evals']} Nelder–Mead evaluations on "
               f"{g['validation_samples']} validation samples" if g else "grid search")
        return f"c_θ={s['c_theta']:.3g}, c_β={s['c_beta']:.3g}, c_p={s['c_p']:.3g} ({how})"
    c = s["config"]
    init = s["model_options"].get("init")
    scalar = "" if c.get("scalar_lr") is None else f" (thresholds {c['scalar_lr']:g})"
    return (f"lr {c['lr']:g}{scalar}, batch {c['batch_size']}, ≤{c['max_steps']} steps/stage, {s['steps']} steps"
            + (f", init {init}" if init else "") + ("" if s["completed"] else ", time limit hit"))


def _plot(records: list[dict], fista_iters: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    ax.set_title("Sparse coding 250×500, noise-free")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "lista_nmse.png", dpi=120)


def _goals(clean: dict, noisy: dict, targets: dict) -> list[str]:
    def final(r: dict | None) -> float:
        return r["nmse_db"][-1] if r else math.nan

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**not met**")

    alista, cpss, hyper = (clean.get(m) for m in GOAL_MODELS)
    lines = [f"- ALISTA ≤ −60 dB: {final(alista):.2f} dB — {verdict(None if not alista else final(alista) <= -60)}",
             f"- LISTA-CPSS ≤ −50 dB: {final(cpss):.2f} dB — {verdict(None if not cpss else final(cpss) <= -50)}",
             f"- HyperLISTA (non-oracle) within 3 dB of ALISTA: {final(hyper) - final(alista):+.2f} dB — "
             f"{verdict(None if not (hyper and alista) else final(hyper) - final(alista) <= 3)}"]
    for m in GOAL_MODELS:
        if m in clean:
            cpu = clean[m]["prepare_cpu_s"]
            lines.append(f"- {m} prepared in under 30 min: {cpu / 60:.1f} CPU-min on one thread "
                         f"({clean[m]['prepare_time_s'] / 60:.1f} min wall on the shared machine) — "
                         f"{verdict(cpu < 1800)}")
    for m, t in targets.items():
        if m not in GOAL_MODELS:
            continue
        its = t["continuation"][0]
        lines.append(f"- FISTA with λ continuation needs ≥ 100× the layers of {m} (≥ {100 * LAYERS} iterations): "
                     + (f"{its} — {verdict(its >= 100 * LAYERS)}" if its else
                        f"not reached within {FISTA_ITERS} iterations — met"))
    for m, r in noisy.items():
        refit = r.get("command", "").startswith("refit")
        if refit or (m not in ("fista", "ista") and "command" not in r):  # unrolled models, and their refit
            gap = final(r) - r["noise_floor_db"]
            lines.append(f"- SNR 40, {m}{' (no oracle: y and A only)' if refit else ''} within 1 dB of the noise "
                         f"floor: {gap:+.2f} dB — {verdict(gap <= 1)}")
    return lines


def _ratios(targets: dict, kind: str) -> str:
    """Range of iterations / layers over the models of the goals, e.g. "47–54×"."""
    r = [t[kind][0] / LAYERS for m, t in targets.items() if t[kind][0] and m in GOAL_MODELS]
    return f"{min(r):.0f}–{max(r):.0f}×" if r else "—"


def _machines(records: list[tuple[str, dict]]) -> str:
    """The machines the (label, record) pairs were produced on, each with the runs it produced."""
    runs: dict[str, list[str]] = {}
    for label, r in records:
        runs.setdefault(r.get("machine", "not recorded"), []).append(label)
    return "; ".join(f"{m} ({', '.join(labels)})" for m, labels in runs.items())


def report() -> None:
    order = ("alista", "lista-cpss", "hyperlista", "lista-cp", "lista", "fista", "ista")
    clean = [r for m in order if (r := _load(_name(m, math.inf)))]
    noisy = [r for m in (*order, "lasso") for name in (_name(m, 40.0), f"{_name(m, 40.0)}_transfer",
                                                     f"{_name(m, 40.0)}_refit") if (r := _load(name))]
    commands = [f"train --method {r['method']} --snr inf" for r in clean] + [
        r["command"] if "command" in r else f"transfer --method {r['method'].split()[0]} --snr 40"
        if "noise-free" in r["method"] else f"train --method {r['method']} --snr 40" for r in noisy]
    fista_iters = _load("lista_fista_iters")
    targets: dict[str, dict] = {}  # method -> {"continuation" | "fixed": (iterations, schedule)}
    if fista_iters:
        for r in clean:
            if r["method"] not in ("fista", "ista"):
                targets[r["method"]] = {kind: iterations_to_reach(
                    {run: c for run, c in fista_iters["curves"].items() if run.startswith(kind)}, r["nmse_db"][-1])
                    for kind in ("continuation", "fixed")}
    _plot(clean, fista_iters)
    rows = ["| method | test NMSE dB (aggregate) | per-sample mean dB | prep. CPU s / wall s "
            "| FISTA iterations to match, λ continuation (× 16) | same, best fixed λ (× 16) | Open-L2O (256×512) "
            "| settings |", "|---|---|---|---|---|---|---|---|"]

    def match(its: int | None, run: str | None) -> str:
        return f"{its} (×{its / LAYERS:.0f}; {run})" if its else f"> {FISTA_ITERS} (×>{FISTA_ITERS // LAYERS})"

    for r in clean:
        t = targets.get(r["method"])
        ref = OPEN_L2O.get(r["method"])
        rows.append(f"| {r['method']} | {r['nmse_db'][-1]:.2f} | {r['nmse_db_per_sample'][-1]:.2f} "
                    f"| {r['prepare_cpu_s']:.0f} / {r['prepare_time_s']:.0f} "
                    f"| {match(*t['continuation']) if t else '—'} | {match(*t['fixed']) if t else '—'} "
                    f"| {'' if ref is None else ref} | {_settings(r)} |")
    noisy_rows = ["| method | test NMSE dB | noise floor dB (oracle support LS) | gap dB | prep. CPU s / wall s "
                  "| settings |",
                  "|---|---|---|---|---|---|"]
    for r in noisy:
        floor = r["noise_floor_db"]
        noisy_rows.append(f"| {r['method']} | {r['nmse_db'][-1]:.2f} | {floor:.2f} | {r['nmse_db'][-1] - floor:.2f} "
                          f"| {r['prepare_cpu_s']:.0f} / {r['prepare_time_s']:.0f} | {_settings(r)} |")
    best = {run: min(c) for run, c in (fista_iters or {}).get("curves", {}).items()}
    clean_by = {r["method"]: r for r in clean}
    body = "\n".join([
        "## Unrolled sparse solvers: sparse coding 250×500, 16 layers (issue 7)",
        "",
        "Commands (each run on one torch thread; most under `nice -n 10`, up to four at once on a machine shared "
        "with other jobs; the 2026-12-01 runs of hyperlista, lasso, lista and lista-cp beside one other job):",
        "",
        "```",
        *[f"nice -n 10 python benchmarks/bench_lista.py {c}" for c in commands],
        "nice -n 10 python benchmarks/bench_lista.py fista",
        "python benchmarks/bench_lista.py report",
        "```",
        "",
        "Machines (each record's own): " + _machines(
            [(f"{r['method']} at SNR inf", r) for r in clean] + [(f"{r['method']} at SNR 40", r) for r in noisy]
            + ([("FISTA iteration curves", fista_iters)] if fista_iters else [])),
        "",
        "Problem: A 250×500 with N(0, 1/250) entries and unit-norm columns (seed 0), x Bernoulli(0.1)×N(0,1), "
        "training batches generated online, 1000 validation and 1000 test samples. **NMSE convention: aggregate**, "
        "10·log10(Σ‖x̂−x‖² / Σ‖x‖²) over the test set (the convention of Open-L2O/LISTA-CPSS/ALISTA); the mean of "
        "per-sample dB values is shown beside it. Prep. = training (or search, or the choice of λ): CPU seconds of "
        "its single-threaded process, and wall seconds (longer: the machine was shared with other jobs at nice 0).",
        "",
        "### Noise-free",
        "",
        *rows,
        "",
        "FISTA iterations to match: the fewest FISTA iterations (on the same 1000 test samples, from x = 0) whose "
        "aggregate NMSE reaches the method's 16-layer NMSE, over λ continuation λ_k = max(1e-6, ρ^k) with "
        f"ρ ∈ {{0.99, 0.995, 0.998}} and fixed λ ∈ {{1e-4, 1e-3, 1e-2}}, at most {FISTA_ITERS} iterations. "
        "Best NMSE each FISTA schedule reached: " + ", ".join(f"{k}: {v:.1f} dB" for k, v in best.items()) + ".",
        "",
        "![NMSE per layer / iteration](benchmarks/results/lista_nmse.png)",
        "",
        "### SNR 40 dB",
        "",
        *noisy_rows,
        "",
        "### Goals of issue 7",
        "",
        *_goals({r["method"]: r for r in clean}, {r["method"]: r for r in noisy}, targets),
        "",
        "The 30-minute goal is judged on CPU time of the single-threaded run (what a dedicated core would take); "
        "wall times are several times longer because the two cores were shared with other jobs (load 9-14).",
        "",
        "### Notes",
        "",
        "- Training budgets are small: stage-wise with early stopping (a check every 25 steps, patience 3 or 2) and "
        "at most 200 (ALISTA) or 150 (LISTA-CPSS) steps of 128 samples per stage, about 7000 steps in all, where "
        "the Open-L2O/LISTA-CPSS recipes train for tens of thousands of steps per stage. That, and n = 500 instead "
        "of 512, is the likely reason for the distance to Open-L2O's published numbers: "
        + ", ".join(f"{m} {clean_by[m]['nmse_db'][-1] - ref:+.1f} dB" for m, ref in OPEN_L2O.items() if m in clean_by)
        + ".",
        "- LISTA-CPSS starts from the analytic ALISTA weight (W_k = W̃, θ_k = 0.1), not from the standard ISTA "
        "initialisation (W_k = A/L), and its thresholds learn at 0.03 while the matrices learn at 5e-4: with one "
        "learning rate (first attempt) layers 1-2 reached only −4.9/−6.8 dB instead of −6.1/−9.9 dB; the ISTA start "
        "was not run to 16 layers.",
        "- HyperLISTA is the non-oracle variant: θ_k, β_k and p_k come from ‖A⁺(Ax_k − y)‖₁, ‖x_k‖₀ and ‖A⁺y‖₁, "
        "never from the true x; its step is fixed at γ = 1 (the reference code's 1/L converged far slower here). "
        "Its three hyperparameters come from a log-grid refined round by round (spacing halved each round), then "
        "a Nelder–Mead search in log space from the grid's best point (settings column). The grid alone (7³ × 4 "
        "rounds) reached −66.83 dB noise-free, 3.74 dB from ALISTA, and −42.40 dB at SNR 40; the Nelder–Mead phase "
        "gains 1.5 dB noise-free and changes the SNR-40 test NMSE by +0.03 dB.",
        "- SNR 40: the lasso row is the convex problem ISTA-type iterations solve, run to convergence at its best "
        "λ; the unrolled models end about 5.5 dB below it (support selection removes part of the ℓ1 shrinkage "
        "bias). The floor is least squares on the true support: the error of an estimator told the support. "
        "The debiasing row (`refit`) post-processes HyperLISTA's estimate by least squares on its own support, "
        "then drops the entries whose least-squares coefficient is at most the prune level (false detections: "
        "their coefficients are of the noise's size; the measurement noise's std is 0.0045 here) and solves least "
        "squares again; it uses y and A only. One stage alone stays 1.1 dB above the floor; the second stage "
        "brings it within 1 dB. The unrolled models alone end 3.5 dB or more above the floor.",
        f"- FISTA with λ continuation reaches the 16-layer NMSE of ALISTA, LISTA-CPSS and HyperLISTA in "
        f"{_ratios(targets, 'continuation')} as many iterations as layers; FISTA with the best fixed λ in "
        f"{_ratios(targets, 'fixed')}. The issue expected at least 100×: that holds against the best fixed λ, "
        "not against continuation, which is the stronger baseline at high accuracy (ρ = 0.99 reaches about "
        "−116 dB within 4000 iterations, where the best fixed λ stalls at −75 dB). The numbers are as measured; "
        "the continuation schedules were not weakened to meet the expectation.",
        "- LISTA (W_k from the ISTA initialisation) and LISTA-CP (from the ALISTA weight, no support selection) "
        "had at most 400 steps of 128 samples per stage, far fewer than the published recipes; they are shown for "
        "the plot and the table, not tuned further."
        if {"lista", "lista-cp"} <= set(clean_by) else
        "- LISTA and LISTA-CP were not trained at this size; tests cover them on 50×100 problems.",
    ])
    replace_section("lista", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("train", "transfer", "fista", "lasso", "refit", "report"))
    parser.add_argument("--method", choices=sorted(SETTINGS), help="for train and transfer")
    parser.add_argument("--snr", type=float, default=math.inf,
                        help="for train and transfer: SNR in dB (default inf); for lasso and refit (default 40)")
    args = parser.parse_args()
    if args.part in ("train", "transfer") and args.method is None:
        parser.error(f"{args.part} needs --method")
    if args.part == "train":
        train(args.method, args.snr)
    elif args.part == "transfer":
        transfer(args.method, args.snr)
    elif args.part == "fista":
        fista_part()
    elif args.part in ("lasso", "refit"):
        (lasso_part if args.part == "lasso" else refit_part)(args.snr if not math.isinf(args.snr) else 40.0)
    else:
        report()


if __name__ == "__main__":
    main()
