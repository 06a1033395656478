"""Benchmark: certified layer-wise masks for the layers of a trained MNIST-1D MLP, row by row.

The network: ``mnist1d_mlp`` (40-500-500-10) trained with the ticket benchmark's protocol
(``bench_tickets.PROTOCOL``, initialisation ``bench_tickets.student(0)``). Calibration: the
first N = 1000 training inputs. Each layer-wise problem keeps the layer's trained weights
and bias fixed and asks which weights to keep so that the layer's outputs stay closest to
its dense outputs (``target = inputs @ W.T + b``); inputs of layer 2 are the dense network's
hidden activations relu(linear1(x)).

Parts (each writes ``benchmarks/results/exact_rows_<part>.json``; ``--report`` rebuilds the
BENCHMARKS.md section from the files present):

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
    python benchmarks/bench_exact_rows.py --report
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import maskopt as mo
from maskopt.report import format_markdown
from maskopt.solvers.exact.highs import MipSettings
from maskopt.solvers.exact.layerwise import _solve_group, gram_form

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, replace_section, save_results  # noqa: E402
from bench_tickets import PROTOCOL, student  # noqa: E402

N_CALIBRATION = 1000
GAP = 1e-4


def trained_layers() -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{layer: (inputs (N, in), weight (out, in), bias (out,))} of the trained MLP, float64."""
    data = mo.data.mnist1d()
    model = student(0)
    mo.train(model, data, **PROTOCOL)
    x = data.x[:N_CALIBRATION].float()
    with torch.no_grad():
        h1 = torch.relu(model.linear1(x))
    return {layer: (inp.double().numpy(), lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy())
            for layer, inp, lin in ((1, x, model.linear1), (2, h1, model.linear2))}


def problem(layer, sparsity: float, loss: str, rows: int | None = None, scope: str = "row") -> mo.LayerwiseProblem:
    X, W, b = layer
    W, b = (W, b) if rows is None else (W[:rows], b[:rows])
    return mo.LayerwiseProblem(X, W, X @ W.T + b, mo.Budget(sparsity=sparsity, scope=scope), loss=loss, bias=b)


def row_summary(res: mo.SolveResult) -> dict:
    rows = res.stats["rows"]
    gaps = [mo.api.relative_gap(r["objective"], r["bound"]) for r in rows]
    times = [r["time"] for r in rows]
    statuses = [r["status"] for r in rows]
    return {"rows": len(rows), "status": res.status, "objective": res.objective, "bound": res.bound, "gap": res.gap,
            "wall": res.time, "proven": statuses.count("optimal"), "row_gap_median": statistics.median(gaps),
            "row_gap_max": max(gaps), "row_time_median": statistics.median(times), "row_time_max": max(times),
            "row_time_sum": sum(times), "per_row": [[r["status"], g, t] for r, g, t in zip(rows, gaps, times)]}


def part_rows(layers, args) -> dict:
    out = []
    settings = [(1, s, loss, args.l1_rows) for loss in ("l2", "l1") for s in (0.9, 0.5)]
    settings.append((2, 0.9, "l2", args.l2_rows))
    for li, sparsity, loss, rows in settings:
        prob = problem(layers[li], sparsity, loss, rows)
        res = mo.solve(prob, method="exact", workers=args.workers, row_time_limit=args.row_limit, gap=GAP)
        entry = {"layer": li, "sparsity": sparsity, "loss": loss, **row_summary(res)}
        for method, opts in (("magnitude", {}), ("hierarchy", {"seed": 0, "verbose": False})):
            h = mo.solve(prob, method=method, **opts)
            entry[f"{method}_objective"] = h.objective
            entry[f"{method}_gap_to_bound"] = mo.api.relative_gap(h.objective, res.bound)
            entry[f"{method}_time"] = h.time
        out.append(entry)
        print(f"layer {li} {loss} {sparsity:.0%}: {entry['proven']}/{entry['rows']} rows proven, wall "
              f"{entry['wall']:.0f} s, gap {entry['gap']:.2e}, magnitude gap {entry['magnitude_gap_to_bound']:.3f}, "
              f"hierarchy gap {entry['hierarchy_gap_to_bound']:.3f}", flush=True)
        save_results("exact_rows_rows", {"command": " ".join(sys.argv), "args": vars(args), "settings": out})
    return {"settings": out}


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
    return {"status": model.getStatus(), "objective": obj, "bound": model.getDualbound(), "time": elapsed}


def part_compare(layers, args) -> dict:
    out = []
    settings = [(1, 0.9), (1, 0.5), (2, 0.9)]
    for li, sparsity in settings:
        X, W, b = layers[li]
        d = X.shape[1]
        k = round(d * (1 - sparsity))
        R, A, s2 = gram_form(X, -(X @ W.T))
        for o in range(args.compare_rows):
            w = W[o:o + 1]
            active = w != 0
            unit = [(0, d, k)]
            start = [np.zeros_like(active)]
            rec = {"layer": li, "sparsity": sparsity, "row": o}
            cfg = MipSettings(gap=GAP, threads=1)
            for name, data, const, strengthen in (
                    ("gram_oa", (R, w, A[:, o:o + 1]), float(s2[o]), "none"),
                    ("per_sample_oa", (X, w, -(X @ w.T)), 0.0, "none"),
                    ("gram_oa_sdp", (R, w, A[:, o:o + 1]), float(s2[o]), "sdp")):
                if name == "gram_oa_sdp" and d > 100:
                    continue  # the Shor SDP of a 500-input row does not fit in memory (a 126 GB allocation)
                t0 = time.perf_counter()
                g = _solve_group(*data, active, unit, "l2", cfg, start, args.compare_limit, const, strengthen)
                rec[name] = {"status": g.status, "objective": g.objective, "bound": g.bound,
                             "gap": mo.api.relative_gap(g.objective, g.bound), "time": time.perf_counter() - t0,
                             "root_bound": g.stats.get("root_bound")}
            Aw = R * w[0]
            rec["scip"] = scip_row(Aw.T @ Aw, Aw.T @ A[:, o], float(A[:, o] @ A[:, o] + s2[o]), k, args.compare_limit)
            rec["scip"]["gap"] = mo.api.relative_gap(rec["scip"]["objective"], rec["scip"]["bound"]) \
                if np.isfinite(rec["scip"]["objective"]) else None
            out.append(rec)
            print(json.dumps({k2: (v if not isinstance(v, dict) else {kk: v[kk] for kk in ("status", "gap", "time")})
                              for k2, v in rec.items()}), flush=True)
            save_results("exact_rows_compare", {"command": " ".join(sys.argv), "args": vars(args), "rows": out})
    return {"rows": out}


def part_coupled(layers, args) -> dict:
    earlier = _load("coupled")  # entries of layers not rerun now are kept
    out = [s for s in (earlier or {}).get("settings", []) if s["layer"] not in args.coupled_layers]
    for li, sparsity, rows in ((1, 0.9, args.coupled_rows), (2, 0.9, args.coupled_rows2)):
        if li not in args.coupled_layers:
            continue
        prob = problem(layers[li], sparsity, "l2", rows, scope="layer")
        res = mo.solve(prob, method="exact", decompose=True, workers=args.workers, row_time_limit=args.row_limit,
                       gap=GAP)
        row_budget = mo.solve(problem(layers[li], sparsity, "l2", rows), method="exact",
                              workers=args.workers, row_time_limit=args.row_limit, gap=GAP)
        entry = {"layer": li, "sparsity": sparsity, "rows": rows, "command": " ".join(sys.argv), "status": res.status,
                 "objective": res.objective, "bound": res.bound, "gap": res.gap,
                 "lagrangian_bound": res.stats["lagrangian_bound"],
                 "lagrangian_gap": mo.api.relative_gap(res.objective, res.stats["lagrangian_bound"]),
                 "rounds": res.stats["decomposition_rounds"], "subproblems": res.stats["subproblems"], "wall": res.time,
                 "row_counts_min": min(res.stats["row_counts"]), "row_counts_max": max(res.stats["row_counts"]),
                 "row_budget_objective": row_budget.objective, "row_budget_wall": row_budget.time}
        out.append(entry)
        print(entry, flush=True)
        save_results("exact_rows_coupled", {"command": " ".join(sys.argv), "args": vars(args), "settings": out})
    return {"settings": out}


def part_dask(layers, args) -> dict:
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
    save_results("exact_rows_dask", {"command": " ".join(sys.argv), "args": vars(args), **entry})
    return entry


def _load(part: str) -> dict | None:
    path = ROOT / "benchmarks" / "results" / f"exact_rows_{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


def report() -> str:
    lines = ["## Certified layer-wise masks for a trained MNIST-1D MLP, row by row",
             "",
             "Layer-wise problems of the trained `mnist1d_mlp` (40-500-500-10, the ticket benchmark's training), "
             f"N = {N_CALIBRATION} calibration inputs from the training split, target = the dense layer's outputs. "
             f"Exact = `mo.solve(problem, method=\"exact\", gap={GAP})`: L2 in Gram form (outer approximation on the "
             "QR factor of the inputs), L1 per sample; one MILP per row on a local process pool. Script: "
             "`benchmarks/bench_exact_rows.py`."]
    rows = _load("rows")
    if rows:
        lines += ["", f"Command: `{rows['command']}`. Machine: {rows['machine']}.", ""]
        table = [{"layer": s["layer"], "loss": s["loss"], "sparsity": f"{s['sparsity']:.0%}", "rows": s["rows"],
                  "proven optimal": s["proven"], "layer gap": f"{s['gap']:.1e}",
                  "worst row gap": f"{s['row_gap_max']:.1e}", "row time median / max (s)":
                      f"{s['row_time_median']:.2f} / {s['row_time_max']:.1f}", "wall (s)": f"{s['wall']:.0f}",
                  "magnitude gap": f"{s['magnitude_gap_to_bound']:.1%}",
                  "hierarchy gap": f"{s['hierarchy_gap_to_bound']:.1%}"} for s in rows["settings"]]
        lines += [format_markdown(table, list(table[0]))]
    cmp_ = _load("compare")
    if cmp_:
        lines += ["", f"Same rows, one at a time, {cmp_['args']['compare_limit']:.0f} s each, one thread "
                      f"(`{cmp_['command']}`): status, gap, seconds.", ""]
        table = []
        for r in cmp_["rows"]:
            entry = {"layer": r["layer"], "sparsity": f"{r['sparsity']:.0%}", "row": r["row"]}
            for name in ("gram_oa", "per_sample_oa", "gram_oa_sdp", "scip"):
                v = r.get(name)
                entry[name] = "—" if v is None else (
                    f"{v['status']}, {v['gap']:.1e}, {v['time']:.1f}" if v["gap"] is not None else f"{v['status']}")
            table.append(entry)
        lines += [format_markdown(table, list(table[0]))]
    coupled = _load("coupled")
    if coupled:
        commands = "; ".join(f"layer {s['layer']}: `{s['command']}`" for s in coupled["settings"])
        lines += ["", f"Layer budget (one count over the first rows), `decompose=True` ({commands}):", ""]
        table = [{"layer": s["layer"], "rows": s["rows"], "sparsity": f"{s['sparsity']:.0%}", "status": s["status"],
                  "gap (allocation bound)": f"{s['gap']:.1e}", "gap (Lagrangian bound)": f"{s['lagrangian_gap']:.1e}",
                  "rounds": s["rounds"], "row solves": s["subproblems"],
                  "kept per row min–max": f"{s['row_counts_min']}–{s['row_counts_max']}",
                  "objective vs row budget": f"{s['objective'] / s['row_budget_objective']:.3f}",
                  "wall (s)": f"{s['wall']:.0f}"} for s in coupled["settings"]]
        lines += [format_markdown(table, list(table[0]))]
    dask = _load("dask")
    if dask:
        lines += ["", f"Serial vs Dask `LocalCluster` (2 worker processes, 1 thread each), layer 1, L2, 90 %, first "
                      f"{dask['rows']} rows (`{dask['command']}`): serial {dask['serial_wall']:.1f} s, Dask "
                      f"{dask['dask_wall']:.1f} s (×{dask['speedup']:.2f}; cluster start {dask['cluster_start']:.1f} s "
                      f"not counted), identical masks: {dask['identical_masks']}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("rows", "compare", "coupled", "dask"), action="append")
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
    ap.add_argument("--report", action="store_true", help="rebuild the BENCHMARKS.md section from the results")
    args = ap.parse_args()
    if args.part:
        layers = trained_layers()
        for part in args.part:
            {"rows": part_rows, "compare": part_compare, "coupled": part_coupled, "dask": part_dask}[part](layers, args)
    if args.report or args.part:
        replace_section("exact_rows", report())
        print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
