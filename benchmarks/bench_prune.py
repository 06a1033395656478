"""Post-training pruning of a trained MNIST-1D MLP, layer by layer, against per-layer
certificates.

The network: the MNIST-1D MLP 40-500-500-10 trained with the ticket benchmark's protocol
(initialization of trial 0), N = 1000 calibration inputs (the first training samples). Each
Linear layer's problem has the dense network's inputs and the dense layer's output as target,
squared loss (``mo.layer_problems``), budget ``Budget(sparsity=s, scope="row")`` (every
output keeps the same count) at s = 50 / 70 / 90 %. Methods: magnitude, Wanda, the
OBS-style mask, the relaxation hierarchy, hierarchy + swap local search, and the exact solver
with a time limit per row, warm-started from hierarchy + swap (so its mask is never worse).
The exact run's bound is the certificate every method's gap is measured against. The network
accuracy is the test accuracy of the whole network with every layer's mask applied, without
retraining, and with each layer's kept weights refit by least squares on its calibration
inputs.

    python benchmarks/bench_prune.py               # the recorded run
    python benchmarks/bench_prune.py --quick       # a 10-8-8-10 MLP, 100 inputs, seconds
    python benchmarks/bench_prune.py --report      # rewrite docs/benchmarks/posttraining.md's blocks
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

import maskopt as mo
from maskopt.posttrain import refit_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, save_results, table, use_scratch_results, write_sections  # noqa: E402
from bench_exact_rows import trained_model  # noqa: E402

PAGE = "posttraining"
AREA = "Post-training pruning"
NAME = "posttraining"
SPARSITIES = (0.5, 0.7, 0.9)
METHODS = ("magnitude", "wanda", "obs", "hierarchy", "hierarchy+swap", "exact")
QUIET = {"verbose": False}


def solve_layer(problem: mo.LayerwiseProblem, row_limit: float, workers: int) -> dict[str, mo.SolveResult]:
    """Every method on one layer problem; the exact solver starts from hierarchy + swap."""
    out = {"magnitude": mo.solve(problem, method="magnitude"), "wanda": mo.solve(problem, method="wanda"),
           "obs": mo.solve(problem, method="obs"), "hierarchy": mo.solve(problem, method="hierarchy", **QUIET)}
    out["hierarchy+swap"] = mo.solve(problem, method="swap", start=out["hierarchy"].masks)
    out["exact"] = mo.solve(problem, method="exact", warm_start=out["hierarchy+swap"].masks, time_limit=None,
                            row_time_limit=row_limit, workers=workers, progress=False)
    return out


def accuracy(model: torch.nn.Module, data: mo.data.Dataset) -> float:
    with torch.no_grad():
        return 100.0 * float((model(data.x_test).argmax(1) == data.y_test).float().mean())


def pruned_model(model, problems: dict, masks: dict, refit: bool) -> torch.nn.Module:
    """``model`` with every layer's mask applied (and its kept weights refit)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, problem in problems.items():
            weight = out.get_submodule(name).weight
            new = refit_weights(problem, masks[name])[0] if refit else masks[name] * problem.weight
            weight.copy_(new.to(weight.dtype))
    return out


def run(args: argparse.Namespace) -> dict:
    model, data, n, network = trained_model(args.quick)
    x = data.x[:n].float()
    rows, nets = [], []
    for s in (0.9,) if args.quick else SPARSITIES:
        problems = mo.layer_problems(model, x, mo.Budget(sparsity=s, scope="row"))
        masks: dict[str, dict] = {m: {} for m in METHODS}
        for name, problem in problems.items():
            t0 = time.perf_counter()
            results = solve_layer(problem, args.row_limit, args.workers)
            bound = results["exact"].bound
            for m, res in results.items():
                masks[m][name] = res.masks["weight"]
                shape = "x".join(map(str, problem.weight.shape))
                rows.append({"sparsity": s, "layer": name, "shape": shape, "method": m, "objective": res.objective,
                             "bound": bound, "gap": mo.relative_gap(res.objective, bound), "status": res.status,
                             "time": res.time})
            print(f"s={s} layer {name}: {time.perf_counter() - t0:.0f} s, exact {results['exact'].status}", flush=True)
        for m in METHODS:
            nets.append({"sparsity": s, "method": m,
                         "accuracy": accuracy(pruned_model(model, problems, masks[m], False), data),
                         "accuracy_refit": accuracy(pruned_model(model, problems, masks[m], True), data)})
    return {"command": "python benchmarks/bench_prune.py" + (" --quick" if args.quick else ""), "network": network,
            "n_calibration": n, "row_time_limit": args.row_limit, "workers": args.workers,
            "dense_accuracy": accuracy(model, data), "rows": rows, "networks": nets}


# ---------------------------------------------------------------- report


def _fmt(v, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def sections() -> dict[str, str]:
    data = load_results(NAME)
    if data is None:
        return {}
    head = [f"Command: `{data['command']}`", "", f"Machine: {data['machine']}", "",
            f"Network: {data['network']}; {data['n_calibration']} calibration inputs; exact solver: "
            f"{data['row_time_limit']} s per row, {data['workers']} workers, warm-started from hierarchy+swap.", ""]
    layers = table(["sparsity", "layer", "shape", "method", "objective", "gap to bound", "status", "time (s)"],
                   [[f"{100 * r['sparsity']:.0f} %", r["layer"], r["shape"], r["method"], _fmt(r["objective"], 6),
                     "-" if r["gap"] is None else f"{100 * r['gap']:.3g} %", r["status"], f"{r['time']:.1f}"]
                    for r in data["rows"]])
    nets = table(["sparsity", "method", "test accuracy (%)", "with refit (%)", "Σ layer objectives"],
                 [[f"{100 * n['sparsity']:.0f} %", n["method"], f"{n['accuracy']:.2f}", f"{n['accuracy_refit']:.2f}",
                   _fmt(_total(data, n["sparsity"], n["method"]), 6)] for n in data["networks"]])
    return {"posttraining_layers": "\n".join(["## Every layer's objective against its certified bound", "",
                                              *head, layers]),
            "posttraining_network": "\n".join(["## The pruned network's test accuracy", "",
                                               f"Dense network: {data['dense_accuracy']:.2f} % test accuracy.", "",
                                               nets, "", _ranking_text(data)])}


def _total(data: dict, s: float, method: str) -> float:
    return sum(r["objective"] for r in data["rows"] if r["sparsity"] == s and r["method"] == method)


def _ranking_text(data: dict) -> str:
    """Per sparsity: whether ordering methods by Σ layer objectives orders them by accuracy
    (Spearman's rank correlation between −objective and accuracy)."""
    lines = []
    for s in sorted({n["sparsity"] for n in data["networks"]}):
        nets = [n for n in data["networks"] if n["sparsity"] == s]
        rho = _spearman([-_total(data, s, n["method"]) for n in nets], [n["accuracy"] for n in nets])
        lines.append(f"- {100 * s:.0f} %: rank correlation of lower Σ objective with higher accuracy {rho:+.2f}")
    return "\n".join(["Do lower layer objectives give higher accuracy (mask only)?", "", *lines])


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = (torch.tensor(v).argsort().argsort().double() for v in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def goals() -> list[Goal]:
    data = load_results(NAME)
    if data is None:
        return []
    rows = data["rows"]
    exact = {(r["sparsity"], r["layer"]): r["objective"] for r in rows if r["method"] == "exact"}
    beaten = {(r["sparsity"], r["layer"]) for r in rows
              if r["objective"] < exact[(r["sparsity"], r["layer"])] * (1 - 1e-9)}
    first = rows[0]["layer"]
    hs = [r for r in rows if r["method"] == "hierarchy+swap" and r["layer"] == first]
    gaps = ", ".join(f"{100 * r['sparsity']:.0f} %: {100 * r['gap']:.3g} %" for r in hs)
    return [Goal(AREA, "the exact/certified route best or level on every layer objective",
                 f"best or level on {len(exact) - len(beaten)} of {len(exact)} layer problems",
                 "met" if not beaten else "partly met", "posttraining_layers"),
            Goal(AREA, "hierarchy + local search within 1 % of the certified bound on layer 1", gaps,
                 "met" if all(r["gap"] is not None and r["gap"] <= 0.01 for r in hs) else "not met",
                 "posttraining_layers")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny MLP, one sparsity, seconds")
    ap.add_argument("--report", action="store_true", help="rewrite the page's blocks from the results")
    ap.add_argument("--row-limit", type=float, default=1.0, help="exact solver: seconds per row")
    ap.add_argument("--workers", type=int, default=2, help="exact solver: rows at a time")
    args = ap.parse_args()
    if args.report:
        write_sections(PAGE, sections())
        return 0
    if args.quick:
        use_scratch_results()
        args.row_limit = min(args.row_limit, 0.5)
    save_results(NAME, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
