"""Benchmark: how much LP and MILP bound tightening shrink the budget-aware interval bounds
of the exact network MILP (second-layer pre-activations; the first layer's are exact).

Students 8-8-8-3 at initialization on the digits and planted instances of
``bench_exact_network.py`` (N=16, global density 0.25). For each mode: time, total width of
the second-layer bounds, stable neurons (bounds of one sign), and the median and largest
relative width shrink against the interval bounds. Writes ``bound_widths.json``;
``--report`` rebuilds the block ``bound_widths`` of docs/benchmarks/exact.md.

    python benchmarks/bench_bound_widths.py
    python benchmarks/bench_bound_widths.py --quick      # a 4-4-4-2 student, N = 4, seconds
    python benchmarks/bench_bound_widths.py --report
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from maskopt.exact import network_layers
from maskopt.report import format_table
from maskopt.solvers.exact import network
from maskopt.solvers.exact.highs import MipSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, save_results  # noqa: E402
from bench_exact_network import digits_instance, planted_instance  # noqa: E402
from exact_common import add_common_flags, command_line, header, md_table, report_or_quick  # noqa: E402

PAGE = "exact"
MODES = ("interval", "lp", "milp")  # the first is the reference of the shrink


def widths(name: str, prob, modes=MODES) -> list[dict]:
    """One row per bound mode: time, total width, stable neurons and the shrink against ``modes[0]``."""
    x, layers = network_layers(prob)
    units, size = prob.allocation.units(), prob.allocation.size
    rows, base = [], None
    for mode in modes:
        t0 = time.perf_counter()
        lo, hi = network.compute_bounds(x, layers, units, size, mode, MipSettings())[1]
        width = hi - lo
        base = width if base is None else base
        shrink = np.where(base > 0, 1 - width / np.where(base > 0, base, 1.0), 0.0)  # a 0-width bound stays 0
        rows.append({"instance": name, "bounds": mode, "time s": time.perf_counter() - t0,
                     "total width": float(width.sum()), "stable": int(((hi <= 0) | (lo >= 0)).sum()),
                     "neurons": int(lo.size), "median shrink %": 100 * float(np.median(shrink)),
                     "max shrink %": 100 * float(shrink.max())})
        print(format_table([rows[-1]], list(rows[-1])), flush=True)
    return rows


def sections() -> dict[str, str]:
    data = load_results("bound_widths")
    if data is None:
        return {}
    return {"bound_widths": "\n".join([
        *header("bound_widths", "Second-layer bounds: interval vs LP vs MILP tightening", data),
        f"Student {data['student']} at initialization, N = {data['n']}, global density 0.25; bounds of the second "
        "layer's pre-activations (sample × neuron). `milp` solves each bound's MILP (1 s limit each, its dual "
        "bound used): when none hits the limit (total time well under one second per bound) it is the exact "
        "range over all masks within the budget.",
        "",
        md_table([{**r, "total width": f"{r['total width']:.6g}"} for r in data["rows"]]),
    ])}


def tightening_summary(rows: list[dict]) -> str:
    """Largest median and max shrink of the tightened modes, and the extra stable neurons they find."""
    base = {r["instance"]: r["stable"] for r in rows if r["bounds"] == MODES[0]}
    tight = [r for r in rows if r["bounds"] != MODES[0]]
    extra = max(r["stable"] - base[r["instance"]] for r in tight)
    return (f"width shrink: median {max(r['median shrink %'] for r in tight):.2g} %, max "
            f"{max(r['max shrink %'] for r in tight):.2g} %; stable neurons +{extra}")


def goals() -> list[Goal]:
    data = load_results("bound_widths")
    if data is None:
        return []
    return [Goal("Exact network MILP", f"LP / MILP tightening of the interval bounds (second layer, {data['student']})",
                 tightening_summary(data["rows"]), "no goal", "bound_widths")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="8-8-8-3")
    ap.add_argument("--n", type=int, default=16)
    add_common_flags(ap)
    args = ap.parse_args()
    if report_or_quick(args, sections):
        return
    if args.quick:
        args.student, args.n = "4-4-4-2", 4
    sizes = [int(v) for v in args.student.split("-")]
    rows = []
    for name, make in (("digits", digits_instance), ("planted", planted_instance)):
        rows += widths(name, make(sizes, args.n))
    save_results("bound_widths", {"command": command_line(), "student": args.student, "n": args.n, "rows": rows})


if __name__ == "__main__":
    main()
