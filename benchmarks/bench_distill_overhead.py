"""Benchmark: the mask step over the dense step in a distillation setting, with the
relaxations' default keep-best checks and with the alternatives.

Setting: KL distillation (T = 1) of a student from one teacher of the same architecture
(both at their seeded initialization), 4096 inputs (random, CIFAR-shaped 3×32×32 for the
CNNs, MNIST-shaped 1×28×28 for the LeNet-300-100 MLP), batches of 256 drawn from a seeded
permutation per pass, 90 % global sparsity, float32. The dense step is one training step of
the student's weights on a batch (forward, the same KL loss, backward, fused Adam: the mask
step's optimizer) after 3 warm-up steps; the mask step is ``solve``'s own seconds per step
(the whole loop: scores, budget multiplier, checks of the hard mask). Variants of the mask
step:

- ``default``: the default checks (every ``max(10, steps // 20)`` steps on a seeded screening
  subset of 1024 inputs, unchanged masks skipped, 3 finalists re-scored on all inputs per stage);
- ``full checks``: ``eval_samples=None`` (every check on all 4096 inputs);
- ``compile``: the default checks with ``compile=True`` (or ``--compile-mode``); its seconds
  per step include the compilation.

Each repeat times dense and mask runs in turn (dense, variant, dense, variant, ...); a ratio
is the median over repeats of the paired ratios.

    python benchmarks/bench_distill_overhead.py --device cpu --models lenet300 --steps 200 --repeats 3
    python benchmarks/bench_distill_overhead.py --device cuda --models resnet20 conv6 vgg16 --steps 300 --suffix _cuda
    python benchmarks/bench_distill_overhead.py --report
    python benchmarks/bench_distill_overhead.py --quick
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import maskopt as mo
from maskopt.device import resolve_device
from maskopt.report import format_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, machine, save_results, table, use_scratch_results, write_sections  # noqa: E402

PAGE = "relaxations"
AREA = "Relaxations"
NAME = "distill_overhead"
RECORDS = {"distill_overhead_cpu": "CPU", "distill_overhead_cpu_resnet20": "CPU", "distill_overhead_cuda": "CUDA"}
GOALS = {"CPU": 1.5, "CUDA": 1.3}
SHAPES = {"lenet300": (1, 28, 28), "resnet20": (3, 32, 32), "conv6": (3, 32, 32), "vgg16": (3, 32, 32)}
LABELS = {"lenet300": "LeNet-300-100 MLP", "resnet20": "ResNet-20", "conv6": "Conv-6", "vgg16": "VGG-16"}
VARIANTS = {"default": {}, "full checks": {"eval_samples": None}, "compile": {"compile": True}}
METHODS = ("sigmoid", "anneal", "ste")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setting(model: str, inputs: int, seed: int = 0) -> mo.DistillProblem:
    """The distillation problem of ``model`` (module docstring)."""
    torch.manual_seed(seed)
    student, teacher = mo.models.create(model), mo.models.create(model)
    x = torch.randn(inputs, *SHAPES[model], generator=torch.Generator().manual_seed(seed))
    return mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.9), loss="kl")


def dense_seconds_per_step(prob: mo.DistillProblem, model: str, batch: int, steps: int, device: torch.device) -> float:
    """Seconds per dense step of a float32 student (module docstring), after 3 warm-up steps."""
    torch.manual_seed(1)
    net = mo.models.create(model).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    obj = prob.batch_objective(device, torch.float32)
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from torch.randperm(obj.n, generator=gen).to(device).split(batch)

    it = batches()

    def step():
        x, targets = obj.at(next(it))
        opt.zero_grad(set_to_none=True)
        obj.batch_value(net(x), targets).backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def model_rows(model: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    prob = setting(model, args.inputs)
    variants = {v: dict(VARIANTS[v]) for v in args.variants if v != "compile" or model in args.compile_models}
    if "compile" in variants and args.compile_mode:
        variants["compile"] = {"compile": args.compile_mode}
    times = {(m, v): ([], []) for m in args.methods for v in variants}
    for _ in range(args.repeats):
        for (m, v), (dense, mask) in times.items():
            dense.append(dense_seconds_per_step(prob, model, args.batch_size, args.dense_steps, device))
            res = mo.solve(prob, method=m, steps=args.steps, batch_size=args.batch_size, device=str(device),
                           verbose=False, **variants[v])
            mask.append(res.stats["seconds_per_step"])
    rows = []
    for (m, v), (dense, mask) in times.items():
        row = {"student": LABELS[model], "weights": prob.allocation.size, "method": m, "checks": v,
               "steps": args.steps, "dense ms/step": 1e3 * statistics.median(dense),
               "mask ms/step": 1e3 * statistics.median(mask),
               "mask / dense": statistics.median(t / d for t, d in zip(mask, dense))}
        rows.append(row)
        print(format_table([row], list(row)), flush=True)
    return rows


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    info = {"command": "python benchmarks/bench_distill_overhead.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "machine": machine(), "threads": torch.get_num_threads(), "device": str(device),
            "settings": {k: getattr(args, k) for k in ("models", "methods", "variants", "steps", "dense_steps",
                                                       "batch_size", "inputs", "repeats", "compile_mode",
                                                       "compile_models")}}
    if device.type == "cuda":
        info["device_name"] = f"{torch.cuda.get_device_name(device)}, torch CUDA {torch.version.cuda}"
    return {**info, "rows": [r for model in args.models for r in model_rows(model, args, device)]}


# ---------------------------------------------------------------- report


def section(name: str) -> str | None:
    d = load_results(name)
    if d is None:
        return None
    where = d.get("device_name") or f"CPU, {d['threads']} threads"
    rows = [[r["student"], r["weights"], r["method"], r["checks"], r["steps"], f"{r['dense ms/step']:.3g}",
             f"{r['mask ms/step']:.3g}", f"{r['mask / dense']:.2f}"] for r in d["rows"]]
    s = d["settings"]
    return "\n".join([
        f"Command: `{d['command']}`", "", f"Machine: {d['machine']}", "", f"Device: {where}; {s['repeats']} repeats, "
        f"{s['inputs']} inputs, batch {s['batch_size']}, {s['dense_steps']} timed dense steps per repeat.", "",
        table(["student", "maskable weights", "method", "checks", "steps", "dense ms/step", "mask ms/step",
               "mask / dense"], rows)])


def sections() -> dict[str, str]:
    """Block name -> markdown, for every record present."""
    return {name: f'<a id="{name}"></a>\n\n{body}' for name in RECORDS if (body := section(name)) is not None}


def goals() -> list[Goal]:
    out = []
    for name, where in RECORDS.items():
        d = load_results(name)
        if d is None:
            continue
        limit = GOALS[where]
        cells = [r for r in d["rows"] if r["checks"] == "default"]
        worst = max(cells, key=lambda r: r["mask / dense"])
        ok = sum(r["mask / dense"] <= limit for r in cells)
        verdict = "met" if ok == len(cells) else "not met" if ok == 0 else "partly met"
        measured = (f"{ok}/{len(cells)} cells; worst {worst['mask / dense']:.2f}× ({worst['student']}, "
                    f"{worst['method']})")
        s = d["settings"]
        out.append(Goal(AREA, f"default mask step ≤ {limit:g}× a dense step, KL distillation, batch {s['batch_size']} "
                              f"of {s['inputs']}, {where}", measured, verdict, name))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", nargs="+", default=["lenet300"], choices=list(SHAPES))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--variants", nargs="+", default=["default", "full checks"], choices=list(VARIANTS))
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode of the compile variant (default: True)")
    ap.add_argument("--compile-models", nargs="+", default=list(SHAPES), choices=list(SHAPES),
                    help="the models the compile variant runs on (default: all)")
    ap.add_argument("--steps", type=int, default=300, help="mask steps per run (one stage)")
    ap.add_argument("--dense-steps", type=int, default=50, help="timed dense steps per repeat")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--inputs", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--suffix", default=None, help="record name suffix (default: _cpu or _cuda)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a tiny run in seconds (scratch results)")
    args = ap.parse_args()
    if args.report:
        write_sections(PAGE, sections())
        return
    if args.quick:
        use_scratch_results()
        args.inputs, args.batch_size, args.steps, args.dense_steps, args.repeats = 64, 16, 4, 2, 1
        args.variants = ["default", "full checks"]
    if args.threads:
        torch.set_num_threads(args.threads)
    suffix = args.suffix if args.suffix is not None else "_" + resolve_device(args.device).type
    save_results(NAME + suffix, run(args))


if __name__ == "__main__":
    main()
