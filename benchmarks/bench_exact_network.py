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
optimality within ``--largest-limit`` seconds (interval bounds). Writes
``<section>.json`` (``--section``, default ``exact_network``); ``--report`` rebuilds the
block of every ``exact_network*.json`` in docs/benchmarks/exact.md.

    python benchmarks/bench_exact_network.py --time-limit 600
    python benchmarks/bench_exact_network.py --ns 32 --instances planted --time-limit 600 --threads 1 \
        --largest --section exact_network_planted32
    python benchmarks/bench_exact_network.py --quick       # a 4-4-2 student, N = 4, seconds
    python benchmarks/bench_exact_network.py --report
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import functools
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

import maskopt as mo
from maskopt.report import format_table
from maskopt.solvers.exact.network import BOUNDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, digits_teachers, load_results, results_dir, save_results  # noqa: E402
from exact_common import (  # noqa: E402
    add_common_flags,
    bounds_below,
    command_line,
    header,
    md_table,
    report_or_quick,
    spread,
    statuses,
)

PAGE = "exact"
AREA = "Exact network MILP"
# the blocks of the page, in order; any other exact_network*.json (a new --section) follows them
SECTIONS = ("exact_network", "exact_network_10min", "exact_network_digits_10min", "exact_network_planted32",
            "exact_network_deep")
# the goal: bound tightening >= 5x faster than one big-M on the largest instance big-M proves within 600 s
GOAL_SPEEDUP, GOAL_LIMIT = 5.0, 600.0


def student_mlp(sizes: list[int], seed: int = 0) -> nn.Sequential:
    """A ReLU MLP with layer widths ``sizes`` (input, hidden..., output)."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        mods += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*mods)


@functools.cache
def teachers_of(d_in: int, k: int) -> tuple[torch.Tensor, list[nn.Module]]:
    """``digits_teachers(d_in, k)``, trained once per process (every job of a run shares them)."""
    return digits_teachers(d_in, k)


def digits_instance(sizes: list[int], n: int, seed: int = 0) -> mo.DistillProblem:
    """Digits teachers (fixed) and a student initialised from ``seed``."""
    xt, teachers = teachers_of(sizes[0], sizes[-1])
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


def parse_args() -> argparse.Namespace:
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
    ap.add_argument("--section", default="exact_network",
                    help="results JSON and docs block name (it must start with exact_network)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="student seeds (planted: inputs and mask from seed + 1)")
    ap.add_argument("--large-seeds", type=int, nargs="+", default=None,
                    help="seeds for N above 16 (default: --seeds)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="solves run at once in a process pool (each HiGHS then gets --threads, default 1)")
    add_common_flags(ap)
    args = ap.parse_args()
    if not args.section.startswith("exact_network"):
        ap.error("--section must start with exact_network (the report finds the results by that prefix)")
    if "global" not in args.modes:
        ap.error("--modes must include global (the reference of the speed-ups)")
    if args.quick:
        args.ns, args.time_limit, args.largest_limit, args.largest = [4], 10.0, 10.0, ["4-4-2"]
        args.students, args.seeds, args.large_seeds = ["4-4-2"], [0], None
    return args


def main() -> None:
    args = parse_args()
    if report_or_quick(args, sections):
        return
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
    save_results(args.section, {"command": command_line(), "time_limit": args.time_limit,
                                "largest_limit": args.largest_limit, "threads": threads, "jobs": args.jobs,
                                "rows": rows, "largest": largest})
    print(f"wrote {results_dir() / args.section}.json; --report rebuilds its block", flush=True)


def _key(r: dict) -> tuple:
    return r["instance"], r["student"], r["N"]


def _seed(r: dict) -> int:
    return r.get("seed", 0)  # runs with one seed may not record it


def mode_pairs(rows: list[dict], key: tuple, mode: str) -> list[tuple[dict, dict]]:
    """(global row, ``mode`` row) of each seed of instance ``key``."""
    by = {(_seed(r), r["bounds"]): r for r in rows if _key(r) == key}
    return [(by[seed, "global"], by[seed, mode]) for seed in sorted({s for s, _ in by})]


def ratio_cell(pairs: list[tuple[dict, dict]], mode: str) -> str:
    """time(global big-M) / time(mode) over the (global, mode) row pairs where both were
    proven optimal (median [min, max] over several), with how often only one of them (or
    neither) was."""
    ratios = [g["time"] / t["time"] for g, t in pairs if g["status"] == t["status"] == "optimal"]
    counts = {"only big-M hit the limit": sum(g["status"] != "optimal" and t["status"] == "optimal" for g, t in pairs),
              f"only {mode} hit the limit": sum(g["status"] == "optimal" and t["status"] != "optimal"
                                                for g, t in pairs),
              "both hit the limit": sum(g["status"] != "optimal" and t["status"] != "optimal" for g, t in pairs)}
    notes = "; ".join(f"{c} {what}" for what, c in counts.items() if c)
    cell = spread(ratios) if len(ratios) > 1 else f"{ratios[0]:.3g}" if ratios else "-"
    return cell + (f" ({notes})" if notes else "")


def speedup_rows(rows: list[dict]) -> list[dict]:
    """Per instance: the speed-up of each bound mode over one global big-M (``ratio_cell``)."""
    modes = list(dict.fromkeys(r["bounds"] for r in rows if r["bounds"] != "global"))
    return [{**dict(zip(("instance", "student", "N"), key)),
             **{f"global/{m} time": ratio_cell(mode_pairs(rows, key, m), m) for m in modes}}
            for key in dict.fromkeys(_key(r) for r in rows)]


def spread_rows(rows: list[dict]) -> list[dict]:
    """Per instance and bound mode, over seeds: statuses, time and nodes (median [min, max]),
    the largest gap."""
    out = []
    for key in dict.fromkeys((*_key(r), r["bounds"]) for r in rows):
        rs = [r for r in rows if (*_key(r), r["bounds"]) == key]
        out.append({"instance": key[0], "student": key[1], "N": key[2], "bounds": key[3], "seeds": len(rs),
                    "statuses": statuses(r["status"] for r in rs), "time s": spread(r["time"] for r in rs),
                    "nodes": spread(r["nodes"] for r in rs), "gap (max)": f"{max(r['gap'] for r in rs):.3g}"})
    return out


def title(data: dict) -> str:
    """What tells the runs apart: instances, students, sizes, time limit, seeds, threads."""
    rows = data["rows"]
    seeds = len({_seed(r) for r in rows})
    parts = [" and ".join(dict.fromkeys(r["instance"] for r in rows)) + " "
             + ", ".join(dict.fromkeys(r["student"] for r in rows)),
             "N = " + "/".join(str(n) for n in dict.fromkeys(r["N"] for r in rows)),
             f"{data['time_limit']:g} s limit"]
    parts += [f"{seeds} student seeds"] if seeds > 1 else []
    parts += [f"{data['threads']} HiGHS thread{'s' if data['threads'] > 1 else ''}"] if data.get("threads") else []
    return "Network MILP bound modes: " + ", ".join(parts)


def block(name: str, data: dict) -> str:
    """The block of one run: setup, per-instance table (spread over seeds when there are
    several), speed-ups over big-M, the raw-bound check, the largest-student table."""
    rows = data["rows"]
    several = len({_seed(r) for r in rows}) > 1
    cols = ["instance", "student", "N", "bounds", "status", "time", "nodes", "relu_binaries"]
    raw = [(r["bound_raw"], r["objective"]) for r in rows if "bound_raw" in r]
    lines = [*header(name, title(data), data),
             "Students (layer widths of a ReLU MLP) at initialization, loss l1, global density 0.25, relative gap "
             f"1e-4, time limit {data['time_limit']:g} s per solve (`time` includes bound computation and model "
             f"build), HiGHS threads: {data.get('threads') or 'default'}, {data['jobs']} solve(s) at once. "
             "`digits`: PCA of load_digits to the student's input width, classes 0..out-1, 3 trained teachers; "
             "`planted`: teacher = masked student (optimum 0)."
             + (" Over student seeds (planted: inputs and mask from seed + 1): median [min, max]; per-seed rows "
                f"in `benchmarks/results/{name}.json`." if several else ""),
             "", md_table(spread_rows(rows) if several else [
                 {**{c: r[c] for c in cols}, "objective": f"{r['objective']:.6g}", "bound": f"{r['bound']:.6g}",
                  "gap": r["gap"]} for r in rows]), "",
             "Speed-up of the bound modes over one global big-M" + (" (over seeds)" if several else "") + ":", "",
             md_table(speedup_rows(rows)), "",
             (f"Every raw bound is at most its objective: {'yes' if bounds_below(raw) else 'NO'}." if raw
              else "This run records no raw bounds.")]
    if data.get("largest"):
        lines += ["", f"Largest digits student (N = 16, interval bounds) within {data['largest_limit']:g} s:", "",
                  md_table(data["largest"])]
    return "\n".join(lines)


def section_names() -> list[str]:
    """``SECTIONS`` then any other ``exact_network*.json`` of the results folder, sorted."""
    extra = sorted(p.stem for p in results_dir().glob("exact_network*.json") if p.stem not in SECTIONS)
    return [*SECTIONS, *extra]


def sections() -> dict[str, str]:
    return {name: block(name, data) for name in section_names() if (data := load_results(name)) is not None}


def interval_cell(rows: list[dict], key: tuple) -> str:
    """Interval over big-M at one instance: the median time ratio where both proved optimality,
    and the proven counts when they differ."""
    pairs = mode_pairs(rows, key, "interval")
    ratios = [g["time"] / t["time"] for g, t in pairs if g["status"] == t["status"] == "optimal"]
    proven = [sum(r["status"] == "optimal" for r in side) for side in zip(*pairs)]
    cell = f"N {key[2]}: " + (f"{statistics.median(ratios):.2f}x" if ratios else "-")
    if proven[0] != proven[1]:
        cell += f" (interval proves {proven[1]}/{len(pairs)}, big-M {proven[0]}/{len(pairs)})"
    return cell


def seeds_goal(data: dict, name: str = "exact_network") -> Goal:
    """Interval bounds against one big-M over student seeds, per instance family and N."""
    rows = data["rows"]
    keys = list(dict.fromkeys(_key(r) for r in rows))
    families = list(dict.fromkeys(k[:2] for k in keys))
    measured = "; ".join(f"{fam[0]}: " + ", ".join(interval_cell(rows, k) for k in keys if k[:2] == fam)
                         for fam in families)
    return Goal(AREA, f"Interval bounds vs one big-M over student seeds ({data['time_limit']:g} s limit), "
                      "time big-M / interval", measured, "no goal", name)


def largest_solved(datasets: dict[str, dict], limit: float = GOAL_LIMIT) -> list[tuple[str, dict, list[dict]]]:
    """For each (instance, student) family in the runs at time limit ``limit``: the largest N
    whose global big-M solve was proven optimal, as (section, global row, the other modes' rows)."""
    best: dict[tuple, tuple[str, dict, list[dict]]] = {}
    for name, data in datasets.items():
        if data["time_limit"] != limit:
            continue
        for g in data["rows"]:
            if g["bounds"] != "global" or g["status"] != "optimal":
                continue
            fam = (g["instance"], g["student"])
            if fam not in best or g["N"] > best[fam][1]["N"]:
                others = [r for r in data["rows"] if _key(r) == _key(g) and _seed(r) == _seed(g) and r is not g]
                best[fam] = (name, g, others)
    return list(best.values())


def tightening_goal(datasets: dict[str, dict]) -> Goal | None:
    """Bound tightening at least GOAL_SPEEDUP x faster than one big-M on the largest instance big-M
    solves within GOAL_LIMIT s (each instance family; a mode that hits the limit counts as 0x)."""
    found = largest_solved(datasets)
    if not found:
        return None
    cells, worst = [], []
    for name, g, others in found:
        speed = {r["bounds"]: g["time"] / r["time"] if r["status"] == "optimal" else 0.0 for r in others}
        cells.append(f"{g['instance']} {g['student']} N = {g['N']}: "
                     + ", ".join(f"{m} {v:.2f}x" for m, v in speed.items()))
        worst.append((max(speed.values()), name))
    hits = sum(v >= GOAL_SPEEDUP for v, _ in worst)
    verdict = "met" if hits == len(worst) else "partly met" if hits else "not met"
    return Goal(AREA, f"Bound tightening ≥ {GOAL_SPEEDUP:g}x faster than one big-M on the largest instance "
                      f"big-M proves within {GOAL_LIMIT:g} s", "; ".join(cells), verdict, min(worst)[1])


def goals() -> list[Goal]:
    datasets = {name: data for name in section_names() if (data := load_results(name)) is not None}
    out = [g for g in [tightening_goal(datasets)] if g is not None]
    if "exact_network" in datasets:
        out.append(seeds_goal(datasets["exact_network"]))
    return out


if __name__ == "__main__":
    main()
