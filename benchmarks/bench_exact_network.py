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
import copy
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


def digits_instance(sizes: list[int], n: int) -> mo.DistillProblem:
    xt, teachers = digits_teachers(sizes[0], sizes[-1])
    return mo.DistillProblem(student_mlp(sizes), teachers, xt[:n], mo.Budget(density=0.25))


def planted_instance(sizes: list[int], n: int) -> mo.DistillProblem:
    student = student_mlp(sizes)
    x = torch.randn(n, sizes[0], generator=torch.Generator().manual_seed(1))
    probe = mo.DistillProblem(student, [student], x, mo.Budget(density=0.25))
    teacher = copy.deepcopy(student)
    mo.apply_masks(teacher, mo.solve(probe, method="random", seed=1).masks)
    mo.remove_masks(teacher)
    return mo.DistillProblem(student, [teacher], x, mo.Budget(density=0.25))


def run_modes(rows, kind, arch, n, problem, time_limit, threads, modes):
    for mode in modes:
        res = mo.solve(problem, method="exact", bounds=mode, time_limit=time_limit, threads=threads)
        row = {"instance": kind, "student": arch, "N": n, "bounds": mode, "status": res.status,
               "time": res.time, "nodes": res.stats["nodes"], "relu_binaries": res.stats["relu_binaries"],
               "bound_time": res.stats["bound_time"], "objective": res.objective, "bound": res.bound, "gap": res.gap}
        rows.append(row)
        print(format_table([row], list(row)), flush=True)


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
    args = ap.parse_args()
    rows = []
    makers = {"digits": digits_instance, "planted": planted_instance}
    for arch in args.students:
        sizes = [int(v) for v in arch.split("-")]
        for n in args.ns:
            for inst in args.instances:
                run_modes(rows, inst, arch, n, makers[inst](sizes, n), args.time_limit, args.threads, args.modes)
    largest = []
    for arch in args.largest:
        problem = digits_instance([int(v) for v in arch.split("-")], 16)
        res = mo.solve(problem, method="exact", time_limit=args.largest_limit, threads=args.threads)
        largest.append({"student": arch, "N": 16, "status": res.status, "time": res.time, "gap": res.gap,
                        "nodes": res.stats["nodes"]})
        print(format_table([largest[-1]], list(largest[-1])), flush=True)
    save_results(args.section, {"rows": rows, "largest": largest})
    write_section(args.section, rows, largest, args.time_limit, args.largest_limit,
                  f"python benchmarks/bench_exact_network.py {' '.join(sys.argv[1:])}", args.threads)


def speedup_rows(rows: list[dict], time_limit: float) -> list[dict]:
    """time(global big-M) / time(mode) per instance; a run that hit the limit gives a bound."""
    out = []
    for inst, arch, n in dict.fromkeys((r["instance"], r["student"], r["N"]) for r in rows):
        by = {r["bounds"]: r for r in rows if (r["instance"], r["student"], r["N"]) == (inst, arch, n)}
        row = {"instance": inst, "student": arch, "N": n}
        for m in [b for b in by if b != "global"]:
            g, t = by["global"], by[m]
            if g["status"] == "optimal" and t["status"] == "optimal":
                row[f"global/{m} time"] = f"{g['time'] / t['time']:.3g}"
            elif t["status"] == "optimal":
                row[f"global/{m} time"] = f">= {time_limit / t['time']:.3g} (big-M hit the limit)"
            elif g["status"] == "optimal":
                row[f"global/{m} time"] = f"<= {g['time'] / time_limit:.3g} ({m} hit the limit)"
            else:
                row[f"global/{m} time"] = "both hit the limit"
        out.append(row)
    return out


def write_section(section, rows, largest, time_limit, largest_limit, command, threads=None) -> None:
    cols = ["instance", "student", "N", "bounds", "status", "time", "nodes", "relu_binaries", "objective", "bound"]
    speedups = speedup_rows(rows, time_limit)
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
        f"HiGHS threads: {threads or 'default'}. "
        "`digits`: PCA of load_digits to the student's input width, classes 0..out-1, 3 trained teachers; "
        "`planted`: teacher = masked student (optimum 0).",
        "",
        "```", format_table(rows, cols), "```",
        "",
        "Speed-up of the bound modes over one global big-M:",
        "",
        "```", format_table(speedups, list(speedups[0])), "```",
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
