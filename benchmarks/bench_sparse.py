"""Sparse training (GMP, AC/DC, CrAM⁺-Multi, RigL, SET, static random ERK) on MNIST-1D and
digits, and sparse transfer between their class halves.

- MNIST-1D: the ticket benchmark's model and protocol (the 40-500-500-10 MLP with its residual
  connection at PyTorch's initialization after ``torch.manual_seed(42 + seed)``, Adam lr 2e-2,
  batch 100 in order, 1501 steps, evaluations every 100 steps); validation split: the 1000
  test samples of a fresh MNIST-1D draw (generator seed 0), as in the ticket benchmark.
- digits: ``mo.data.digits()`` (1347/450), the MLP 64-256-256-10, Adam lr 5e-3, batch 100
  shuffled, 600 steps, evaluations every 25; validation split: the last fifth of the training
  split (not trained on).
- Budget: ``Budget(sparsity=s, scope="layer", allocation="erk")`` over every parameter
  (weights and biases, as the ticket benchmark's ERK rows), s = 90 / 95 / 98 / 99 %.
- Every method trains the same number of steps from the same initialization (CrAM's steps
  cost two gradients). The method settings are the library defaults except RigL/SET's update
  period (T/15 steps: 100 on MNIST-1D, 40 on digits); none was tuned here. ``static`` = RigL
  with α = 0 (its random ERK mask, never updated). CrAM⁺-Multi trains once with the set
  {90, 95, 98, 99 %} and is pruned one-shot to each (no batch norm in these MLPs, so no
  recalibration). ``one-shot magnitude`` = the dense run pruned by magnitude to the budget,
  no fine-tuning.
- Reported: test accuracy at the last step and at the evaluation the validation split
  chooses (among those within the budget), compute in passes over the training split
  (per-sample gradients / training samples).
- Transfer: task A = classes 0-4, task B = classes 5-9 (relabelled 0-4); each method trains
  the model on A at 95 % (same settings, 5 outputs), then ``mo.transfer`` adapts it to B:
  linear (features fixed, new head) and full fine-tuning (mask fixed) for 500 (MNIST-1D) /
  300 (digits) steps; B's test accuracy at the last step and validation-chosen.

    python benchmarks/bench_sparse.py             # the recorded run (2 worker processes)
    python benchmarks/bench_sparse.py --quick     # tiny models, one sparsity, seconds
    python benchmarks/bench_sparse.py --report    # rewrite docs/benchmarks/sparse_training.md's blocks
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import maskopt as mo
from maskopt.sparse_training import ACDC, GMP, SET, CrAM, RigL, one_shot, sparse_train
from maskopt.transfer import class_subset, transfer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, machine, save_results, table, use_scratch_results, write_sections  # noqa: E402

PAGE = "sparse_training"
NAME = "sparse_training"
AREA = "Sparse training"
SPARSITIES = (0.9, 0.95, 0.98, 0.99)
SEEDS = (0, 1, 2)
TRANSFER_SPARSITY = 0.95
BENCHES = {
    "mnist1d": {"model": ("mnist1d_mlp", {}), "steps": 1501, "batch_size": 100, "lr": 2e-2, "shuffle": False,
                "eval_every": 100, "finetune_steps": 500, "update_every": 100},
    "digits": {"model": ("mlp", {"in_features": 64, "hidden": [256, 256]}), "steps": 600, "batch_size": 100,
               "lr": 5e-3, "shuffle": True, "eval_every": 25, "finetune_steps": 300, "update_every": 40},
}
QUICK = {"mnist1d": {"model": ("mnist1d_mlp", {"hidden": 32}), "steps": 30, "eval_every": 10, "finetune_steps": 10,
                     "update_every": 5},
         "digits": {"model": ("mlp", {"in_features": 64, "hidden": [32]}), "steps": 30, "eval_every": 10,
                    "finetune_steps": 10, "update_every": 5}}
SPARSE = ("gmp", "acdc", "rigl", "set", "static")
REFERENCE_AT_INIT = ("kd-lts", "magnitude", "random", "snip", "synflow")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def settings(bench: str, quick: bool) -> dict:
    return {**BENCHES[bench], **(QUICK[bench] if quick else {})}


def datasets(bench: str) -> tuple[mo.data.Dataset, tuple[torch.Tensor, torch.Tensor]]:
    """(training data with its test split, validation (x, y))."""
    if bench == "mnist1d":
        draw = mo.data.mnist1d(seed=0)
        return mo.data.mnist1d(), (draw.x_test, draw.y_test)
    full = mo.data.digits()
    n = full.x.shape[0] - full.x.shape[0] // 5
    return (mo.data.Dataset("digits", full.x[:n], full.y[:n], full.x_test, full.y_test, 10),
            (full.x[n:], full.y[n:]))


def model(cfg: dict, seed: int, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(42 + seed)
    name, kwargs = cfg["model"]
    return mo.models.create(name, **kwargs, num_classes=classes)


def method_of(name: str, cfg: dict, sparsities: tuple[float, ...]):
    every = cfg["update_every"]
    return {"gmp": GMP(), "acdc": ACDC(), "rigl": RigL(every=every), "set": SET(every=every),
            "static": RigL(alpha=0.0, every=every), "cram": CrAM(sparsities=sparsities)}[name]


def budget(s: float) -> mo.Budget:
    return mo.Budget(sparsity=s, scope="layer", allocation="erk")


def names(net: torch.nn.Module) -> list[str]:
    return [n for n, _ in net.named_parameters()]


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float((net.eval()(x).argmax(1) == y).float().mean())


def train_options(cfg: dict, seed: int) -> dict:
    return {"steps": cfg["steps"], "batch_size": cfg["batch_size"], "lr": cfg["lr"], "shuffle": cfg["shuffle"],
            "eval_every": cfg["eval_every"], "seed": seed, "verbose": False}


def row(bench: str, seed: int, method: str, s: float, result, n: int, **extra) -> dict:
    chosen = result.chosen("val_acc")
    samples = getattr(result, "gradient_samples", result.samples)
    return {"bench": bench, "seed": seed, "method": method, "sparsity": s, "last": result.history[-1]["test_acc"],
            "val-chosen": chosen["test_acc"], "val-chosen step": chosen["step"], "passes": samples / n, **extra}


def main_task(bench: str, seed: int, quick: bool, sparsities: tuple[float, ...]) -> list[dict]:
    """Dense, one-shot magnitude, every sparse method at every sparsity, CrAM once: one seed's rows."""
    torch.set_num_threads(1)
    cfg, (data, val) = settings(bench, quick), datasets(bench)
    n, opts = data.x.shape[0], train_options(cfg, seed)
    dense = mo.train(model(cfg, seed), data, validation=val, **opts)
    rows = [row(bench, seed, "dense", 0.0, dense, n)]
    for s in sparsities:
        pruned, _ = one_shot(dense.model, budget(s), names(dense.model))
        acc = accuracy(pruned, data.x_test, data.y_test)
        rows.append({"bench": bench, "seed": seed, "method": "one-shot magnitude", "sparsity": s, "last": acc,
                     "val-chosen": acc, "passes": dense.samples / n})
        for m in SPARSE:
            net = model(cfg, seed)
            res = sparse_train(net, data, budget(s), method_of(m, cfg, sparsities), names=names(net), validation=val,
                               **opts)
            rows.append(row(bench, seed, m, s, res, n))
        log(f"{bench} seed {seed} {s}: " + ", ".join(f"{r['method']} {r['val-chosen']:.1f}" for r in rows[-6:]))
    rows += cram_rows(bench, seed, cfg, data, val, sparsities)
    return rows


def cram_rows(bench: str, seed: int, cfg: dict, data, val, sparsities: tuple[float, ...]) -> list[dict]:
    """CrAM⁺-Multi trained once; at every evaluation its dense model pruned one-shot to each sparsity."""
    net, evals = model(cfg, seed), []

    def on_step(step: int, masks) -> None:
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            for s in sparsities:
                pruned, _ = one_shot(net, budget(s), names(net))
                evals.append((step, s, accuracy(pruned, *val), accuracy(pruned, data.x_test, data.y_test)))

    res = sparse_train(net, data, budget(min(sparsities)), method_of("cram", cfg, sparsities), names=names(net),
                       validation=val, on_step=on_step, **train_options(cfg, seed))
    n, rows = data.x.shape[0], []
    for s in sparsities:
        mine = [e for e in evals if e[1] == s]
        best = max(mine, key=lambda e: e[2])
        rows.append({"bench": bench, "seed": seed, "method": "cram", "sparsity": s, "last": mine[-1][3],
                     "val-chosen": best[3], "val-chosen step": best[0], "passes": res.gradient_samples / n})
    dense = max(res.history, key=lambda h: h["dense_val_acc"])
    rows.append({"bench": bench, "seed": seed, "method": "cram dense", "sparsity": 0.0,
                 "last": res.history[-1]["dense_test_acc"], "val-chosen": dense["dense_test_acc"],
                 "val-chosen step": dense["step"], "passes": res.gradient_samples / n})
    log(f"{bench} seed {seed} cram: " + ", ".join(f"{r['sparsity']} {r['val-chosen']:.1f}" for r in rows))
    return rows


def transfer_task(bench: str, seed: int, quick: bool, s: float) -> list[dict]:
    """Each method's model trained on classes 0-4 at sparsity ``s`` (dense: dense), adapted to classes 5-9."""
    torch.set_num_threads(1)
    cfg, (data, val) = settings(bench, quick), datasets(bench)
    task_a, task_b = class_subset(data, range(5)), class_subset(data, range(5, 10))
    keep = val[1] >= 5
    val_b = (val[0][keep], val[1][keep] - 5)
    opts = train_options(cfg, seed)
    rows = []
    for m in ("dense", *SPARSE, "cram"):
        net = model(cfg, seed, classes=5)
        if m == "dense":
            result, masks = mo.train(net, task_a, **opts), None
        else:
            result = sparse_train(net, task_a, budget(s), method_of(m, cfg, (s,)), names=names(net), **opts)
            masks = result.masks
        a_acc = accuracy(result.model, task_a.x_test, task_a.y_test)
        for mode in ("linear", "full"):
            ft = transfer(result.model, task_b, mode, masks=masks, validation=val_b,
                          **{**opts, "steps": cfg["finetune_steps"]})
            rows.append({"bench": bench, "seed": seed, "method": m, "sparsity": 0.0 if m == "dense" else s,
                         "mode": mode, "task A": a_acc, "last": ft.history[-1]["test_acc"],
                         "val-chosen": ft.chosen("val_acc")["test_acc"]})
        log(f"{bench} seed {seed} transfer {m}: A {a_acc:.1f}, B linear {rows[-2]['val-chosen']:.1f}, "
            f"full {rows[-1]['val-chosen']:.1f}")
    return rows


def run(args: argparse.Namespace) -> dict:
    sparsities = (0.9,) if args.quick else SPARSITIES
    seeds = (0,) if args.quick else SEEDS
    tasks = [(main_task, b, seed, args.quick, sparsities) for b in BENCHES for seed in seeds]
    tasks += [(transfer_task, b, seed, args.quick, TRANSFER_SPARSITY) for b in BENCHES for seed in seeds]
    t0, rows, transfer_rows = time.perf_counter(), [], []
    if args.jobs <= 1:
        results = [(fn, fn(*a)) for fn, *a in tasks]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = [(fn, f.result()) for fn, f in [(fn, pool.submit(fn, *a)) for fn, *a in tasks]]
    for fn, out in results:
        (rows if fn is main_task else transfer_rows).extend(out)
    return {"command": "python benchmarks/bench_sparse.py" + (" --quick" if args.quick else ""),
            "settings": {b: settings(b, args.quick) for b in BENCHES}, "sparsities": list(sparsities),
            "seeds": list(seeds), "transfer_sparsity": TRANSFER_SPARSITY, "jobs": args.jobs,
            "seconds": time.perf_counter() - t0, "rows": rows, "transfer": transfer_rows}


# ---------------------------------------------------------------- report


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _mean(rows: list[dict], bench: str, method: str, s: float, key: str = "val-chosen") -> float | None:
    values = [r[key] for r in rows if r["bench"] == bench and r["method"] == method and r["sparsity"] == s]
    return statistics.mean(values) if values else None


def _references(sparsities: list[float]) -> str:
    """IMP and the best mask-at-init method (highest mean) under the same ERK budgets from
    headline_erk.json, whose numbers are maximum test accuracies over evaluations."""
    ref = load_results("headline_erk")
    if ref is None:
        return ""
    lines = []
    for s in sparsities:
        rows = [r for r in ref["rows"] if r["bench"] == "mnist1d" and r["sparsity"] == s]
        found = {m: [r["max test acc"] for r in rows if r["method"] == m] for m in ("imp", *REFERENCE_AT_INIT)}
        at_init = {m: v for m, v in found.items() if v and m != "imp"}
        picks = (["imp"] if found["imp"] else []) + ([max(at_init, key=lambda m: statistics.mean(at_init[m]))]
                                                      if at_init else [])
        lines += [[f"{100 * s:g} %", "IMP ticket" if m == "imp" else f"best mask at init: {m}", _cell(found[m]),
                   len(found[m])] for m in picks]
    return "\n".join(["", "For reference, under the same budgets and protocol (`headline_erk.json`, tickets trained "
                      "from the masks; the maximum test accuracy over evaluations, i.e. chosen on the test set, "
                      "so not comparable to the validation-chosen column above):", "",
                      table(["sparsity", "method", "max test acc", "seeds"], lines)])


def _settings(cfg: dict) -> str:
    name, kwargs = cfg["model"]
    return (f"model `{name}`{f' {kwargs}' if kwargs else ''}, {cfg['steps']} steps of batch {cfg['batch_size']} "
            f"({'shuffled' if cfg['shuffle'] else 'in order'}), Adam lr {cfg['lr']:g}, evaluations every "
            f"{cfg['eval_every']} steps; RigL/SET update every {cfg['update_every']} steps; fine-tuning "
            f"{cfg['finetune_steps']} steps")


def _bench_section(data: dict, bench: str) -> str:
    rows = [r for r in data["rows"] if r["bench"] == bench]
    order = ["dense", "cram dense", "one-shot magnitude", *SPARSE, "cram"]
    lines = []
    for s in [0.0, *data["sparsities"]]:
        for m in order:
            sel = [r for r in rows if r["method"] == m and r["sparsity"] == s]
            if sel:
                lines.append([f"{100 * s:g} %", m, _cell([r["last"] for r in sel]),
                              _cell([r["val-chosen"] for r in sel]),
                              f"{statistics.mean(r['passes'] for r in sel):.1f}"])
    return "\n".join([f"## {bench}: test accuracy of each method's sparse model", "",
                      f"Command: `{data['command']}` ({data['seconds'] / 60:.0f} min with {data['jobs']} worker "
                      "processes of one thread)", "", f"Machine: {data['machine']}", "",
                      f"Settings: {_settings(data['settings'][bench])}; seeds {data['seeds']}; ERK budgets per tensor "
                      "over every parameter. Mean ± standard deviation over the seeds (%); `passes` = per-sample "
                      "gradients / training samples (CrAM: two per step; one-shot magnitude: the dense run's). "
                      "`cram` = the CrAM⁺-Multi model pruned one-shot to that sparsity (one run for all); "
                      "`cram dense` = its dense weights.", "",
                      table(["sparsity", "method", "last step", "val-chosen", "passes"], lines),
                      _references(data["sparsities"]) if bench == "mnist1d" else ""]).rstrip()


def _transfer_section(data: dict) -> str:
    lines = []
    for bench in BENCHES:
        for m in ("dense", *SPARSE, "cram"):
            sel = {mode: [r for r in data["transfer"] if r["bench"] == bench and r["method"] == m and r["mode"] == mode]
                   for mode in ("linear", "full")}
            if sel["linear"]:
                lines.append([bench, m, _cell([r["task A"] for r in sel["linear"]]),
                              _cell([r["val-chosen"] for r in sel["linear"]]),
                              _cell([r["val-chosen"] for r in sel["full"]])])
    s = data["transfer_sparsity"]
    return "\n".join(["## Sparse transfer from classes 0-4 to classes 5-9", "", f"Command: `{data['command']}`", "",
                      f"Each method's model trained on task A (classes 0-4) at {100 * s:g} % sparsity (dense: dense), "
                      "then adapted to task B (classes 5-9) with `mo.transfer`: `linear` = features fixed, new head; "
                      "`full` = every weight trained with the mask fixed. Test accuracies (%) of task A's model and of "
                      "task B's at the validation-chosen step, mean ± standard deviation over the seeds.", "",
                      table(["bench", "method", "task A", "task B linear", "task B full"], lines)])


def sections() -> dict[str, str]:
    data = load_results(NAME)
    if data is None:
        return {}
    blocks = {**{f"sparse_{b}": _bench_section(data, b) for b in BENCHES}, "sparse_transfer": _transfer_section(data)}
    return {name: f'<a id="{name}"></a>\n\n{body}' for name, body in blocks.items()}  # the goals table links here


def _differences(rows: list[dict], a: str, b: str, cells: list[tuple[str, float]]) -> list[float]:
    """mean(a) − mean(b) of the validation-chosen test accuracy in each cell (bench, sparsity) both have."""
    out = []
    for bench, s in cells:
        x, y = _mean(rows, bench, a, s), _mean(rows, bench, b, s)
        if x is not None and y is not None:
            out.append(x - y)
    return out


def _verdict(held: int, total: int) -> str:
    return "met" if held == total and total else ("partly met" if held else "not met")


def _signed(values: list[float]) -> str:
    return " ".join(f"{v:+.1f}" for v in values)


def goals() -> list[Goal]:
    data = load_results(NAME)
    if data is None:
        return []
    rows, benches = data["rows"], " / ".join(BENCHES)
    low = [s for s in data["sparsities"] if s <= 0.95]
    high = [s for s in data["sparsities"] if s >= 0.95]

    def per_bench(a: str, b: str, sparsities: list[float]) -> tuple[str, list[float]]:
        """'d d / d d' (mean(a) − mean(b) per sparsity, benches apart) and the differences."""
        diffs = [_differences(rows, a, b, [(bench, s) for s in sparsities]) for bench in BENCHES]
        return " / ".join(_signed(d) for d in diffs), [d for ds in diffs for d in ds]

    at = lambda sparsities: ", ".join(f"{100 * s:g}" for s in sparsities) + " %"  # noqa: E731
    acdc, d_acdc = per_bench("acdc", "gmp", low)
    rigl, d_rigl = per_bench("rigl", "gmp", low)
    static, d_static = per_bench("rigl", "static", high)
    s = min(data["sparsities"])
    below = [_mean(rows, b, "cram", s) - _mean(rows, b, "cram dense", 0.0) for b in BENCHES]
    above, d_above = per_bench("cram", "one-shot magnitude", [s])
    return [Goal(AREA, "AC/DC and RigL ≥ GMP at 90-95 %, equal compute",
                 f"AC/DC {acdc}; RigL {rigl} ({benches}; {at(low)})",
                 _verdict(sum(d >= 0 for d in d_acdc + d_rigl), len(d_acdc + d_rigl)), "sparse_mnist1d"),
            Goal(AREA, "RigL > static random ERK at 95-99 %", f"{static} ({benches}; {at(high)})",
                 _verdict(sum(d > 0 for d in d_static), len(d_static)), "sparse_mnist1d"),
            Goal(AREA, f"CrAM one-shot at {100 * s:g} %: ≤ 2 below its dense, ≥ 5 above one-shot magnitude",
                 f"{' / '.join(_signed([b]) for b in below)} vs dense; {above} vs magnitude ({benches})",
                 _verdict(sum(b >= -2.0 for b in below) + sum(a >= 5.0 for a in d_above), len(below) + len(d_above)),
                 "sparse_mnist1d")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny models, one sparsity, one seed (seconds)")
    ap.add_argument("--report", action="store_true", help="rewrite the page's blocks from the results")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    args = ap.parse_args()
    if args.report:
        write_sections(PAGE, sections())
        return 0
    if args.quick:
        use_scratch_results()
        args.jobs = 1
    log(f"machine: {machine()}")
    save_results(NAME, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
