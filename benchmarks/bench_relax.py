"""Benchmark: the relaxation hierarchy against the exact optimum, its cost per step and its
scale. Results go to ``results_dir()/relax_<part><suffix>.json``; ``--report`` rewrites the
blocks of ``docs/benchmarks/relaxations.md`` (built by ``relax_report.py``).

1. ``quality``: relative gap (objective − optimum) / optimum to the exact solver's proven
   optimum on 20 layer-wise instances (planted, noisy: N=40, in=32, out=2, density 0.25,
   noise 0.5; seeds 0-9 with L1, 0-9 with L2), 10 held-out ones of the same kind (seeds
   100-109, L1/L2 alternating; the defaults were chosen looking at L1 seeds 0-7 only) and 10
   small networks (student 4-6-3 ReLU MLP at initialization with seeds 0-9, 3 trained
   teachers, PCA-4 of load_digits classes 0-2, 16 samples per instance, L1, global density
   0.3), for magnitude, each relaxation with its defaults, and ``hierarchy`` + ``polish``.
   Only instances proven optimal count.
2. ``heldout``: the same measurement on a fresh held-out set (``HELDOUT``, recorded in the
   JSON): layer-wise shapes, seeds and digits rows used nowhere else.
3. ``overhead``: seconds per step of mask training (the whole ``solve`` loop, evaluations
   of the hard mask included) over seconds per dense training step (forward, backward,
   optimizer step on the weights) of the same float32 student on the same batch of 128
   inputs, for an MLP (784-300-100-10) and a small CNN (Conv-2 style, 3×32×32); measured in
   the same run, on ``--device`` (cpu or cuda). ``--dense-optimizer matched`` (default): the
   dense step uses the optimizer class and settings (foreach/fused, betas, momentum, ...)
   that the method's own mask step builds, read from that optimizer at run time;
   ``adam-default``: ``torch.optim.Adam`` with its defaults for every method.
4. ``scale``: steps per second of ``hierarchy`` on a ResNet-20 student with random
   CIFAR-shaped inputs (batch 64), and peak memory (CPU: max RSS growth; CUDA: peak allocated).

    python benchmarks/bench_relax.py --parts quality overhead scale
    nice -n 5 python benchmarks/bench_relax.py --parts heldout --exact-time-limit 600
    python benchmarks/bench_relax.py --parts overhead scale --device cuda --repeats 9 --overhead-steps 2000 \\
        --cnn-steps 200 --scale-steps 200 --suffix _cuda
    python benchmarks/bench_relax.py --report     # rewrite the page's blocks from the JSON
    python benchmarks/bench_relax.py --quick      # every part on a tiny setting, in seconds
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shlex
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
from _common import digits_teachers, save_results, use_scratch_results, write_sections  # noqa: E402
from relax_report import (  # noqa: E402,F401  (re-exported: the page's contract and the tests' helpers)
    EXACT_GAP,
    LABELS,
    OVERHEAD,
    PAGE,
    RELAX,
    goals,
    heldout_setup,
    heldout_text,
    not_proven,
    sections,
    summarize_quality,
    verdict,
)

QUIET = {"verbose": False, "device": "cpu"}
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

# The held-out set, drawn once: no seed, layer-wise shape or digits row here was used by any
# earlier instance or for any decision (defaults, code changes). Layer-wise families:
# [name, n_in, n_samples, n_out, density, loss, [first seed, last seed + 1]]; k = density · n_in
# per output row. Networks: 4-6-3 student at initialization with these seeds, instance i on
# digits rows network_row0 + 16 i ... + 16 (the quality part uses rows 0-159).
HELDOUT = {
    "noise": 0.5,
    "layerwise": [["in24-l1", 24, 48, 2, 0.25, "l1", [20_000, 20_010]],
                  ["in24-l2", 24, 48, 2, 0.25, "l2", [20_100, 20_110]],
                  ["in48-l1", 48, 96, 2, 0.25, "l1", [20_200, 20_210]],
                  ["in48-l2", 48, 96, 2, 0.25, "l2", [20_300, 20_305]]],  # fewer: a probe solve took minutes
    "network_seeds": [20_400, 20_410], "network_row0": 160, "network_samples": 16,
}
# --quick: a tiny held-out-like set, a few relaxation steps, tiny overhead and scale runs
QUICK_HELDOUT = {"noise": 0.5, "layerwise": [["in8-l1", 8, 12, 2, 0.25, "l1", [0, 1]]],
                 "network_seeds": [0, 1], "network_row0": 0, "network_samples": 6}
QUICK_STEPS = 10


def quality_instances(quick: bool = False) -> list[tuple[str, object]]:
    """The development set: [(name, problem)]; ``quick``: one tiny layer-wise instance and one
    tiny network."""
    if quick:
        prob, _ = mo.data.planted_layerwise(n_samples=12, n_in=8, n_out=2, density=0.25, noise=0.5, seed=0)
        return [("layerwise-l1-0", prob), *[(f"network-{s}", p) for s, p in networks(range(1), 0, 6)]]
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
    return out + [(f"network-{s}", p) for s, p in networks(range(10), 0, 16)]


@functools.cache
def _digits_teachers() -> tuple[torch.Tensor, list[nn.Module]]:
    """The 3 digits teachers of every network instance (trained once per process)."""
    return digits_teachers(4, 3)


def networks(seeds, row0: int, size: int) -> list[tuple[int, mo.DistillProblem]]:
    """4-6-3 ReLU students at initialization (one per seed) distilled from the 3 digits
    teachers, instance i on digits rows row0 + size·i ... + size, L1, global density 0.3."""
    x, teachers = _digits_teachers()
    out = []
    for i, seed in enumerate(seeds):
        torch.manual_seed(seed)
        student = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        rows = slice(row0 + size * i, row0 + size * i + size)
        assert rows.stop <= x.shape[0]
        out.append((seed, mo.DistillProblem(student, teachers, x[rows], mo.Budget(density=0.3))))
    return out


def heldout_instances(spec: dict = HELDOUT) -> list[tuple[str, object]]:
    """The held-out set of ``spec``: [(name, problem)], names ``<family>-<seed>``."""
    out = []
    for family, n_in, n, n_out, density, loss, (first, stop) in spec["layerwise"]:
        for seed in range(first, stop):
            prob, _ = mo.data.planted_layerwise(n_samples=n, n_in=n_in, n_out=n_out, density=density,
                                                noise=spec["noise"], seed=seed, loss=loss)
            out.append((f"{family}-{seed}", prob))
    seeds = range(*spec["network_seeds"])
    return out + [(f"network-{s}", p) for s, p in networks(seeds, spec["network_row0"], spec["network_samples"])]


def run_quality(instances, time_limit: float, relax_options: dict | None = None) -> dict:
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
            opts = {**QUIET, **(relax_options or {})}
            runs = [("magnitude", "magnitude", {})] + [(m, m, opts) for m in RELAX] + [
                ("hierarchy+polish", "hierarchy", {**opts, "polish": True})]
            for label, method, opts in runs:
                res = mo.solve(prob, method=method, **opts)
                row[label] = (res.objective - exact.objective) / exact.objective
                row[f"{label} time"] = res.time
        rows.append(row)
        print(format_table([{k: v for k, v in row.items() if not k.endswith(" time")}],
                           [k for k in row if not k.endswith(" time")]), flush=True)
    return {"rows": rows}


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


STUDENTS = (("MLP 784-300-100-10", mlp, (1, 28, 28)), ("CNN Conv-2 3x32x32", conv2, (3, 32, 32)))


def overhead_rows(name: str, make, shape: tuple, steps: int, repeats: int, device: str,
                  dense_mode: str) -> list[dict]:
    """One student's rows: per method, the median dense and mask seconds per step and the
    median of the paired ratios over ``repeats`` interleaved repeats."""
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
    rows = []
    for m in OVERHEAD:
        row = {"student": name, "weights": prob.allocation.size, "steps": steps, "method": m,
               "dense optimizer": describe_optimizer(*dense[m], device),
               "mask optimizer": describe_optimizer(*masks[m], device),
               "dense s/step": statistics.median(times[m]["dense"]),
               "mask s/step": statistics.median(times[m]["mask"]),
               "mask / dense": statistics.median(t / d for t, d in zip(times[m]["mask"], times[m]["dense"]))}
        rows.append(row)
        print(format_table([row], list(row)), flush=True)
    return rows


def run_overhead(steps: dict[str, int], repeats: int, device: str = "cpu", dense_mode: str = "matched") -> dict:
    """Each repeat times, per method, a dense run with the method's reference optimizer and
    then the method's mask run (dense, sigmoid, dense, anneal, dense, ste), so that machine
    noise hits each pair alike; a method's ratio is the median over repeats of its paired
    ratios. The mask step's seconds come from ``solve``'s own clock (the whole loop; on CUDA
    its last step reads the hard mask's value back, which waits for the GPU). ``steps``:
    student name -> steps per run (students of ``STUDENTS`` not in it are skipped)."""
    rows = []
    for name, make, shape in STUDENTS:
        if name in steps:
            rows += overhead_rows(name, make, shape, steps[name], repeats, device, dense_mode)
    return {"rows": rows, "device": device, "dense_optimizer": dense_mode}


# ---------------------------------------------------------------- scale


def run_scale(steps: int, device: str, inputs: int = 256, batch_size: int = 64) -> dict:
    torch.manual_seed(0)
    student, teacher = ResNet20(), ResNet20()
    x = torch.randn(inputs, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prob = mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.9), loss="kl", temperature=4.0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = mo.solve(prob, method="hierarchy", steps=steps, batch_size=batch_size, verbose=False, device=device)
    elapsed = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)
    row = {"student": "ResNet-20", "weights": prob.allocation.size, "device": res.stats["device"],
           "steps": res.stats["steps"], "steps/s": 1.0 / res.stats["seconds_per_step"],
           "solve time s": elapsed, "peak memory MiB": peak, "objective": res.objective}
    print(format_table([row], list(row)), flush=True)
    return {"rows": [row]}


# ---------------------------------------------------------------- command line


def run_info(args: argparse.Namespace) -> dict:
    """What every record carries besides its rows: the command, the settings, the CPU
    threads, the malloc environment and, on CUDA, the device's name."""
    env = {k: os.environ[k] for k in MALLOC_ENV if k in os.environ}
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    info = {"command": " ".join([*(f"{k}={v}" for k, v in env.items()), "python benchmarks/bench_relax.py", argv]),
            "settings": {k: getattr(args, k) for k in ("exact_time_limit", "repeats", "overhead_steps", "cnn_steps",
                                                       "scale_steps", "device", "dense_optimizer", "quick")},
            "threads": torch.get_num_threads(), "malloc": env}
    if args.device.startswith("cuda"):
        info["device_name"] = f"{torch.cuda.get_device_name(args.device)}, torch CUDA {torch.version.cuda}"
    return info


def run_parts(args: argparse.Namespace) -> None:
    """Run the parts of ``args.parts`` and write each one's JSON (``relax_<part><suffix>``)."""
    info, quick = run_info(args), args.quick
    relax = {"steps": QUICK_STEPS} if quick else None
    if "quality" in args.parts:
        data = run_quality(quality_instances(quick), args.exact_time_limit, relax)
        save_results("relax_quality" + args.suffix, {**info, **data, "summary": summarize_quality(data["rows"])})
    if "heldout" in args.parts:
        spec = QUICK_HELDOUT if quick else HELDOUT
        t0, load0, code = time.perf_counter(), os.getloadavg()[0], code_version()
        data = run_quality(heldout_instances(spec), args.exact_time_limit, relax)
        families = [f[0] for f in spec["layerwise"]] + ["network"]
        save_results("relax_heldout" + args.suffix, {
            **info, **data, "summary": summarize_quality(data["rows"], families, worst_instance=True),
            "instances": spec, "code": code, "wall_s": time.perf_counter() - t0,
            "load_average_start": load0, "load_average_end": os.getloadavg()[0]})
    if "overhead" in args.parts:
        steps = {STUDENTS[0][0]: args.overhead_steps}
        if not quick:  # the CNN's dense step alone takes a fifth of a second on 2 CPU cores
            steps[STUDENTS[1][0]] = args.cnn_steps
        save_results("relax_overhead" + args.suffix,
                     {**info, **run_overhead(steps, args.repeats, args.device, args.dense_optimizer)})
    if "scale" in args.parts:
        sizes = {"inputs": 16, "batch_size": 8} if quick else {"inputs": 256, "batch_size": 64}
        data = run_scale(args.scale_steps, args.device, **sizes)
        save_results("relax_scale" + args.suffix, {**info, **data, "settings": {**info["settings"], **sizes}})


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
                         "own mask step (default); adam-default = torch.optim.Adam defaults")
    ap.add_argument("--scale-steps", type=int, default=20, help="steps per hierarchy stage")
    ap.add_argument("--device", default="cpu", help="overhead and scale: cpu or cuda (quality parts run on CPU)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    ap.add_argument("--suffix", default="", help="appended to the JSON names (relax_<part><suffix>.json)")
    ap.add_argument("--report", action="store_true", help="only rewrite the page's blocks from the JSON")
    ap.add_argument("--quick", action="store_true",
                    help="every part on a tiny setting in seconds (results to $MASKOPT_BENCH_RESULTS or a temp dir)")
    args = ap.parse_args()
    if args.report:
        write_sections(PAGE, sections())
        return
    if args.quick:
        use_scratch_results()
        args.parts = ["quality", "heldout", "overhead", "scale"]
        args.exact_time_limit, args.repeats, args.overhead_steps, args.scale_steps = 30.0, 1, 2, 1
        args.threads = args.threads or 1  # tiny tensors: more threads only contend on a shared machine
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_parts(args)


if __name__ == "__main__":
    main()
