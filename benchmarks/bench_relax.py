"""Benchmark: the relaxation hierarchy (issue 4).

1. ``quality``: relative gap (objective − optimum) / optimum to the exact solver's proven
   optimum on 20 layer-wise instances (planted, noisy: N=40, in=32, out=2, density 0.25,
   noise 0.5; seeds 0-9 with L1, 0-9 with L2), 10 held-out ones of the same kind (seeds
   100-109, L1/L2 alternating; the defaults were chosen looking at L1 seeds 0-7 only) and 10
   small networks (student 4-6-3 ReLU MLP at initialization with seeds 0-9, 3 trained
   teachers, PCA-4 of load_digits classes 0-2, 16 samples per instance, L1, global density
   0.3), for magnitude, each relaxation with its defaults, and ``hierarchy`` + ``polish``.
   Only instances proven optimal count.
2. ``overhead``: seconds per step of mask training (the whole ``solve`` loop, evaluations
   of the hard mask included) over seconds per dense training step (forward, backward,
   Adam on the weights) of the same float32 student on the same batch of 128 inputs, for an
   MLP (784-300-100-10) and a small CNN (Conv-2 style, 3×32×32); measured in the same run.
3. ``scale``: steps per second of ``hierarchy`` on a ResNet-20 student with random
   CIFAR-shaped inputs (batch 64), and peak memory (CPU: max RSS growth; CUDA: peak allocated).

    python benchmarks/bench_relax.py --parts quality overhead scale
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import maskopt as mo
from maskopt.models.resnet import ResNet20
from maskopt.report import format_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import digits_teachers, machine, replace_section, save_results  # noqa: E402

RELAX = ("sigmoid", "anneal", "ste", "hierarchy")
QUIET = {"verbose": False, "device": "cpu"}
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def quality_instances():
    out = []
    for loss in ("l1", "l2"):
        for seed in range(10):
            prob, _ = mo.data.planted_layerwise(n_samples=40, n_in=32, n_out=2, density=0.25, noise=0.5,
                                                    seed=seed, loss=loss)
            out.append((f"layerwise-{loss}-{seed}", prob))
    for i, loss in enumerate(("l1", "l2") * 5):  # held out: never looked at while choosing defaults
        prob, _ = mo.data.planted_layerwise(n_samples=40, n_in=32, n_out=2, density=0.25, noise=0.5,
                                                seed=100 + i, loss=loss)
        out.append((f"heldout-{loss}-{100 + i}", prob))
    x, teachers = digits_teachers(4, 3)
    for seed in range(10):
        torch.manual_seed(seed)
        student = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        out.append((f"network-{seed}", mo.DistillProblem(student, teachers, x[16 * seed : 16 * seed + 16],
                                                         mo.Budget(density=0.3))))
    return out


def run_quality(time_limit: float) -> dict:
    rows = []
    for name, prob in quality_instances():
        exact = mo.solve(prob, method="exact", time_limit=time_limit)
        row = {"instance": name, "exact_status": exact.status, "optimum": exact.objective, "exact_time": exact.time}
        runs = [("magnitude", "magnitude", {})] + [(m, m, QUIET) for m in RELAX] + [
            ("hierarchy+polish", "hierarchy", {**QUIET, "polish": True})]
        for label, method, opts in runs:
            res = mo.solve(prob, method=method, **opts)
            row[label] = (res.objective - exact.objective) / exact.objective
            row[f"{label} time"] = res.time
        rows.append(row)
        print(format_table([{k: v for k, v in row.items() if not k.endswith(" time")}],
                           [k for k in row if not k.endswith(" time")]), flush=True)
    return {"rows": rows}


def summarize_quality(rows: list[dict]) -> list[dict]:
    labels = ["magnitude", *RELAX, "hierarchy+polish"]
    out = []
    for family in ("layerwise", "heldout", "network", "all"):
        sel = [r for r in rows
               if r["exact_status"] == "optimal" and (family == "all" or r["instance"].startswith(family))]
        for label in labels:
            gaps = [r[label] for r in sel]
            out.append({"instances": family, "n": len(sel), "method": label,
                        "median gap %": 100 * statistics.median(gaps), "worst gap %": 100 * max(gaps),
                        "median time s": statistics.median(r[f"{label} time"] for r in sel)})
    return out


# ---------------------------------------------------------------- overhead


def conv2() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16 * 16, 256), nn.ReLU(), nn.Linear(256, 10))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))


def dense_seconds_per_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int) -> float:
    model = model.float().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        (model(x) - target).abs().sum().div(x.shape[0]).backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def run_overhead(mlp_steps: int, cnn_steps: int, repeats: int) -> dict:
    """Dense and mask runs interleaved (dense, sigmoid, anneal, ste, dense, ...) so that
    machine noise hits all alike; the ratio is the median over repeats of the paired ratios."""
    rows = []
    for name, make, shape, steps in (("MLP 784-300-100-10", mlp, (1, 28, 28), mlp_steps),
                                     ("CNN Conv-2 3x32x32", conv2, (3, 32, 32), cnn_steps)):
        torch.manual_seed(0)
        student, teacher = make(), make()
        x = torch.randn(128, *shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            target = teacher(x)
        prob = mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.9))
        times: dict[str, list[float]] = {"dense": [], **{m: [] for m in ("sigmoid", "anneal", "ste")}}
        for _ in range(repeats):
            times["dense"].append(dense_seconds_per_step(make(), x, target, steps))
            for m in ("sigmoid", "anneal", "ste"):
                times[m].append(mo.solve(prob, method=m, steps=steps, **QUIET).stats["seconds_per_step"])
        row = {"student": name, "weights": prob.allocation.size, "steps": steps,
               "dense s/step": statistics.median(times["dense"])}
        for m in ("sigmoid", "anneal", "ste"):
            row[f"{m} s/step"] = statistics.median(times[m])
            row[f"{m} / dense"] = statistics.median(t / d for t, d in zip(times[m], times["dense"]))
        rows.append(row)
        print(format_table([row], list(row)), flush=True)
    return {"rows": rows}


# ---------------------------------------------------------------- scale


def run_scale(steps: int, device: str) -> dict:
    torch.manual_seed(0)
    student, teacher = ResNet20(), ResNet20()
    x = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prob = mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.9), loss="kl", temperature=4.0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = mo.solve(prob, method="hierarchy", steps=steps, batch_size=64, verbose=False, device=device)
    elapsed = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)
    row = {"student": "ResNet-20", "weights": prob.allocation.size, "device": res.stats["device"],
           "steps": res.stats["steps"], "steps/s": res.stats["steps"] / (res.stats["seconds_per_step"] *
                                                                        res.stats["steps"]),
           "solve time s": elapsed, "peak memory MiB": peak, "objective": res.objective}
    print(format_table([row], list(row)), flush=True)
    return {"rows": [row]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["quality", "overhead", "scale"],
                    choices=["quality", "overhead", "scale"])
    ap.add_argument("--exact-time-limit", type=float, default=300.0)
    ap.add_argument("--overhead-steps", type=int, default=300, help="steps per MLP run")
    ap.add_argument("--cnn-steps", type=int, default=20, help="steps per CNN run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale-steps", type=int, default=20, help="steps per hierarchy stage")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    ap.add_argument("--suffix", default="", help="appended to the BENCHMARKS.md section and JSON names")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = " ".join(f"{k}={os.environ[k]}" for k in MALLOC_ENV if k in os.environ)
    command = f"{env + ' ' if env else ''}python benchmarks/bench_relax.py {' '.join(sys.argv[1:])}"
    header = [f"Command: `{command}`", "", f"Machine: {machine()}", ""]
    if "quality" in args.parts:
        data = run_quality(args.exact_time_limit)
        data["summary"] = summarize_quality(data["rows"])
        write("relax_quality" + args.suffix, "Relaxations vs the exact optimum", header, data,
              "Relative gap (objective − proven optimum) / optimum; each method with its defaults (300 steps, "
              "hierarchy 3 × 1000; CPU float32); `hierarchy+polish` adds the swap local search. Instances: 20 "
              "layer-wise (in 32, out 2, N 40, noisy planted, 10 L1 + 10 L2), 10 held-out layer-wise of the same "
              "kind (seeds 100-109; defaults were chosen looking at L1 seeds 0-7 only) and 10 networks (4-6-3 "
              "student, 3 digits teachers, N 16, L1). Goal: hierarchy median ≤ 1 %, worst ≤ 5 %.")
    if "overhead" in args.parts:
        data = run_overhead(args.overhead_steps, args.cnn_steps, args.repeats)
        tuned = any(k in os.environ for k in MALLOC_ENV)
        title = "Mask-training step over dense training step" + (", glibc malloc tuned" if tuned else "")
        write("relax_overhead" + args.suffix, title, header, data,
              f"{args.repeats} interleaved repeats (dense, sigmoid, anneal, ste, dense, ...) of the steps in the "
              f"table, batch 128, float32, CPU, {torch.get_num_threads()} thread(s); times are medians, ratios the "
              "median of the paired ratios. "
              "A mask step is the whole `solve` loop per step: the exact-budget multiplier, the masked forward and "
              "backward, the optimizer on the scores, the history and the periodic hard-mask evaluations. The dense "
              "step is forward, backward and `torch.optim.Adam` (defaults) on the weights. Goal ≤ 1.5×. "
              + ("glibc malloc tuned by the environment above (freed buffers are kept for reuse instead of being "
                 "returned to the OS and faulted in again; PyTorch's CPU tuning guide suggests jemalloc/tcmalloc "
                 "for the same reason)." if tuned else "Default glibc malloc: on this machine a fresh tensor of "
                 "1 MiB or more often costs about 0.4 ms of page faults, depending on the heap's history."))
    if "scale" in args.parts:
        data = run_scale(args.scale_steps, args.device)
        write("relax_scale" + args.suffix, "Scale: ResNet-20 student", header, data,
              f"`hierarchy`, {args.scale_steps} steps per stage, batch 64 of 256 random 3×32×32 inputs, KL "
              "distillation (T = 4) from one ResNet-20 teacher, global sparsity 0.9, float32"
              + (". No GPU was used: no CUDA row." if args.device == "cpu" else "."))


def write(section: str, title: str, header: list[str], data: dict, text: str) -> None:
    """JSON under benchmarks/results and the BENCHMARKS.md section with ``data["rows"]``."""
    save_results(section, data)
    rows = data.get("summary", data["rows"])
    replace_section(section, "\n".join([f"## {title} (issue 4)", "", *header, text, "",
                                        "```", format_table(rows, list(rows[0])), "```"]))


if __name__ == "__main__":
    main()
