"""Benchmark: the relaxation hierarchy (issue 4).

1. ``quality``: relative gap (objective − optimum) / optimum to the exact solver's proven
   optimum on 20 layer-wise instances (planted, noisy: N=40, in=32, out=2, density 0.25,
   noise 0.5; seeds 0-9 with L1, 0-9 with L2), 10 held-out ones of the same kind (seeds
   100-109, L1/L2 alternating; the defaults were chosen looking at L1 seeds 0-7 only) and 10
   small networks (student 4-6-3 ReLU MLP at initialization with seeds 0-9, 3 trained
   teachers, PCA-4 of load_digits classes 0-2, 16 samples per instance, L1, global density
   0.3), for magnitude, each relaxation with its defaults, and ``hierarchy`` + ``polish``.
   Only instances proven optimal count.
2. ``heldout``: the same measurement on a fresh held-out set drawn once for issue 25, with
   layer-wise shapes and seeds used nowhere else (``HELDOUT_*``): layer-wise in 24 / N 48 / 2 outputs /
   k 12 and in 48 / N 96 / 2 outputs / k 24 (noisy planted, L1 and L2), and 4-6-3 networks
   with new student seeds on digits rows no other instance uses.
3. ``overhead``: seconds per step of mask training (the whole ``solve`` loop, evaluations
   of the hard mask included) over seconds per dense training step (forward, backward,
   optimizer step on the weights) of the same float32 student on the same batch of 128
   inputs, for an MLP (784-300-100-10) and a small CNN (Conv-2 style, 3×32×32); measured in
   the same run, on ``--device`` (cpu or cuda). ``--dense-optimizer matched`` (default): the
   dense step uses the optimizer class and settings (foreach/fused, betas, momentum, ...)
   that the method's own mask step builds, read from that optimizer at run time;
   ``adam-default``: ``torch.optim.Adam`` with its defaults for every method, the reference
   of the records made before issue 25 (on CPU torch's for-loop Adam, while the mask steps
   of sigmoid/anneal use fused Adam and ste SGD).
4. ``scale``: steps per second of ``hierarchy`` on a ResNet-20 student with random
   CIFAR-shaped inputs (batch 64), and peak memory (CPU: max RSS growth; CUDA: peak allocated).

    python benchmarks/bench_relax.py --parts quality overhead scale
    nice -n 5 python benchmarks/bench_relax.py --parts heldout --exact-time-limit 600
    python benchmarks/bench_relax.py --parts overhead scale --device cuda --repeats 9 --overhead-steps 2000 \\
        --cnn-steps 200 --scale-steps 200 --suffix _cuda
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import maskopt as mo
from maskopt.models.resnet import ResNet20
from maskopt.report import format_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import digits_teachers, machine, replace_section, save_results  # noqa: E402

RELAX = ("sigmoid", "anneal", "ste", "hierarchy")
LABELS = ("magnitude", *RELAX, "hierarchy+polish")
QUIET = {"verbose": False, "device": "cpu"}
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
EXACT_GAP = 1e-4  # the exact solver's relative optimality tolerance: "optimal" means proven within it
GOAL_MEDIAN, GOAL_WORST = 0.01, 0.05  # issue 4: hierarchy median gap ≤ 1 %, worst ≤ 5 %

# The held-out set of issue 25, drawn once: no seed, layer-wise shape or digits row here was used by
# any earlier instance or for any decision (defaults, code changes). Layer-wise families:
# (name, n_in, n_samples, n_out, density, loss, seeds); k = density · n_in per output row.
HELDOUT_LAYERWISE = (
    ("in24-l1", 24, 48, 2, 0.25, "l1", range(20_000, 20_010)),
    ("in24-l2", 24, 48, 2, 0.25, "l2", range(20_100, 20_110)),
    ("in48-l1", 48, 96, 2, 0.25, "l1", range(20_200, 20_210)),
    ("in48-l2", 48, 96, 2, 0.25, "l2", range(20_300, 20_305)),  # fewer: a probe solve (other seed) took minutes
)
HELDOUT_NOISE = 0.5
# networks: 4-6-3 student at initialization with these seeds, instance i on digits rows
# HELDOUT_ROW0 + 16 i ... + 16 (the quality part uses rows 0-159)
HELDOUT_NETWORK_SEEDS = range(20_400, 20_410)
HELDOUT_ROW0 = 160


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


def heldout_instances():
    """The fresh held-out set (``HELDOUT_*``): [(name, problem)], names ``<family>-<seed>``."""
    out = []
    for family, n_in, n, n_out, density, loss, seeds in HELDOUT_LAYERWISE:
        for seed in seeds:
            prob, _ = mo.data.planted_layerwise(n_samples=n, n_in=n_in, n_out=n_out, density=density,
                                                noise=HELDOUT_NOISE, seed=seed, loss=loss)
            out.append((f"{family}-{seed}", prob))
    x, teachers = digits_teachers(4, 3)
    for i, seed in enumerate(HELDOUT_NETWORK_SEEDS):
        torch.manual_seed(seed)
        student = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        rows = slice(HELDOUT_ROW0 + 16 * i, HELDOUT_ROW0 + 16 * i + 16)
        assert rows.stop <= x.shape[0]
        out.append((f"network-{seed}", mo.DistillProblem(student, teachers, x[rows], mo.Budget(density=0.3))))
    return out


def heldout_description() -> str:
    """The held-out set in words, from ``HELDOUT_*`` (no numbers typed twice)."""
    parts = []
    for _family, n_in, n, n_out, density, loss, seeds in HELDOUT_LAYERWISE:
        k = n_out * round(density * n_in)
        parts.append(f"in {n_in} / N {n} / {n_out} outputs / k {k}, {loss.upper()}, seeds {seeds.start}-"
                     f"{seeds.stop - 1}")
    nets = HELDOUT_NETWORK_SEEDS
    return (f"layer-wise noisy planted instances (`planted_layerwise`, noise {HELDOUT_NOISE}, density 0.25, global "
            f"budget k): {'; '.join(parts)}; and {len(nets)} networks (4-6-3 ReLU student at initialization, student "
            f"seeds {nets.start}-{nets.stop - 1}, the 3 digits teachers of `quality`, L1, global density 0.3, 16 "
            f"samples each from digits rows {HELDOUT_ROW0}-{HELDOUT_ROW0 + 16 * len(nets) - 1}, which no other "
            "instance uses)")


def run_quality(instances, time_limit: float) -> dict:
    """Each instance: the exact optimum, then every method's relative gap to it. Instances the
    exact solver does not prove optimal (any status but "optimal", or an error) are recorded
    and skipped: they have no optimum to measure against."""
    rows = []
    for name, prob in instances:
        try:
            exact = mo.solve(prob, method="exact", time_limit=time_limit, gap=EXACT_GAP)
        except Exception as e:  # recorded as not proven, never silently dropped
            rows.append({"instance": name, "exact_status": f"error: {type(e).__name__}: {e}"})
            print(f"{name}: exact failed: {rows[-1]['exact_status']}", flush=True)
            continue
        row = {"instance": name, "exact_status": exact.status, "optimum": exact.objective, "exact_bound": exact.bound,
               "exact_gap": exact.gap, "exact_time": exact.time}
        if exact.status == "optimal":
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


def summarize_quality(rows: list[dict], families=("layerwise", "heldout", "network"),
                      worst_instance: bool = False) -> list[dict]:
    """Per family (instance-name prefix) and "all", per method: median and worst gap over
    the instances proven optimal."""
    out = []
    for family in (*families, "all"):
        sel = [r for r in rows
               if r["exact_status"] == "optimal" and (family == "all" or r["instance"].startswith(family))]
        if not sel:
            continue
        for label in LABELS:
            gaps = [r[label] for r in sel]
            row = {"instances": family, "n": len(sel), "method": label,
                   "median gap %": 100 * statistics.median(gaps), "worst gap %": 100 * max(gaps)}
            if worst_instance:
                row["worst instance"] = max(sel, key=lambda r: r[label])["instance"]
            row["median time s"] = statistics.median(r[f"{label} time"] for r in sel)
            out.append(row)
    return out


def not_proven(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["exact_status"] != "optimal"]


def verdict(rows: list[dict]) -> str:
    """One generated sentence: hierarchy's median and worst gap over all proven instances
    against the goal, and the other methods' for comparison."""
    sel = [r for r in rows if r["exact_status"] == "optimal"]

    def stats(label):
        gaps = [r[label] for r in sel]
        worst = max(sel, key=lambda r: r[label])
        return statistics.median(gaps), max(gaps), worst["instance"]

    med, worst, where = stats("hierarchy")
    met_med, met_worst = med <= GOAL_MEDIAN, worst <= GOAL_WORST
    state = ("met" if met_med and met_worst else "not met" if not (met_med or met_worst)
             else "median met, worst missed" if met_med else "worst met, median missed")
    others = "; ".join(f"{label} {100 * stats(label)[0]:.2f} % / {100 * stats(label)[1]:.2f} %"
                       for label in LABELS if label != "hierarchy")
    return (f"Over all {len(sel)} proven instances, `hierarchy`: median gap {100 * med:.2f} %, worst "
            f"{100 * worst:.2f} % ({where}): goal (median ≤ {100 * GOAL_MEDIAN:g} %, worst ≤ {100 * GOAL_WORST:g} %) "
            f"**{state}**. Median / worst of the others: {others}.")


def heldout_text(rows: list[dict], time_limit: float) -> str:
    """The held-out section's prose: the set, which exact optima were proven, the verdict."""
    missing = not_proven(rows)
    proven = (f"All {len(rows)} exact optima have status \"optimal\" (relative gap ≤ {EXACT_GAP:g}, limit "
              f"{time_limit:g} s)." if not missing else
              f"{len(rows) - len(missing)} of {len(rows)} exact optima have status \"optimal\" (relative gap ≤ "
              f"{EXACT_GAP:g}, limit {time_limit:g} s); not proven, so left out: "
              + ", ".join(f"{r['instance']} ({r['exact_status']})" for r in missing) + ".")
    return ("Drawn once for issue 25; the relaxation code was frozen before this run: " + heldout_description()
            + ". These layer-wise shapes, all these seeds and these digits rows were never used for any decision "
            "(no default, code change or tuning looked at them; the exact solver was timed on other seeds only "
            "to size the run); the network shape and teachers are those of `quality`. "
            "Relative gap (objective − proven optimum) / optimum; each method with its defaults (300 steps, "
            "hierarchy 3 × 1000; CPU float32); `hierarchy+polish` adds the swap local search. "
            + proven + " " + verdict(rows))


def code_version() -> str:
    """The git commit of the maskopt that was imported, and whether its library files differ
    from that commit (the held-out run must name the frozen code it measured)."""
    pkg = Path(mo.__file__).resolve().parent
    root = pkg.parent

    def git(*a):
        return subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True, check=True).stdout.rstrip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "maskopt", "solvers", "models")
    except (OSError, subprocess.CalledProcessError):
        return f"maskopt {mo.__version__} from {pkg} (not a git checkout)"
    return (f"maskopt at commit {commit}"
            + (" with uncommitted changes in " + ", ".join(line[3:] for line in dirty.splitlines()) if dirty
               else ", no uncommitted changes in maskopt/, solvers/, models/"))


# ---------------------------------------------------------------- overhead

OVERHEAD = ("sigmoid", "anneal", "ste")
DENSE_LR = 1e-3  # learning rate of the dense step; it does not change the work per step


def conv2() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16 * 16, 256), nn.ReLU(), nn.Linear(256, 10))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))


def mask_optimizer(prob, method: str, device: str) -> tuple[type, dict]:
    """The optimizer class and its settings (``optimizer.defaults``) that ``method``'s mask
    step uses, read from the optimizer itself at its first step of a one-step solve (so the
    dense reference follows whatever maskopt builds)."""
    seen = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append((type(opt), dict(opt.defaults))))
    try:
        mo.solve(prob, method=method, steps=1, verbose=False, device=device)
    finally:
        handle.remove()
    if not seen or any(s != seen[0] for s in seen):
        raise RuntimeError(f"expected one optimizer in {method}'s mask step; saw {seen}")
    return seen[0]


def dense_optimizer(mask_opt: tuple[type, dict], mode: str) -> tuple[type, dict]:
    """The dense step's optimizer: ``matched``, the mask step's class and settings
    (``mask_opt``, from :func:`mask_optimizer`) with the learning rate set to ``DENSE_LR``;
    ``adam-default``, ``torch.optim.Adam`` with its defaults."""
    if mode == "adam-default":
        return torch.optim.Adam, {"lr": DENSE_LR}
    if mode != "matched":
        raise ValueError(f"dense optimizer mode must be 'matched' or 'adam-default'; got {mode!r}")
    cls, defaults = mask_opt
    return cls, {**defaults, "lr": DENSE_LR}


def implementation(defaults: dict, device: str) -> str:
    """Which kernel a torch optimizer with these settings runs on ``device``: fused, foreach
    (one multi-tensor kernel per operation) or for-loop (one tensor at a time); foreach=None
    means torch's default, foreach on CUDA and for-loop on CPU."""
    if defaults.get("fused"):
        return "fused"
    if defaults.get("differentiable"):
        return "for-loop"
    foreach = defaults.get("foreach")
    if foreach is None:
        foreach = torch.device(device).type == "cuda"
    return "foreach" if foreach else "for-loop"


def describe_optimizer(cls: type, kwargs: dict, device: str) -> str:
    """``Adam(fused=True) fused``: the class, the settings that differ from the class's own
    defaults (learning rate aside) and the kernel it runs."""
    base = cls([torch.zeros(1, requires_grad=True)]).defaults
    diff = {k: v for k, v in kwargs.items() if k != "lr" and base.get(k) != v}
    return f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in sorted(diff.items()))}) {implementation(kwargs, device)}"


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def dense_seconds_per_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int,
                           opt_cls: type = torch.optim.Adam, opt_kwargs: dict | None = None) -> float:
    """Seconds per dense training step (forward, L1 loss to ``target``, backward, optimizer
    step on the weights) of ``model`` on the device of ``x``, after 3 warm-up steps."""
    model = model.float().to(x.device).train()
    opt = opt_cls(model.parameters(), **(opt_kwargs or {"lr": DENSE_LR}))

    def step():
        opt.zero_grad(set_to_none=True)
        (model(x) - target).abs().sum().div(x.shape[0]).backward()
        opt.step()

    for _ in range(3):
        step()
    sync(str(x.device))
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(str(x.device))
    return (time.perf_counter() - t0) / steps


def run_overhead(mlp_steps: int, cnn_steps: int, repeats: int, device: str = "cpu",
                 dense_mode: str = "matched") -> dict:
    """Each repeat times, per method, a dense run with the method's reference optimizer and
    then the method's mask run (dense, sigmoid, dense, anneal, dense, ste), so that machine
    noise hits each pair alike; a method's ratio is the median over repeats of its paired
    ratios. The mask step's seconds come from ``solve``'s own clock (the whole loop; on CUDA
    its last step reads the hard mask's value back, which waits for the GPU)."""
    rows = []
    for name, make, shape, steps in (("MLP 784-300-100-10", mlp, (1, 28, 28), mlp_steps),
                                     ("CNN Conv-2 3x32x32", conv2, (3, 32, 32), cnn_steps)):
        torch.manual_seed(0)
        student, teacher = make(), make()
        x = torch.randn(128, *shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            target = teacher(x)
        prob = mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.9))
        masks = {m: mask_optimizer(prob, m, device) for m in OVERHEAD}
        dense = {m: dense_optimizer(masks[m], dense_mode) for m in OVERHEAD}
        xd, td = x.to(device), target.to(device)
        times = {m: {"dense": [], "mask": []} for m in OVERHEAD}
        for _ in range(repeats):
            for m in OVERHEAD:
                times[m]["dense"].append(dense_seconds_per_step(make(), xd, td, steps, *dense[m]))
                times[m]["mask"].append(mo.solve(prob, method=m, steps=steps, verbose=False,
                                                 device=device).stats["seconds_per_step"])
        for m in OVERHEAD:
            row = {"student": name, "weights": prob.allocation.size, "steps": steps, "method": m,
                   "dense optimizer": describe_optimizer(*dense[m], device),
                   "mask optimizer": describe_optimizer(*masks[m], device),
                   "dense s/step": statistics.median(times[m]["dense"]),
                   "mask s/step": statistics.median(times[m]["mask"]),
                   "mask / dense": statistics.median(t / d for t, d in zip(times[m]["mask"], times[m]["dense"]))}
            rows.append(row)
            print(format_table([row], list(row)), flush=True)
    return {"rows": rows, "device": device, "dense_optimizer": dense_mode}


def overhead_text(data: dict, repeats: int, tuned: bool) -> str:
    """The overhead section's prose, from the run's own rows and settings."""
    device = data["device"]
    cuda = torch.device(device).type == "cuda"
    where = (f"CUDA ({torch.cuda.get_device_name(device)}, torch CUDA {torch.version.cuda})" if cuda
             else f"CPU, {torch.get_num_threads()} thread(s)")
    pairs = list(dict.fromkeys((r["method"], r["dense optimizer"], r["mask optimizer"]) for r in data["rows"]))
    if data["dense_optimizer"] == "matched":
        opt = ("Like with like: each method's dense step uses the optimizer class and settings that its own mask step "
               "builds, read from that optimizer at run time (only the learning rate differs, "
               f"{DENSE_LR:g} on the weights; it does not change the work per step): "
               + "; ".join(f"{m}: `{d}` on both sides" for m, d, _ in pairs) + ".")
    else:
        opt = ("The dense step uses `torch.optim.Adam` with its defaults for every method (`--dense-optimizer "
               "adam-default`, the reference of the records made before issue 25), not the mask step's optimizer: "
               + "; ".join(f"{m}: dense `{d}`, mask `{k}`" for m, d, k in pairs)
               + ". So these ratios compare different optimizer implementations; `matched` (the default) does not.")
    text = (f"{repeats} interleaved repeats of the pairs (dense, sigmoid, dense, anneal, dense, ste) of the steps in "
            f"the table, batch 128, float32, {where}; times are medians, ratios the median of the paired ratios. "
            "A mask step is the whole `solve` loop per step: the exact-budget multiplier, the masked forward and "
            "backward, the optimizer on the scores, the history and the periodic hard-mask evaluations. The dense "
            f"step is forward, L1 loss, backward and the optimizer on the weights. {opt} Goal ≤ 1.5×.")
    if not cuda:
        text += (" glibc malloc tuned by the environment above (freed buffers are kept for reuse instead of being "
                 "returned to the OS and faulted in again; PyTorch's CPU tuning guide suggests jemalloc/tcmalloc "
                 "for the same reason)." if tuned else " Default glibc malloc: on this machine a fresh tensor of "
                 "1 MiB or more often costs about 0.4 ms of page faults, depending on the heap's history.")
    return text


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
                    choices=["quality", "heldout", "overhead", "scale"])
    ap.add_argument("--exact-time-limit", type=float, default=300.0)
    ap.add_argument("--overhead-steps", type=int, default=300, help="steps per MLP run")
    ap.add_argument("--cnn-steps", type=int, default=20, help="steps per CNN run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dense-optimizer", choices=["matched", "adam-default"], default="matched",
                    help="overhead: the dense step's optimizer; matched = the class and settings of each method's "
                         "own mask step (default); adam-default = torch.optim.Adam defaults, as the records before "
                         "issue 25")
    ap.add_argument("--scale-steps", type=int, default=20, help="steps per hierarchy stage")
    ap.add_argument("--device", default="cpu", help="overhead and scale: cpu or cuda (quality parts run on CPU)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    ap.add_argument("--suffix", default="", help="appended to the BENCHMARKS.md section and JSON names")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = " ".join(f"{k}={os.environ[k]}" for k in MALLOC_ENV if k in os.environ)
    command = f"{env + ' ' if env else ''}python benchmarks/bench_relax.py {' '.join(sys.argv[1:])}"
    header = [f"Command: `{command}`", "", f"Machine: {machine()}", ""]
    if "quality" in args.parts:
        data = run_quality(quality_instances(), args.exact_time_limit)
        data["summary"] = summarize_quality(data["rows"])
        write("relax_quality" + args.suffix, "Relaxations vs the exact optimum", header, data,
              "Relative gap (objective − proven optimum) / optimum; each method with its defaults (300 steps, "
              "hierarchy 3 × 1000; CPU float32); `hierarchy+polish` adds the swap local search. Instances: 20 "
              "layer-wise (in 32, out 2, N 40, noisy planted, 10 L1 + 10 L2), 10 held-out layer-wise of the same "
              "kind (seeds 100-109; defaults were chosen looking at L1 seeds 0-7 only) and 10 networks (4-6-3 "
              "student, 3 digits teachers, N 16, L1). Goal: hierarchy median ≤ 1 %, worst ≤ 5 %.")
    if "heldout" in args.parts:
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        code = code_version()
        data = run_quality(heldout_instances(), args.exact_time_limit)
        data["summary"] = summarize_quality(data["rows"], [f[0] for f in HELDOUT_LAYERWISE] + ["network"],
                                            worst_instance=True)
        data["code"], data["wall_s"] = code, time.perf_counter() - t0
        write("relax_heldout" + args.suffix, "Relaxations vs the exact optimum on a fresh held-out set",
              [*header, f"Code: {code}. Wall time {data['wall_s'] / 60:.0f} min; load average (1 min) "
                        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (times in the table "
                        "depend on it)", ""], data,
              heldout_text(data["rows"], args.exact_time_limit))
    if "overhead" in args.parts:
        data = run_overhead(args.overhead_steps, args.cnn_steps, args.repeats, args.device, args.dense_optimizer)
        tuned = any(k in os.environ for k in MALLOC_ENV)
        title = ("Mask-training step over dense training step" + (", CUDA" if args.device.startswith("cuda") else "")
                 + (", glibc malloc tuned" if tuned else ""))
        write("relax_overhead" + args.suffix, title, header, data, overhead_text(data, args.repeats, tuned))
    if "scale" in args.parts:
        data = run_scale(args.scale_steps, args.device)
        write("relax_scale" + args.suffix, "Scale: ResNet-20 student", header, data,
              f"`hierarchy`, {args.scale_steps} steps per stage, batch 64 of 256 random 3×32×32 inputs, KL "
              "distillation (T = 4) from one ResNet-20 teacher, global sparsity 0.9, float32"
              + (". No GPU was used: no CUDA row." if args.device == "cpu" else
                 f", on {torch.cuda.get_device_name(args.device)} (torch CUDA {torch.version.cuda})."
                 if args.device.startswith("cuda") else "."))


def write(section: str, title: str, header: list[str], data: dict, text: str) -> None:
    """JSON under benchmarks/results and the BENCHMARKS.md section with ``data["rows"]``."""
    save_results(section, data)
    rows = data.get("summary", data["rows"])
    replace_section(section, "\n".join([f"## {title} (issue 4)", "", *header, text, "",
                                        "```", format_table(rows, list(rows[0])), "```"]))


if __name__ == "__main__":
    main()
