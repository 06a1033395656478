"""Benchmark: the exact network MILP with (a) one global big-M, (b) interval bounds,
(c) LP bound tightening.

Instances (loss l1, global budget density 0.25, student = a ReLU MLP in-hidden-out at its
initialization, seed 0):

* ``digits``: PCA features of scikit-learn's ``load_digits`` restricted to the first K
  classes (standardised); a 3-teacher ensemble of ReLU MLPs of different widths trained
  with Adam on those classes; N = the first N samples.
* ``planted``: the teacher is a masked copy of the student (a random mask within the
  budget), so the optimum is 0 and the planted mask attains it; Gaussian inputs.

For each instance and bound mode: wall time (bounds + build + solve), status, B&B nodes,
ReLU binaries, objective, bound. Then the largest digits student solved to proven
optimality within ``--largest-limit`` seconds (interval bounds). Writes JSON and the
BENCHMARKS.md section between its markers.

    python benchmarks/bench_exact_network.py --time-limit 600        # the issue's setting
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

import maskopt as mo
from maskopt.report import format_table
from maskopt.solvers.exact.network import BOUNDS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import digits_teachers, machine, replace_section, save_results  # noqa: E402


def student_mlp(sizes: list[int], seed: int = 0) -> nn.Sequential:
    """A ReLU MLP with layer widths ``sizes`` (input, hidden..., output)."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        mods += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*mods)


def digits_instance(sizes: list[int], n: int, seed: int = 0) -> mo.DistillProblem:
    """Digits teachers (fixed) and a student initialised from ``seed``."""
    xt, teachers = digits_teachers(sizes[0], sizes[-1])
    return mo.DistillProblem(student_mlp(sizes, seed), teachers, xt[:n], mo.Budget(density=0.25))


def planted_instance(sizes: list[int], n: int, seed: int = 0) -> mo.DistillProblem:
    """Student initialised from ``seed``; inputs and the planted mask from ``seed + 1``."""
    student = student_mlp(sizes, seed)
    x = torch.randn(n, sizes[0], generator=torch.Generator().manual_seed(seed + 1))
    probe = mo.DistillProblem(student, [student], x, mo.Budget(density=0.25))
    teacher = copy.deepcopy(student)
    mo.apply_masks(teacher, mo.solve(probe, method="random", seed=seed + 1).masks)
    mo.remove_masks(teacher)
    return mo.DistillProblem(student, [teacher], x, mo.Budget(density=0.25))


MAKERS = {"digits": digits_instance, "planted": planted_instance}


def solve_one(job: dict) -> dict:
    """One exact solve of the grid (a picklable job, so a process pool can run it)."""
    sizes = [int(v) for v in job["student"].split("-")]
    problem = MAKERS[job["instance"]](sizes, job["N"], job["seed"])
    res = mo.solve(problem, method="exact", bounds=job["bounds"], time_limit=job["time_limit"],
                   threads=job["threads"])
    return {"instance": job["instance"], "student": job["student"], "N": job["N"], "seed": job["seed"],
            "bounds": job["bounds"], "status": res.status, "time": res.time, "nodes": res.stats["nodes"],
            "relu_binaries": res.stats["relu_binaries"], "bound_time": res.stats["bound_time"],
            "objective": res.objective, "bound": res.bound, "bound_raw": res.stats["bound_raw"], "gap": res.gap}


def run_jobs(jobs: list[dict], workers: int) -> list[dict]:
    """Solve every job (in a pool of ``workers`` processes when > 1), rows in job order."""
    if workers <= 1:
        rows = []
        for job in jobs:
            rows.append(solve_one(job))
            print(format_table([rows[-1]], list(rows[-1])), flush=True)
        return rows
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(solve_one, job) for job in jobs]
        for f in concurrent.futures.as_completed(futures):
            print(format_table([f.result()], list(f.result())), flush=True)
        return [f.result() for f in futures]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--time-limit", type=float, default=600.0, help="per solve, seconds")
    ap.add_argument("--largest-limit", type=float, default=60.0)
    ap.add_argument("--largest", nargs="*", default=["4-4-2", "6-6-3", "8-8-3", "12-12-3", "16-16-4"],
                    help="students (layer widths) for the largest-solved-in-time table; none to skip it")
    ap.add_argument("--students", nargs="+", default=["8-8-3"],
                    help="students (layer widths, e.g. 8-8-8-3) of the bound-mode grid")
    ap.add_argument("--modes", nargs="+", default=["global", "interval", "lp"], choices=list(BOUNDS),
                    help="bound modes to compare; must include global (the reference)")
    ap.add_argument("--threads", type=int, default=None, help="HiGHS threads (default: HiGHS's choice)")
    ap.add_argument("--instances", nargs="+", default=["digits", "planted"], choices=["digits", "planted"])
    ap.add_argument("--section", default="exact_network", help="BENCHMARKS.md section (and JSON file) name")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="student seeds (planted: inputs and mask from seed + 1)")
    ap.add_argument("--large-seeds", type=int, nargs="+", default=None,
                    help="seeds for N above 16 (default: --seeds)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="solves run at once in a process pool (each HiGHS then gets --threads, default 1)")
    args = ap.parse_args()
    threads = args.threads if args.threads is not None or args.jobs <= 1 else 1
    jobs = [{"instance": inst, "student": arch, "N": n, "seed": seed, "bounds": mode,
             "time_limit": args.time_limit, "threads": threads}
            for arch in args.students for n in args.ns
            for seed in (args.large_seeds if args.large_seeds is not None and n > 16 else args.seeds)
            for inst in args.instances for mode in args.modes]
    jobs += [{"instance": "digits", "student": arch, "N": 16, "seed": 0, "bounds": "interval",
              "time_limit": args.largest_limit, "threads": threads, "largest": True} for arch in args.largest]
    done = run_jobs(jobs, args.jobs)
    rows = [r for r, j in zip(done, jobs) if not j.get("largest")]
    largest = [{k: r[k] for k in ("student", "N", "status", "time", "gap", "nodes")}
               for r, j in zip(done, jobs) if j.get("largest")]
    save_results(args.section, {"rows": rows, "largest": largest, "jobs": args.jobs, "threads": threads})
    write_section(args.section, rows, largest, args.time_limit, args.largest_limit,
                  f"python benchmarks/bench_exact_network.py {' '.join(sys.argv[1:])}", threads, args.jobs)


def _key(r: dict) -> tuple:
    return r["instance"], r["student"], r["N"]


def _spread(values) -> str:
    values = list(values)
    return f"{statistics.median(values):.3g} [{min(values):.3g}, {max(values):.3g}]"


def speedup_rows(rows: list[dict], time_limit: float) -> list[dict]:
    """Per instance and bound mode, over seeds: time(global big-M) / time(mode) where both
    were proven optimal (median [min, max]), and how often only one of them was."""
    out = []
    for key in dict.fromkeys(_key(r) for r in rows):
        row = dict(zip(("instance", "student", "N"), key))
        seeds = sorted({r["seed"] for r in rows if _key(r) == key})
        by = {(r["seed"], r["bounds"]): r for r in rows if _key(r) == key}
        for m in dict.fromkeys(r["bounds"] for r in rows if r["bounds"] != "global"):
            ratios, only_mode, only_global, neither = [], 0, 0, 0
            for seed in seeds:
                g, t = by[seed, "global"], by[seed, m]
                if g["status"] == "optimal" and t["status"] == "optimal":
                    ratios.append(g["time"] / t["time"])
                elif t["status"] == "optimal":
                    only_mode += 1
                elif g["status"] == "optimal":
                    only_global += 1
                else:
                    neither += 1
            cell = _spread(ratios) if ratios else "-"
            notes = [f"{c} {what}" for c, what in ((only_mode, "only big-M hit the limit"),
                                                   (only_global, f"only {m} hit the limit"),
                                                   (neither, "both hit the limit")) if c]
            row[f"global/{m} time"] = cell + (f" ({'; '.join(notes)})" if notes else "")
        out.append(row)
    return out


def spread_rows(rows: list[dict]) -> list[dict]:
    """Per instance and bound mode, over seeds: statuses, time and nodes (median [min, max]),
    the largest gap."""
    out = []
    for key in dict.fromkeys((*_key(r), r["bounds"]) for r in rows):
        rs = [r for r in rows if (*_key(r), r["bounds"]) == key]
        status = [r["status"] for r in rs]
        out.append({"instance": key[0], "student": key[1], "N": key[2], "bounds": key[3], "seeds": len(rs),
                    "statuses": ", ".join(f"{status.count(s)} {s}" for s in sorted(set(status))),
                    "time s": _spread(r["time"] for r in rs), "nodes": _spread(r["nodes"] for r in rs),
                    "gap (max)": f"{max(r['gap'] for r in rs):.3g}"})
    return out


def write_section(section, rows, largest, time_limit, largest_limit, command, threads=None, jobs=1) -> None:
    cols = ["instance", "student", "N", "bounds", "status", "time", "nodes", "relu_binaries", "objective", "bound"]
    speedups = speedup_rows(rows, time_limit)
    several = len({r["seed"] for r in rows}) > 1
    spread = spread_rows(rows)
    raw_ok = all(r["bound_raw"] <= r["objective"] + 1e-6 * max(1.0, abs(r["objective"])) for r in rows)
    body = [
        f"## Exact network MILP: global big-M vs interval vs LP bounds — "
        f"{' and '.join(dict.fromkeys(r['instance'] for r in rows))}, {time_limit:g} s limit (issue 3)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Students {', '.join(dict.fromkeys(r['student'] for r in rows))} (layer widths of a ReLU MLP) at "
        "initialization, loss l1, global density 0.25, relative gap 1e-4, "
        f"time limit {time_limit:g} s per solve (`time` includes bound computation and model build), "
        f"HiGHS threads: {threads or 'default'}, {jobs} solve(s) at once. "
        "`digits`: PCA of load_digits to the student's input width, classes 0..out-1, 3 trained teachers; "
        "`planted`: teacher = masked student (optimum 0). "
        + ("Seeds: the student's initialisation (planted: inputs and mask from seed + 1); spread over seeds as "
           "median [min, max]; per-seed rows in the JSON file." if several else ""),
        "",
        "```", format_table(spread, list(spread[0])) if several else format_table(rows, cols), "```",
        "",
        "Speed-up of the bound modes over one global big-M" + (" (over seeds)" if several else "") + ":",
        "",
        "```", format_table(speedups, list(speedups[0])), "```",
        "",
        f"Every raw bound is at most its objective: {'yes' if raw_ok else 'NO'}.",
    ]
    if largest:
        body += [
            "",
            f"Largest digits student (N = 16, interval bounds) within {largest_limit:g} s:",
            "",
            "```", format_table(largest, list(largest[0])), "```",
        ]
    replace_section(section, "\n".join(body))


if __name__ == "__main__":
    main()
