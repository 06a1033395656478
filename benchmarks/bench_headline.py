"""The headline experiment: KD-LTS-style masks against IMP and pruning at init.

KD-LTS ("knowledge-distillation lottery-ticket search"): a small teacher ensemble is trained
dense on the training data; the student (the MNIST-1D paper's 40-500-500-10 MLP at its
initialization, seed 42 + trial, the student of ``bench_tickets.py``) gets the mask under
which it imitates the ensemble best — a ``DistillProblem`` with the KL loss over the 4000
training inputs, budget ``Budget(sparsity=s, scope="module")`` over every weight and bias
(each layer's weight and bias together, as the notebook's IMP), solved by the relaxation
hierarchy (``method="hierarchy"``: sigmoid → anneal → ste) with the settings its validation
tuning chose (the lookahead surrogate scores a mask by the imitation after k gradient steps
of the kept weights). The ticket (that mask on the initialization) is then trained with the
MNIST-1D notebook's protocol (``experiments/tickets_mnist1d.toml``), like every other
method's ticket:

- ``kd-imp``: distillation-driven iterative pruning with the same teachers — maskopt's IMP
  (``iterative_magnitude_pruning``) on the same ``DistillProblem`` (rounds trained on the
  ensemble's soft targets, ``train_on="problem"``), with few short rounds (a geometric density
  schedule to 99 %, the targets included), rewinding to init;
- ``imp-short``: the same short rounds trained on the labels (the control: what the teachers add);
- ``imp``: iterative magnitude pruning with rewinding to init (100 retrains on
  ``linspace(0, 1, 100)``), read from ``bench_tickets.py``'s results, never rerun here;
- ``synflow``, ``snip`` (cross-entropy on the training labels), ``magnitude`` at init and
  ``random`` (seeded by the trial), at the same sparsities as IMP's retrains #90/#95/#98/#99.

Compute is counted in training-step equivalents (one step = forward + backward of 100
samples): KD-LTS = teachers' training + teacher forward passes on the inputs + every mask-
search step (batch size / 100) + every full-data hard-mask evaluation of the search (counted
like a training sample though it is forward-only) + the ticket's steps; the teachers are
charged in full to every sparsity although they are trained once per seed. kd-imp /
imp-short = (teachers + their targets, kd-imp only) + every round up to that sparsity (the
dense one included) + the ticket's steps. IMP = all retrains up to that sparsity. Baselines =
their ``gradient_samples`` / 100 + the ticket's steps. Every training run is charged its
samples / 100.

Every setting was chosen on a validation split carved from the training data (MNIST-1D: train
on the first 3200 training samples, score the maximum accuracy on the last 800; digits: its
last fifth held out); the test set was used for no choice. The experiment definitions
(grids, budgets, settings) are ``experiments/headline.toml``; a variant's KD-LTS settings are
its tuning record's best config (``headline_tuning_<variant>.json``).

Digits variant: ``mo.data.digits()`` (1347/450), an MLP 64-256-256-10 at init, teachers 3 MLPs
64-256-10, the same methods; IMP there is run here (20 % per round, rounds placed to hit the
targets exactly).

    python benchmarks/bench_headline.py                 # the per-layer table (MNIST-1D and digits)
    python benchmarks/bench_headline.py --allocation erk --no-digits   # every method under ERK budgets
    python benchmarks/bench_headline.py --tune [--allocation erk]      # KD-LTS validation tuning
    python benchmarks/bench_headline.py --tune-digits | --tune-first | --tune-kdimp
    python benchmarks/bench_headline.py --objective     # KD-LTS objective of each method's masks
    python benchmarks/bench_headline.py [--allocation erk] --more-trials 3 4  # kd-lts, kd-imp on more seeds
    python benchmarks/bench_headline.py [--allocation erk] --selection 0 1 2  # rerun with a validation split
    python benchmarks/bench_headline.py --report        # rewrite docs/benchmarks/headline.md and the plots
    python benchmarks/bench_headline.py --quick         # the pipeline in seconds (results to a temp dir)
    # or in pieces: --methods M... [--no-digits] --partial NAME, then --methods --no-digits --merge
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from _common import load_results, machine, results_dir, save_results, use_scratch_results, write_sections
from headline_config import Headline, load_headline
from headline_report import goals, plots, sections, tuning_choice, tuning_summary
from headline_tasks import (
    digits_task,
    mnist1d_task,
    objective_task,
    selection_imp_task,
    tune_kdimp_task,
    tune_reference_task,
    tune_task,
)
from tickets_protocol import validation_data

PAGE = "headline"
__all__ = ["PAGE", "goals", "sections"]


def run_tasks(calls: list[tuple], jobs: int, save=None) -> list[dict]:
    """The rows of every ``(fn, *args)`` call, in ``jobs`` worker processes (1 thread each);
    ``save(rows)`` after every call when given."""
    rows: list[dict] = []
    if jobs <= 1:
        for fn, *args in calls:
            rows.extend(fn(*args))
            if save:
                save(rows)
        return rows
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for done in as_completed([pool.submit(fn, *args) for fn, *args in calls]):
            rows.extend(done.result())
            if save:
                save(rows)
    return rows


def kdlts_settings(h: Headline, key: str) -> dict:
    """KD-LTS settings of the variant ``key``: its recorded tuning's base with the best config."""
    record = load_results(f"headline_tuning_{key}")
    choice = None if record is None else tuning_choice(tuning_summary(record, h.mnist1d.erk_targets))
    if choice is None:
        raise SystemExit(f"no complete {key} tuning record in {results_dir()}: run the tuning first.")
    return {**h.tune_spec(key)[2], **record["configs"][choice]}


def settings(h: Headline, args: argparse.Namespace) -> tuple[dict, dict, dict | None]:
    """(KD-LTS, kd-imp, digits KD-LTS or None) settings of this run, with the quick overrides."""
    cfg = {**kdlts_settings(h, args.allocation), **h.quick.get("kdlts", {})}
    kcfg = {**h.kdimp, **h.quick.get("kdimp", {})}
    digits = not args.no_digits and args.allocation == "uniform"
    dcfg = {**kdlts_settings(h, "digits"), **h.quick.get("digits_kdlts", {})} if digits else None
    return cfg, kcfg, dcfg


def merge_parts(name: str, rows: list[dict], cfg: dict, kcfg: dict, dcfg: dict | None) -> tuple[list, list, tuple]:
    """``--merge``: the rows of earlier ``--partial`` runs, then of the recorded table, for
    (bench, method) pairs not run now; the settings of the runs the rows come from."""
    done, parts = {(r["bench"], r["method"]) for r in rows}, []
    names = sorted(p.stem for p in results_dir().glob(f"{name}_part_*.json")) + [name]
    for part_name in names:
        part = load_results(part_name)
        new = [r for r in (part or {}).get("rows", []) if (r["bench"], r["method"]) not in done | {("mnist1d", "imp")}]
        if not new:
            continue
        rows, taken = rows + new, {(r["bench"], r["method"]) for r in new}
        done |= taken
        cfg = part.get("kdlts", cfg) if ("mnist1d", "kd-lts") in taken else cfg
        kcfg = part.get("kdimp", kcfg) if ("mnist1d", "kd-imp") in taken else kcfg
        dcfg = part.get("digits_kdlts", dcfg) if ("digits", "kd-lts") in taken else dcfg
        parts.append(f"{part_name}.json {part.get('seconds', 0):.0f} s on {part['machine']} "
                     f"({', '.join(sorted({r['method'] for r in new}))})")
    return rows, parts, (cfg, kcfg, dcfg)


def table_main(h: Headline, args: argparse.Namespace) -> int:
    """A variant's table: every method at every goal sparsity (MNIST-1D, and digits under the
    uniform variant), saved as results <name>.json (or a part of it with ``--partial``)."""
    t0 = time.perf_counter()
    budget, name, _ = h.variants[args.allocation]
    cfg, kcfg, dcfg = settings(h, args)
    methods = ["kd-lts", *h.short_imp, *h.baselines] if args.methods is None else args.methods
    calls = [(mnist1d_task, h, t, m, h.targets, kcfg if m in h.short_imp else cfg, budget)
             for t in args.trials for m in methods]
    calls += [(digits_task, h, t, h.targets, dcfg) for t in args.trials] if dcfg else []
    rows = run_tasks(calls, args.jobs)
    record = {"kdlts": cfg, "kdimp": kcfg, "digits_kdlts": dcfg}
    if args.partial:
        save_results(f"{name}_part_{args.partial}", {"rows": rows, **record, "seconds": time.perf_counter() - t0})
        return 0
    parts = []
    if args.merge:
        rows, parts, (cfg, kcfg, dcfg) = merge_parts(name, rows, cfg, kcfg, dcfg)
    save_results(name, {"parts": parts, "rows": rows, "budget": budget, "kdlts": cfg, "digits_kdlts": dcfg,
                        "kdimp": kcfg, "digits_kdimp": h.digits["kdimp"], "seconds": time.perf_counter() - t0})
    return 0


def more_trials_main(h: Headline, args: argparse.Namespace) -> int:
    """kd-lts and kd-imp of the variant's settings on further seeds (<name>_seeds.json)."""
    t0 = time.perf_counter()
    budget, name, _ = h.variants[args.allocation]
    cfg, kcfg, _ = settings(h, args)
    table = load_results(name)
    if table and set(args.more_trials) & {r["trial"] for r in table["rows"] if r["method"] in h.spread}:
        raise SystemExit("--more-trials must be trials outside the recorded table's.")
    old = load_results(f"{name}_seeds")
    if old is not None and (old["kdlts"], old["kdimp"]) != (cfg, kcfg):
        raise SystemExit(f"{name}_seeds.json holds trials run with other settings; move it away to start anew.")
    kept = [r for r in old["rows"] if r["trial"] not in args.more_trials] if old else []
    rows = kept + run_tasks([(mnist1d_task, h, t, m, h.targets, kcfg if m in h.short_imp else cfg, budget)
                             for t in args.more_trials for m in h.spread], args.jobs)
    machines = [*([old["machine"]] if old else []), machine()]
    save_results(f"{name}_seeds", {"machine": "; ".join(dict.fromkeys(machines)), "rows": rows, "kdlts": cfg,
                                   "kdimp": kcfg, "seconds": time.perf_counter() - t0})
    return 0


def selection_main(h: Headline, args: argparse.Namespace) -> int:
    """The judged methods rerun at the ERK goal sparsities with the table's settings, every ticket
    also scored on a validation split (<name>_selection.json: test accuracy at the last and at
    the validation-chosen step); a call already recorded is skipped."""
    budget, name, _ = h.variants[args.allocation]
    cfg, kcfg, _ = settings(h, argparse.Namespace(**{**vars(args), "no_digits": True}))
    table, old = load_results(name), load_results(f"{name}_selection")
    for record, what in ((table, f"{name}.json"), (old, f"{name}_selection.json")):
        if record is not None and (record["kdlts"], record["kdimp"]) != (cfg, kcfg):
            raise SystemExit(f"{what} was run with other settings than the current ones.")
    methods = args.methods or list(h.selection_methods)
    if set(methods) - set(h.selection_methods):
        raise SystemExit(f"--selection runs {', '.join(h.selection_methods)}; got {methods}.")
    protocol, goal = {**h.mnist1d.protocol, "validation": validation_data(h.mnist1d)}, h.mnist1d.erk_targets
    calls = []
    for trial in args.selection:
        for method in (m for m in methods if m != "imp"):
            targets = h.targets if method in h.short_imp and args.allocation == "uniform" else goal
            calls.append(((method, trial, goal), (mnist1d_task, h, trial, method, targets,
                                                  kcfg if method in h.short_imp else cfg, budget, protocol)))
        if "imp" in methods:
            calls += [(("imp", trial, goal if t is None else (t,)), (selection_imp_task, h, trial, args.allocation,
                                                                    t, protocol))
                      for t in (goal if args.allocation == "erk" else (None,))]
    have = {(r["method"], r["trial"], r["sparsity"]) for r in (old or {}).get("rows", [])}
    calls = [call for (m, t, targets), call in calls if any((m, t, s) not in have for s in targets)]
    seconds, t0 = (old or {}).get("seconds", 0.0), time.perf_counter()
    machines = "; ".join(dict.fromkeys([*([old["machine"]] if old else []), machine()]))

    def save(new: list[dict]) -> None:
        done = {(r["method"], r["trial"], r["sparsity"]) for r in new}
        kept = [r for r in (load_results(f"{name}_selection") or {}).get("rows", [])
                if (r["method"], r["trial"], r["sparsity"]) not in done]
        save_results(f"{name}_selection", {"machine": machines, "rows": kept + new, "kdlts": cfg, "kdimp": kcfg,
                                           "validation_seed": h.mnist1d.validation_seed,
                                           "seconds": seconds + time.perf_counter() - t0})

    run_tasks(calls, args.jobs, save)
    return 0


def tune_main(h: Headline, args: argparse.Namespace) -> int:
    """``--tune [--allocation A]`` / ``--tune-digits``: the variant's tuning configs on the
    validation split (headline_tuning_<key>.json, resumable)."""
    key = "digits" if args.tune_digits else args.allocation
    bench, budget, base = h.tune_spec(key)
    name, configs = f"headline_tuning_{key}", h.tunings[key]
    rows = (load_results(name) or {}).get("rows", [])
    have = {(r["config"], r["trial"]) for r in rows}
    calls = [(tune_task, h, i, o, h.mnist1d.erk_targets, budget, t, base, bench) for t in h.tune_trials
             for i, o in enumerate(configs) if (i, t) not in have]
    t0 = time.perf_counter()
    run_tasks(calls, args.jobs, lambda new: save_results(name, {"base": base, "configs": configs, "rows": rows + new,
                                                                "seconds": time.perf_counter() - t0}))
    return 0


def tune_first_main(h: Headline, args: argparse.Namespace) -> int:
    """``--tune-first``: the first KD-LTS tuning (trial 0, the first tuning's targets and budget)."""
    first, name = h.first_tuning, "headline_tuning"
    rows = (load_results(name) or {}).get("rows", [])
    have = {str(r["config"]) for r in rows}
    targets = tuple(first["targets"])
    calls = [] if "synflow" in have else [(tune_reference_task, h, targets, first["budget"])]
    calls += [(tune_task, h, i, o, targets, first["budget"], 0, h.tune_base) for i, o in enumerate(first["configs"])
              if str(i) not in have]
    run_tasks(calls, args.jobs, lambda new: save_results(name, {"base": h.tune_base, "configs": first["configs"],
                                                                "rows": rows + new}))
    return 0


def tune_kdimp_main(h: Headline, args: argparse.Namespace) -> int:
    """``--tune-kdimp``: KD-IMP's configs on the validation split (resumable)."""
    name, configs = "headline_tuning_kdimp", h.kdimp_tuning["configs"]
    rows = (load_results(name) or {}).get("rows", [])
    have = {(r["config"], r.get("trial", 0)) for r in rows}
    calls = [(tune_kdimp_task, h, i, o, t) for t in h.kdimp_tuning["trials"] for i, o in enumerate(configs)
             if (i, t) not in have]
    t0 = time.perf_counter()
    run_tasks(calls, args.jobs, lambda new: save_results(name, {"base": h.kdimp_base, "configs": configs,
                                                                "rows": rows + new,
                                                                "seconds": time.perf_counter() - t0}))
    return 0


def objective_main(h: Headline, args: argparse.Namespace) -> int:
    """``--objective``: the KD-LTS objective of each method's masks beside its ticket (trial 0)."""
    lookahead = {**kdlts_settings(h, "uniform"), **h.quick.get("kdlts", {})}
    rows = run_tasks([(objective_task, h, 0, t, lookahead) for t in h.mnist1d.erk_targets], args.jobs)
    save_results("headline_objective", {"rows": rows, "hierarchy_warm": h.hierarchy_warm})
    return 0


def report_main(h: Headline, args: argparse.Namespace) -> int:
    """Rewrite this page's blocks and its plots from the results JSON."""
    write_sections(PAGE, sections())
    plots(results_dir())
    return 0


def quick_main(h: Headline, args: argparse.Namespace) -> int:
    """The pipeline on the [quick] setting: the tunings (two configs), the per-layer table with
    digits, the objective study and the validation rerun (one trial, one sparsity)."""
    use_scratch_results()
    quick = argparse.Namespace(**{**vars(args), "trials": list(h.tune_trials), "jobs": 1, "methods": None,
                                  "allocation": "uniform", "no_digits": False, "tune_digits": False,
                                  "partial": None, "merge": False, "selection": list(h.tune_trials)})
    tune_main(h, quick)
    tune_main(h, argparse.Namespace(**{**vars(quick), "tune_digits": True}))
    table_main(h, quick)
    objective_main(h, quick)
    selection_main(h, argparse.Namespace(**{**vars(quick), "methods": ["kd-lts"]}))
    return 0


MODES = {"report": report_main, "quick": quick_main, "tune": tune_main, "tune_digits": tune_main,
         "tune_first": tune_first_main, "tune_kdimp": tune_kdimp_main, "objective": objective_main,
         "selection": selection_main, "more_trials": more_trials_main}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the pipeline on a tiny setting (results to a temp dir "
                    "unless MASKOPT_BENCH_RESULTS is set)")
    ap.add_argument("--report", action="store_true", help="rewrite the docs blocks and plots, run nothing")
    ap.add_argument("--tune", action="store_true", help="score the variant's tuning configs (with --allocation)")
    ap.add_argument("--tune-digits", action="store_true", help="score the digits tuning configs")
    ap.add_argument("--tune-first", action="store_true", help="the first KD-LTS tuning (scope='layer', trial 0)")
    ap.add_argument("--tune-kdimp", action="store_true", help="score the KD-IMP tuning configs")
    ap.add_argument("--objective", action="store_true", help="the KD-LTS objective of each method's masks")
    ap.add_argument("--trials", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument("--methods", nargs="*", help="MNIST-1D methods to run (default: kd-lts, kd-imp, imp-short and "
                    "the baselines; with --selection: kd-lts, kd-imp, imp)")
    ap.add_argument("--no-digits", action="store_true")
    ap.add_argument("--allocation", choices=("uniform", "erk"), default="uniform", help="MNIST-1D budget variant")
    ap.add_argument("--partial", metavar="NAME", help="only save the rows to results <name>_part_NAME")
    ap.add_argument("--merge", action="store_true", help="add the rows of earlier --partial runs, then of the "
                    "recorded table, for (bench, method) pairs not run now")
    ap.add_argument("--more-trials", type=int, nargs="+", metavar="TRIAL",
                    help="run only kd-lts and kd-imp on these further trials (results <name>_seeds)")
    ap.add_argument("--selection", type=int, nargs="+", metavar="TRIAL",
                    help="rerun the judged methods on these trials with a validation split (<name>_selection)")
    return ap


def main() -> int:
    args = parser().parse_args()
    torch.set_num_threads(1)
    mode = next((m for m in MODES if getattr(args, m)), None)
    return MODES.get(mode, table_main)(load_headline(quick=args.quick), args)


if __name__ == "__main__":
    sys.exit(main())
