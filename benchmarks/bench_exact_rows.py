"""Benchmark: certified layer-wise masks for the layers of a trained MNIST-1D MLP, row by row.

The network: ``mnist1d_mlp`` (40-500-500-10) trained with the ticket benchmark's protocol
(``tickets_protocol``: ``experiments/tickets_mnist1d.toml``, initialization of trial 0).
Calibration: the first N = 1000 training inputs. Each layer-wise problem keeps the layer's
trained weights and bias fixed and asks which weights to keep so that the layer's outputs
stay closest to its dense outputs (``target = inputs @ W.T + b``); inputs of layer 2 are the
dense network's hidden activations relu(linear1(x)).

Parts (each writes ``exact_rows_<part>.json``; ``--report`` rebuilds the blocks
``exact_rows``, ``exact_rows_compare``, ``exact_rows_coupled`` and ``exact_rows_dask`` of
docs/benchmarks/exact.md from the files present):

* ``rows``: layer 1 (500 rows × 40 inputs) under row budgets at 50 % and 90 % sparsity, L1
  and L2, every row, ``--workers`` processes; layer 2 (500 × 500), L2, 90 %, on the first
  ``--l2-rows`` rows. Per row: status, gap, time. Beside them, on the same problems, the
  magnitude and hierarchy masks' gaps to the certified bound.
* ``compare``: on ``--compare-rows`` rows of each setting, one row at a time with
  ``--compare-limit`` seconds each: maskopt's Gram-form outer approximation, the same
  outer approximation on the per-sample data (the formulation before the Gram form), the
  Gram form with the QCR shift from the Shor SDP, and SCIP (pyscipopt) on the direct
  model (binary mask, one convex quadratic constraint in Gram form, Σm ≤ k).
* ``coupled``: a layer budget (one count over the rows) on the first ``--coupled-rows``
  rows of layer 1 and ``--coupled-rows2`` of layer 2, ``decompose=True``: allocation
  bound, Lagrangian bound, gap, time, and the objective beside the row budget's.
* ``dask``: the same row-budget problem (layer 1, L2, 90 %, first ``--dask-rows`` rows)
  serial in this process and on a Dask ``LocalCluster`` with 2 worker processes; wall
  times and whether the masks are identical.

    python benchmarks/bench_exact_rows.py --part rows            # tens of minutes on 2 cores
    python benchmarks/bench_exact_rows.py --part compare --compare-rows 2 --compare-limit 20
    python benchmarks/bench_exact_rows.py --quick                # every part on a tiny trained MLP, seconds
    python benchmarks/bench_exact_rows.py --report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import maskopt as mo
from maskopt.solvers.exact.highs import MipSettings
from maskopt.solvers.exact.layerwise import _solve_group, gram_form

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, save_results  # noqa: E402
from exact_common import add_common_flags, command_line, command_text, header, md_table, report_or_quick  # noqa: E402

PAGE = "exact"
AREA = "Certified rows of a trained MLP"
N_CALIBRATION = 1000
GAP = 1e-4
GOAL_WALL = 900.0  # the goal: a whole layer-1 setting certified within 15 min
GOAL_MEDIAN_GAP, GOAL_WORST_GAP = 0.01, 0.05  # the goal on layer-2 rows: row gaps <= 1 % median, <= 5 % worst
PARTS = ("rows", "compare", "coupled", "dask")
QUICK = {"workers": 1, "row_limit": 2.0, "l1_rows": 3, "l2_rows": 2, "compare_rows": 1, "compare_limit": 2.0,
         "coupled_rows": 3, "coupled_rows2": 2, "dask_rows": 4, "hierarchy_steps": 50}


def layer_data(model: torch.nn.Module, x: torch.Tensor) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{layer: (inputs (N, in), weight (out, in), bias (out,))} of an ``mnist1d_mlp``, float64."""
    with torch.no_grad():
        h1 = torch.relu(model.linear1(x))
    return {layer: (inp.double().numpy(), lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy())
            for layer, inp, lin in ((1, x, model.linear1), (2, h1, model.linear2))}


def trained_model(quick: bool = False) -> tuple[torch.nn.Module, mo.data.Dataset, int, str]:
    """(the trained MLP, its data, the calibration size, a description). ``quick``: a
    10-8-8-10 MLP on every 4th feature, trained for 20 steps, 100 calibration inputs."""
    data = mo.data.mnist1d()
    if quick:  # every 4th of the 40 features: rows of 10 inputs
        data = dataclasses.replace(data, x=data.x[:, ::4].contiguous(), x_test=data.x_test[:, ::4].contiguous())
        torch.manual_seed(0)
        model, n = mo.models.create("mnist1d_mlp", in_features=10, hidden=8), 100
        mo.train(model, data, steps=20, batch_size=100, lr=2e-2, verbose=False)
        return model, data, n, "mnist1d_mlp 10-8-8-10 on every 4th MNIST-1D feature, trained for 20 steps (--quick)"
    from tickets_protocol import load_setup, student

    setup = load_setup()
    model = student(setup, 0)
    mo.train(model, data, **setup.protocol)
    return model, data, N_CALIBRATION, ("mnist1d_mlp 40-500-500-10 trained with the ticket benchmark's protocol "
                                        "(initialization of trial 0)")


def trained_layers(quick: bool = False) -> tuple[dict, dict]:
    """The layers of the trained MLP (:func:`trained_model`) and what the results record about
    them (network, calibration size, gap, rows per layer)."""
    model, data, n, network = trained_model(quick)
    layers = layer_data(model, data.x[:n].float())
    meta = {"network": network, "n_calibration": n, "gap": GAP, "layer_rows": [len(layers[i][1]) for i in (1, 2)]}
    return layers, meta


def record(part: str, meta: dict, args: argparse.Namespace, **payload) -> None:
    """Write ``exact_rows_<part>.json``: the command, the options, the setup and ``payload``."""
    save_results(f"exact_rows_{part}", {"command": command_line(), "args": vars(args), **meta, **payload})


def problem(layer, sparsity: float, loss: str, rows: int | None = None, scope: str = "row") -> mo.LayerwiseProblem:
    X, W, b = layer
    W, b = (W, b) if rows is None else (W[:rows], b[:rows])
    return mo.LayerwiseProblem(X, W, X @ W.T + b, mo.Budget(sparsity=sparsity, scope=scope), loss=loss, bias=b)


def row_summary(res: mo.SolveResult) -> dict:
    rows = res.stats["rows"]
    gaps = [mo.relative_gap(r["objective"], r["bound"]) for r in rows]
    times = [r["time"] for r in rows]
    statuses = [r["status"] for r in rows]
    return {"rows": len(rows), "status": res.status, "objective": res.objective, "bound": res.bound, "gap": res.gap,
            "wall": res.time, "proven": statuses.count("optimal"), "row_gap_median": statistics.median(gaps),
            "row_gap_max": max(gaps), "row_time_median": statistics.median(times), "row_time_max": max(times),
            "row_time_sum": sum(times), "per_row": [[r["status"], g, t] for r, g, t in zip(rows, gaps, times)]}


def part_rows(layers, meta, args) -> None:
    out = []
    settings = [(1, s, loss, args.l1_rows) for loss in ("l2", "l1") for s in (0.9, 0.5)]
    settings.append((2, 0.9, "l2", args.l2_rows))
    for li, sparsity, loss, rows in settings:
        prob = problem(layers[li], sparsity, loss, rows)
        res = mo.solve(prob, method="exact", workers=args.workers, row_time_limit=args.row_limit, gap=GAP)
        entry = {"layer": li, "sparsity": sparsity, "loss": loss, **row_summary(res)}
        hierarchy = {"seed": 0, "verbose": False, **({"steps": args.hierarchy_steps} if args.hierarchy_steps else {})}
        for method, opts in (("magnitude", {}), ("hierarchy", hierarchy)):
            h = mo.solve(prob, method=method, **opts)
            entry[f"{method}_objective"] = h.objective
            entry[f"{method}_gap_to_bound"] = mo.relative_gap(h.objective, res.bound)
            entry[f"{method}_time"] = h.time
        out.append(entry)
        print(f"layer {li} {loss} {sparsity:.0%}: {entry['proven']}/{entry['rows']} rows proven, wall "
              f"{entry['wall']:.0f} s, gap {entry['gap']:.2e}, magnitude gap {entry['magnitude_gap_to_bound']:.3f}, "
              f"hierarchy gap {entry['hierarchy_gap_to_bound']:.3f}", flush=True)
        record("rows", meta, args, settings=out)


def scip_row(Q: np.ndarray, q: np.ndarray, gamma: float, k: int, limit: float) -> dict:
    """min t s.t. t ≥ mᵀQm + 2qᵀm + γ, Σm ≤ k, m binary; SCIP with one thread."""
    from pyscipopt import Model, quicksum

    n = len(q)
    model = Model()
    model.hideOutput()
    model.setParam("limits/time", limit)
    model.setParam("limits/gap", GAP)
    m = [model.addVar(vtype="B") for _ in range(n)]
    t = model.addVar(lb=None)
    model.addCons(quicksum(Q[i, j] * m[i] * m[j] for i in range(n) for j in range(n) if Q[i, j] != 0)
                  + quicksum(2 * q[i] * m[i] for i in range(n)) + gamma <= t)
    model.addCons(quicksum(m) <= k)
    model.setObjective(t)
    t0 = time.perf_counter()
    model.optimize()
    elapsed = time.perf_counter() - t0
    obj = model.getObjVal() if model.getNSols() else float("nan")
    gap = mo.relative_gap(obj, model.getDualbound()) if np.isfinite(obj) else None
    return {"status": model.getStatus(), "objective": obj, "bound": model.getDualbound(), "time": elapsed, "gap": gap}


def compare_one(X, W, R, A, s2, o: int, k: int, limit: float) -> dict:
    """Row ``o`` solved by the three outer approximations (Gram form, per sample, Gram form with
    the SDP's QCR shift; the SDP only up to 100 inputs) and by SCIP."""
    d = X.shape[1]
    w = W[o:o + 1]
    active, unit, cfg = w != 0, [(0, d, k)], MipSettings(gap=GAP, threads=1)
    rec = {}
    for name, data, const, strengthen in (
            ("gram_oa", (R, w, A[:, o:o + 1]), float(s2[o]), "none"),
            ("per_sample_oa", (X, w, -(X @ w.T)), 0.0, "none"),
            ("gram_oa_sdp", (R, w, A[:, o:o + 1]), float(s2[o]), "sdp")):
        if name == "gram_oa_sdp" and d > 100:
            continue  # the Shor SDP of a 500-input row does not fit in memory (a 126 GB allocation)
        t0 = time.perf_counter()
        g = _solve_group(*data, active, unit, "l2", cfg, [np.zeros_like(active)], limit, const, strengthen)
        rec[name] = {"status": g.status, "objective": g.objective, "bound": g.bound,
                     "gap": mo.relative_gap(g.objective, g.bound), "time": time.perf_counter() - t0,
                     "root_bound": g.stats.get("root_bound")}
    Aw = R * w[0]
    rec["scip"] = scip_row(Aw.T @ Aw, Aw.T @ A[:, o], float(A[:, o] @ A[:, o] + s2[o]), k, limit)
    return rec


def part_compare(layers, meta, args) -> None:
    import pyscipopt

    out = []
    for li, sparsity in ((1, 0.9), (1, 0.5), (2, 0.9)):
        X, W, b = layers[li]
        R, A, s2 = gram_form(X, -(X @ W.T))
        for o in range(args.compare_rows):
            rec = {"layer": li, "sparsity": sparsity, "row": o,
                   **compare_one(X, W, R, A, s2, o, round(X.shape[1] * (1 - sparsity)), args.compare_limit)}
            out.append(rec)
            print(json.dumps({k2: (v if not isinstance(v, dict) else {kk: v[kk] for kk in ("status", "gap", "time")})
                              for k2, v in rec.items()}), flush=True)
            record("compare", meta, args, rows=out,
                   scip=f"SCIP {pyscipopt.Model().version()} (pyscipopt {pyscipopt.__version__})")


def part_coupled(layers, meta, args) -> None:
    earlier = load_results("exact_rows_coupled")  # entries of layers not rerun now are kept
    out = [s for s in (earlier or {}).get("settings", []) if s["layer"] not in args.coupled_layers]
    for li, sparsity, rows in ((1, 0.9, args.coupled_rows), (2, 0.9, args.coupled_rows2)):
        if li not in args.coupled_layers:
            continue
        prob = problem(layers[li], sparsity, "l2", rows, scope="layer")
        res = mo.solve(prob, method="exact", decompose=True, workers=args.workers, row_time_limit=args.row_limit,
                       gap=GAP)
        row_budget = mo.solve(problem(layers[li], sparsity, "l2", rows), method="exact",
                              workers=args.workers, row_time_limit=args.row_limit, gap=GAP)
        entry = {"layer": li, "sparsity": sparsity, "rows": rows, "command": command_line(), "status": res.status,
                 "objective": res.objective, "bound": res.bound, "gap": res.gap,
                 "lagrangian_bound": res.stats["lagrangian_bound"],
                 "lagrangian_gap": mo.relative_gap(res.objective, res.stats["lagrangian_bound"]),
                 "rounds": res.stats["decomposition_rounds"], "subproblems": res.stats["subproblems"], "wall": res.time,
                 "row_counts_min": min(res.stats["row_counts"]), "row_counts_max": max(res.stats["row_counts"]),
                 "row_budget_objective": row_budget.objective, "row_budget_wall": row_budget.time}
        out.append(entry)
        print(entry, flush=True)
        record("coupled", meta, args, settings=out)


def part_dask(layers, meta, args) -> None:
    from distributed import Client, LocalCluster

    prob = problem(layers[1], 0.9, "l2", args.dask_rows)
    serial = mo.solve(prob, method="exact", gap=GAP, progress=False)
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        start = time.perf_counter() - t0
        dask = mo.solve(prob, method="exact", gap=GAP, executor=client.get_executor(), workers=2, progress=False)
    entry = {"rows": args.dask_rows, "serial_wall": serial.time, "dask_wall": dask.time, "cluster_start": start,
             "speedup": serial.time / dask.time, "identical_masks": bool(torch.equal(serial.masks["weight"],
                                                                                     dask.masks["weight"])),
             "serial_status": serial.status, "dask_status": dask.status,
             "objective_serial": serial.objective, "objective_dask": dask.objective}
    print(entry, flush=True)
    record("dask", meta, args, **entry)


def intro(data: dict) -> str:
    """The setup every part shares: the network, calibration, target and the exact solve."""
    return (f"Layer-wise problems of {data['network']}, N = {data['n_calibration']} calibration inputs from the "
            "training split, target = the dense layer's outputs. Exact = `mo.solve(problem, method=\"exact\", "
            f"gap={data['gap']:g})`: L2 in Gram form (outer approximation on the QR factor of the inputs), L1 per "
            "sample; one MILP per row.")


def network_line(data: dict) -> str:
    return f"Network: {data['network']}; N = {data['n_calibration']} calibration inputs, gap {data['gap']:g}."


def rows_block(data: dict) -> str:
    a = data["args"]
    table = [{"layer": s["layer"], "loss": s["loss"], "sparsity": f"{s['sparsity']:.0%}",
              "rows": f"{s['rows']} of {data['layer_rows'][s['layer'] - 1]}", "proven optimal": s["proven"],
              "layer gap": f"{s['gap']:.1e}", "worst row gap": f"{s['row_gap_max']:.1e}",
              "row time median / max (s)": f"{s['row_time_median']:.2f} / {s['row_time_max']:.1f}",
              "wall (s)": f"{s['wall']:.0f}", "magnitude gap": f"{s['magnitude_gap_to_bound']:.1%}",
              "hierarchy gap": f"{s['hierarchy_gap_to_bound']:.1%}"} for s in data["settings"]]
    return "\n".join([
        *header("exact_rows", "Certified rows of a trained MNIST-1D MLP under row budgets", data),
        intro(data) + f" Row budgets, {a['workers']} worker process(es), {a['row_limit']:g} s per row. `magnitude "
        "gap` and `hierarchy gap`: those methods' masks against the certified bound of the same problem.",
        "", md_table(table)])


def compare_cell(v: dict | None) -> str:
    if v is None:
        return "—"
    return f"{v['status']}, {v['gap']:.1e}, {v['time']:.1f}" if v["gap"] is not None else v["status"]


def compare_block(data: dict) -> str:
    names = ("gram_oa", "per_sample_oa", "gram_oa_sdp", "scip")
    table = [{"layer": r["layer"], "sparsity": f"{r['sparsity']:.0%}", "row": r["row"],
              **{name: compare_cell(r.get(name)) for name in names}} for r in data["rows"]]
    return "\n".join([
        *header("exact_rows_compare", "One row at a time: Gram form vs per-sample data, QCR shift and SCIP", data),
        network_line(data) + f" Each row alone, {data['args']['compare_limit']:g} s, one thread: `gram_oa` maskopt's "
        "Gram-form outer approximation, `per_sample_oa` the same on the per-sample data, `gram_oa_sdp` the Gram form "
        "with the QCR shift from the Shor SDP (rows of at most 100 inputs), `scip` " + data["scip"] + " on the "
        "direct model (binary mask, one convex quadratic constraint in Gram form, Σm ≤ k). Cells: status, gap, "
        "seconds.",
        "", md_table(table)])


def coupled_block(data: dict) -> str:
    table = [{"layer": s["layer"], "rows": s["rows"], "sparsity": f"{s['sparsity']:.0%}", "status": s["status"],
              "gap (allocation bound)": f"{s['gap']:.1e}", "gap (Lagrangian bound)": f"{s['lagrangian_gap']:.1e}",
              "rounds": s["rounds"], "row solves": s["subproblems"],
              "kept per row min–max": f"{s['row_counts_min']}–{s['row_counts_max']}",
              "objective vs row budget": f"{s['objective'] / s['row_budget_objective']:.3f}",
              "wall (s)": f"{s['wall']:.0f}"} for s in data["settings"]]
    lines = header("exact_rows_coupled", "Layer budgets over the rows, by decomposition", data)
    commands = "; ".join(f"layer {s['layer']}: `{command_text(s['command'])}`" for s in data["settings"])
    return "\n".join([
        *lines[:4], f"Commands: {commands}", *lines[5:],
        network_line(data) + " One count over the first rows of a layer (`Budget(scope=\"layer\")`), `decompose=True`: "
        "the allocation bound (exact over the proven row bounds) and the Lagrangian bound; `objective vs row "
        "budget`: the layer budget's loss over that of the same count spread evenly over the rows.",
        "", md_table(table)])


def dask_block(data: dict) -> str:
    return "\n".join([
        *header("exact_rows_dask", "Rows on a Dask cluster", data),
        network_line(data) + f" Layer 1, L2, 90 %, first {data['rows']} rows under row budgets, serial in one "
        "process and on a Dask `LocalCluster` (2 worker processes, 1 thread each):", "",
        md_table([{"serial (s)": f"{data['serial_wall']:.1f}", "Dask (s)": f"{data['dask_wall']:.1f}",
                   "speed-up": f"{data['speedup']:.2f}",
                   "cluster start (s, not counted)": f"{data['cluster_start']:.1f}",
                   "identical masks": data["identical_masks"],
                   "statuses": f"{data['serial_status']} / {data['dask_status']}"}])])


BLOCKS = {"rows": rows_block, "compare": compare_block, "coupled": coupled_block, "dask": dask_block}


def sections() -> dict[str, str]:
    out = {}
    for part, block in BLOCKS.items():
        data = load_results(f"exact_rows_{part}")
        if data is not None:
            out["exact_rows" if part == "rows" else f"exact_rows_{part}"] = block(data)
    return out


def layer1_goal(settings: list[dict], layer_rows: int, sparsity: float) -> Goal | None:
    """Layer 1 at ``sparsity``, L1 and L2: every row of the layer proven, each within GOAL_WALL s."""
    ss = [s for s in settings if s["layer"] == 1 and s["sparsity"] == sparsity]
    if not ss:
        return None
    whole = [s for s in ss if s["rows"] == layer_rows and s["proven"] == s["rows"]]
    fast = sum(s["wall"] <= GOAL_WALL for s in whole)
    measured = ", ".join(f"{s['loss'].upper()} {s['wall']:.0f} s ({s['proven']}/{s['rows']} rows proven)"
                         for s in ss)
    return Goal(AREA, f"Layer 1 at {sparsity:.0%} sparsity certified row by row in ≤ {GOAL_WALL / 60:g} min",
                measured, "met" if fast == len(ss) else "partly met" if fast else "not met", "exact_rows")


def layer2_goal(settings: list[dict], layer_rows: int) -> Goal | None:
    """Layer 2 rows: certified gaps ≤ GOAL_MEDIAN_GAP median and ≤ GOAL_WORST_GAP worst (met
    on the whole layer; partly met when the run covers only its first rows)."""
    ss = [s for s in settings if s["layer"] == 2]
    if not ss:
        return None
    s = ss[0]
    holds = s["row_gap_median"] <= GOAL_MEDIAN_GAP and s["row_gap_max"] <= GOAL_WORST_GAP
    verdict = "not met" if not holds else "met" if s["rows"] == layer_rows else "partly met"
    return Goal(AREA, f"Layer 2 ({s['loss'].upper()}, {s['sparsity']:.0%}) row gaps ≤ {GOAL_MEDIAN_GAP:.0%} median, "
                      f"≤ {GOAL_WORST_GAP:.0%} worst",
                f"first {s['rows']} of {layer_rows} rows: {s['proven']} proven, median {s['row_gap_median']:.1e}, "
                f"worst {s['row_gap_max']:.1e}", verdict, "exact_rows")


def goals() -> list[Goal]:
    data = load_results("exact_rows_rows")
    if data is None:
        return []
    settings, (rows1, rows2) = data["settings"], data["layer_rows"]
    found = [layer1_goal(settings, rows1, 0.9), layer1_goal(settings, rows1, 0.5), layer2_goal(settings, rows2)]
    return [g for g in found if g is not None]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=PARTS, action="append")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--row-limit", type=float, default=120.0, help="seconds per row")
    ap.add_argument("--l1-rows", type=int, default=None, help="rows of layer 1 (default all 500)")
    ap.add_argument("--l2-rows", type=int, default=500, help="rows of layer 2")
    ap.add_argument("--compare-rows", type=int, default=3)
    ap.add_argument("--compare-limit", type=float, default=30.0)
    ap.add_argument("--coupled-rows", type=int, default=50, help="rows of layer 1 under a layer budget")
    ap.add_argument("--coupled-rows2", type=int, default=8, help="rows of layer 2 under a layer budget")
    ap.add_argument("--coupled-layers", type=int, nargs="+", default=[1, 2], help="layers of the layer-budget part")
    ap.add_argument("--dask-rows", type=int, default=40)
    ap.add_argument("--hierarchy-steps", type=int, default=None,
                    help="steps per stage of the hierarchy masks of the rows part (default: the method's)")
    add_common_flags(ap)
    args = ap.parse_args()
    if args.quick:
        vars(args).update(QUICK)
        args.part = args.part or list(PARTS)  # --quick --part ...: only those parts
    elif not args.part and not args.report:
        ap.error("name a --part (or --quick, --report)")
    return args


def main() -> None:
    args = parse_args()
    if report_or_quick(args, sections):
        return
    layers, meta = trained_layers(args.quick)
    for part in args.part:
        {"rows": part_rows, "compare": part_compare, "coupled": part_coupled, "dask": part_dask}[part](
            layers, meta, args)
    print("--report rebuilds the blocks from the results", flush=True)


if __name__ == "__main__":
    main()
