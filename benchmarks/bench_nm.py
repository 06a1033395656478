"""Benchmark: N:M (2:4) masks beside unstructured 50 % masks — quality, file size, GPU speed.

Parts (``--parts``; each writes ``results_dir()/nm_<part>.json``):

1. ``quality``: the relaxation benchmark's layer-wise instances (``bench_relax.quality_instances``:
   planted, noisy, N = 40, in = 32, out = 2; seeds 0-9 with L1 and with L2), each under
   ``Budget(nm=(2, 4))`` and under ``Budget(density=0.5, scope="row")`` (the same density, no
   group structure; every 2:4 mask is within it, so its optimum is never worse). The exact
   solver's proven optimum (time limit ``--exact-time-limit``, relative gap 1e-4) is the
   yardstick; hierarchy (its defaults), magnitude, Wanda, SNIP and random (seed 0) are
   measured by their relative gap (objective − optimum) / optimum. An instance whose exact
   solve is not proven optimal (or fails) is recorded with its status and left out.
2. ``tickets``: the MNIST-1D ticket protocol (``tickets_protocol``: the 40-500-500-10 MLP at
   initialization ``trial``, Adam lr 2e-2, batch 100 in order, 1501 steps, evaluated every 100
   steps) with a validation split (the protocol's fresh MNIST-1D draw): the three weight
   matrices masked (biases dense) under 2:4 and under 50 % per layer (``scope="layer"``), by
   hierarchy (the KD-LTS base settings of ``experiments/headline.toml``: 3 CNN teachers,
   temperature 1, 500 steps; not tuned for these budgets), magnitude, SNIP (cross-entropy on
   the labels) and random; plus the dense network. Each ticket reports its test accuracy at
   the evaluation its validation accuracy chooses, at the last evaluation and the maximum.
   Trials run in parallel worker processes of one thread each.
3. ``size``: bytes on disk of ``mo.export(model, masks, "compressed").save(path)`` against the
   dense ``state_dict`` saved with safetensors, for the MNIST-1D MLP (weights masked, float32)
   and one ``nn.Linear(4096, 4096)`` (float32 and bfloat16), at 2:4 and at 90 / 95 / 99 %
   unstructured (per layer; magnitude masks); each file is read back and compared bit for bit.
4. ``speed`` (CUDA with compute capability ≥ 8.0 only; refused elsewhere): forward time of a
   2:4-masked ``nn.Linear`` (with bias) as ``mo.export(..., "semi_structured")`` against the same
   masked layer dense, float16 and bfloat16, shapes (out, in, tokens): LLaMA-7B's (4096, 4096,
   2048), (11008, 4096, 2048), (4096, 11008, 2048) — the "large" shapes the goal judges — and
   ViT-L's MLP (4096, 1024, 6304), (1024, 4096, 6304) (32 images × 197 tokens, torchao's shapes);
   plus the end-to-end forward of a masked 4096-11008-4096 MLP (GELU) on 2048 tokens. Times are
   CUDA-event medians over repeats after warm-up, dense and sparse interleaved in one run;
   ``speedup`` = dense ms / sparse ms.

    python benchmarks/bench_nm.py                          # quality, tickets, size (CPU)
    python benchmarks/bench_nm.py --parts speed            # on a CUDA GPU (benchmarks/gpu_check.sh runs it)
    python benchmarks/bench_nm.py --report                 # rewrite docs/benchmarks/nm.md's blocks
    python benchmarks/bench_nm.py --quick                  # every part on a tiny setting, seconds
"""

from __future__ import annotations

import argparse
import copy
import itertools
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

import maskopt as mo
from maskopt.export import semi_structured_support

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, machine, save_results, table, use_scratch_results, write_sections  # noqa: E402
from bench_relax import quality_instances as relax_instances  # noqa: E402
from headline_config import load_headline  # noqa: E402
from headline_tasks import train_ensemble  # noqa: E402
from relax_report import EXACT_GAP  # noqa: E402
from tickets_protocol import selection, student, ticket, validation_data  # noqa: E402

PAGE = "nm"
AREA = "N:M"
PARTS = ("quality", "tickets", "size", "speed")
TWO_FOUR = mo.Budget(nm=(2, 4))
QUALITY_BUDGETS = {"2:4": TWO_FOUR, "50 % row": mo.Budget(density=0.5, scope="row")}
TICKET_BUDGETS = {"2:4": TWO_FOUR, "50 % layer": mo.Budget(density=0.5, scope="layer")}
QUALITY_METHODS = ("hierarchy", "magnitude", "wanda", "snip", "random")
TICKET_METHODS = ("hierarchy", "magnitude", "snip", "random")
SIZE_SPARSITIES = (0.9, 0.95, 0.99)
GOAL_SIZE = {"2:4": 0.6, "90 %": 0.2}
GOAL_SPEEDUP = 1.2
SPEED_SHAPES = (("LLaMA-7B q/k/v/o", 4096, 4096, 2048), ("LLaMA-7B MLP up", 11008, 4096, 2048),
                ("LLaMA-7B MLP down", 4096, 11008, 2048), ("ViT-L MLP fc1", 4096, 1024, 6304),
                ("ViT-L MLP fc2", 1024, 4096, 6304))
LARGE = {label for label, out, d, tokens in SPEED_SHAPES if out * d >= 4096 * 4096 and tokens >= 2048}
MLP_WIDTHS = (4096, 11008, 4096)
QUIET = {"verbose": False, "device": "cpu"}


def run_info(args: argparse.Namespace) -> dict:
    return {"command": "python benchmarks/bench_nm.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "machine": machine(), "threads": torch.get_num_threads()}


def pct(v: float, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f} %"


# ---------------------------------------------------------------- quality


def quality_instances(quick: bool) -> list[tuple[str, mo.LayerwiseProblem]]:
    """The relaxation benchmark's layer-wise instances (``bench_relax.quality_instances``)."""
    return [(name, p) for name, p in relax_instances(quick) if name.startswith("layerwise-")]


def with_budget(prob: mo.LayerwiseProblem, budget: mo.Budget) -> mo.LayerwiseProblem:
    """The same layer-wise problem (inputs, weights, target, loss, bias) under ``budget``."""
    return mo.LayerwiseProblem(prob.inputs, prob.weight, prob.target, budget, loss=prob.criterion, bias=prob.bias)


def two_four_l2_optimum(prob: mo.LayerwiseProblem, chunk: int = 512) -> tuple[float, torch.Tensor]:
    """The L2 optimum of ``prob`` under 2:4 by enumeration, sharing no code with the exact
    solver: rows are separate problems; a row keeps at most 2 of each group of 4 (11 patterns
    per group, every combination enumerated); its groups split in two halves whose pattern
    combinations give partial predictions a (first half, minus the target) and b (second half),
    and ‖a + b‖² = ‖a‖² + ‖b‖² + 2 a·b is minimised over all pairs, ``chunk`` first-half
    combinations at a time (meet in the middle). Returns (``mo.evaluate`` of the best mask, the
    mask (out, in))."""
    if prob.loss != "l2" or prob.inputs.shape[1] % 4:
        raise ValueError("the enumeration takes an L2 problem whose input size is a multiple of 4.")
    patterns = np.array([[bool(i >> j & 1) for j in range(4)] for i in range(16) if bin(i).count("1") <= 2])
    X, W = prob.inputs.numpy(), prob.weight.numpy()
    offset = prob.target.numpy() - (0.0 if prob.bias is None else prob.bias.numpy())
    groups = X.shape[1] // 4
    halves = (range(groups // 2), range(groups // 2, groups))
    mask = np.zeros(W.shape, dtype=bool)
    for o in range(W.shape[0]):
        parts = []
        for half in halves:
            combos = np.array([np.concatenate(c) for c in itertools.product(patterns, repeat=len(half))]) \
                if len(half) else np.zeros((1, 0), dtype=bool)
            cols = np.arange(4 * half.start, 4 * half.stop)
            parts.append((combos, combos @ (X[:, cols] * W[o, cols]).T))  # (combinations, N) predictions
        (m1, a), (m2, b) = parts
        a = a - offset[:, o]
        b_sq = (b * b).sum(1)
        best = (np.inf, 0, 0)
        for start in range(0, len(a), chunk):
            block = a[start:start + chunk]
            values = (block * block).sum(1)[:, None] + b_sq[None, :] + 2.0 * block @ b.T
            i, j = np.unravel_index(np.argmin(values), values.shape)
            if values[i, j] < best[0]:
                best = (values[i, j], start + i, j)
        mask[o] = np.concatenate([m1[best[1]], m2[best[2]]])
    masks = {"weight": torch.from_numpy(mask)}
    return mo.evaluate(prob, masks), masks["weight"]


def quality_row(name: str, label: str, prob: mo.LayerwiseProblem, time_limit: float, relax: dict) -> dict:
    """One instance under one budget: the optimum, then every method's relative gap to it. The
    optimum is the exact solver's when it proves one; an L2 problem under 2:4 is also solved by
    :func:`two_four_l2_optimum` (a check of the exact optimum, and the optimum where the exact
    solve fails: ``optimum_by`` says which)."""
    row = {"instance": name, "budget": label, "loss": prob.loss}
    try:
        exact = mo.solve(prob, method="exact", time_limit=time_limit, gap=EXACT_GAP, progress=False)
        row |= {"exact_status": exact.status, "exact_objective": exact.objective, "exact_bound": exact.bound,
                "exact_time": exact.time}
        if exact.status == "optimal":
            row |= {"optimum": exact.objective, "optimum_by": "exact"}
    except Exception as e:  # recorded as not proven, never silently dropped
        row["exact_status"] = f"error: {type(e).__name__}: {e}"
    if prob.loss == "l2" and prob.budget.nm == (2, 4):
        t0 = time.perf_counter()
        value, _ = two_four_l2_optimum(prob)
        row |= {"enumeration_optimum": value, "enumeration_time": time.perf_counter() - t0}
        if "optimum" not in row:
            row |= {"optimum": value, "optimum_by": "enumeration"}
    if "optimum" not in row:
        return row
    for method in QUALITY_METHODS:
        res = mo.solve(prob, method=method, **QUIET, **(relax if method == "hierarchy" else {}))
        bad = prob.allocation.violations(res.masks)
        if bad:
            raise AssertionError(f"{method} under {label} on {name} is over its budget: {bad[0]}")
        row[method] = (res.objective - row["optimum"]) / row["optimum"]
        row[f"{method} time"] = res.time
    return row


def run_quality(args: argparse.Namespace) -> dict:
    relax = {"steps": 10} if args.quick else {}  # hierarchy's options
    rows = []
    for name, base in quality_instances(args.quick):
        for label, budget in QUALITY_BUDGETS.items():
            rows.append(quality_row(name, label, with_budget(base, budget), args.exact_time_limit, relax))
            r = rows[-1]
            print(f"{name} {label}: exact {r['exact_status'][:80]} "
                  + " ".join(f"{m} {pct(r[m])}" for m in QUALITY_METHODS if m in r), flush=True)
    return {"settings": {"exact_time_limit": args.exact_time_limit, "exact_gap": EXACT_GAP,
                         "hierarchy": relax or "defaults", "quick": args.quick}, "rows": rows}


# ---------------------------------------------------------------- tickets


def ticket_masks(method: str, init: nn.Module, names: list[str], budget: mo.Budget, data: mo.data.Dataset,
                 teachers: list[nn.Module], cfg: dict, trial: int) -> tuple[mo.MaskSet, float]:
    """(masks, search seconds) of ``method`` on the weights ``names`` of ``init``: hierarchy
    distils from ``teachers`` with the KD-LTS settings ``cfg``; the others score the
    cross-entropy on the labels (SNIP) or read no data (magnitude, random with seed ``trial``)."""
    t0 = time.perf_counter()
    if method == "hierarchy":
        prob = mo.DistillProblem(init, teachers, data.x, budget, loss="kl", temperature=cfg["temperature"],
                                 labels=data.y if cfg["alpha"] > 0 else None, alpha=cfg["alpha"], params=names)
        res = mo.solve(prob, method="hierarchy", steps=cfg["steps"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                       eval_every=cfg["eval_every"], seed=trial, **QUIET)
    else:
        prob = mo.DistillProblem(init, [init], data.x, budget, loss="kl", labels=data.y, alpha=1.0, params=names)
        res = mo.solve(prob, method=method, seed=trial, **QUIET)
    bad = prob.allocation.violations(res.masks)
    if bad:
        raise AssertionError(f"{method} under {budget} is over its budget: {bad[0]}")
    return res.masks, time.perf_counter() - t0


def ticket_record(trial: int, method: str, budget: str, result, masks, seconds: float) -> dict:
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return {"trial": trial, "method": method, "budget": budget,
            "weight sparsity": 1 - kept / total if total else 0.0, "search seconds": seconds,
            "max test acc": result.best("test_acc"), "final test acc": result.final("test_acc"), **selection(result)}


def tickets_trial(trial: int, quick: bool) -> list[dict]:
    """Every ticket of one initialization (a worker process of one thread)."""
    torch.set_num_threads(1)
    h = load_headline(quick=quick)
    setup, cfg = h.mnist1d, {**h.kdlts, **h.quick.get("kdlts", {})}
    protocol = {**setup.protocol, "validation": validation_data(setup)}
    data = mo.data.mnist1d()
    init = student(setup, trial)
    names = [n for n, p in init.named_parameters() if p.ndim == 2]
    rows = [ticket_record(trial, "dense", "dense", ticket(init, {}, data, protocol), {}, 0.0)]
    teachers, _, _ = train_ensemble(data, cfg, trial)
    for label, budget in TICKET_BUDGETS.items():
        for method in TICKET_METHODS:
            masks, seconds = ticket_masks(method, init, names, budget, data, teachers, cfg, trial)
            rows.append(ticket_record(trial, method, label, ticket(init, masks, data, protocol), masks, seconds))
            r = rows[-1]
            print(f"trial {trial} {label} {method}: val-chosen test {r['val-chosen test acc']:.1f}, "
                  f"max {r['max test acc']:.1f}, last {r['last test acc']:.1f}", file=sys.stderr, flush=True)
    return rows


def run_tickets(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(args.workers, len(args.trials))) as pool:
        rows = [r for part in pool.map(tickets_trial, args.trials, [args.quick] * len(args.trials)) for r in part]
    h = load_headline(quick=args.quick)
    cfg = {**h.kdlts, **h.quick.get("kdlts", {})}
    return {"settings": {"trials": args.trials, "protocol": dict(h.mnist1d.protocol),
                         "student": list(h.mnist1d.student), "hierarchy": cfg, "quick": args.quick},
            "rows": rows, "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------- size


def magnitude_masks(model: nn.Module, names: list[str], budget: mo.Budget) -> dict[str, torch.Tensor]:
    """The magnitude mask (largest |w| kept) of the parameters ``names`` under ``budget``."""
    params = dict(model.named_parameters())
    alloc = budget.allocate({n: tuple(params[n].shape) for n in names})
    return alloc.project({n: params[n].detach().abs() for n in names})


def file_bytes(model: nn.Module, masks: dict[str, torch.Tensor], folder: Path) -> tuple[int, int, bool]:
    """(dense safetensors bytes, compressed file bytes, whether the file reads back bit for bit)."""
    from safetensors.torch import save_file

    dense_path, packed_path = folder / "dense.safetensors", folder / "compressed.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dense_path))
    mo.export(model, masks, format="compressed").save(packed_path)
    back = mo.CompressedState.load(packed_path).state_dict()
    expected = {k: v * masks[k].to(v.dtype) if k in masks else v for k, v in model.state_dict().items()}
    exact = back.keys() == expected.keys() and all(
        back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in expected.items())
    return dense_path.stat().st_size, packed_path.stat().st_size, exact


def size_models(quick: bool) -> list[tuple[str, nn.Module]]:
    setup = load_headline(quick=quick).mnist1d
    mlp = student(setup, 0)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    widths = "-".join(map(str, [linears[0].in_features, *(m.out_features for m in linears)]))
    width = 256 if quick else 4096
    torch.manual_seed(0)
    linear = nn.Linear(width, width)
    return [(f"MNIST-1D MLP {widths}", mlp), (f"Linear {width}x{width}", linear),
            (f"Linear {width}x{width}", copy.deepcopy(linear).to(torch.bfloat16))]


def run_size(args: argparse.Namespace) -> dict:
    rows = []
    budgets = {"2:4": TWO_FOUR,
               **{f"{round(100 * s)} %": mo.Budget(sparsity=s, scope="layer") for s in SIZE_SPARSITIES}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in size_models(args.quick):
            names = [n for n, p in model.named_parameters() if p.ndim == 2]
            for mask_label, budget in budgets.items():
                masks = magnitude_masks(model, names, budget)
                dense, packed, exact = file_bytes(model, masks, Path(tmp))
                kept = sum(int(m.sum()) for m in masks.values())
                rows.append({"model": label, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                             "mask": mask_label, "masked weights": sum(m.numel() for m in masks.values()),
                             "parameters": sum(p.numel() for p in model.parameters()),
                             "kept": kept, "dense bytes": dense, "compressed bytes": packed,
                             "ratio": packed / dense, "round trip exact": exact})
                print(f"{label} {rows[-1]['dtype']} {mask_label}: {packed} / {dense} bytes = {packed / dense:.3f}",
                      flush=True)
    return {"rows": rows}


# ---------------------------------------------------------------- speed


def two_four_magnitude(weight: torch.Tensor) -> torch.Tensor:
    """The (out, in) bool mask keeping the 2 largest |w| of every 4 consecutive inputs of each
    row (ties: any 2), on ``weight``'s device. The same mask as
    ``Budget(nm=(2, 4)).allocate(...).project(|w|)`` without ties (tests/test_bench_nm.py),
    computed in one batched top-k: the projection builds one unit per group of 4 in Python
    (about 30 s for 11008 × 4096 on one CPU core), too slow for the GPU check's slot."""
    out, d = weight.shape
    if d % 4:
        raise ValueError(f"a 2:4 mask needs the input size to be a multiple of 4; got {tuple(weight.shape)}.")
    groups = weight.detach().abs().reshape(out, d // 4, 4)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=weight.device)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(out, d)


def check_speed_device(device: str) -> torch.device:
    """The CUDA device the speed part runs on; SystemExit saying why when it cannot run."""
    dev = torch.device(device)
    reason = ("the speed part times CUDA kernels; --device is " + device) if dev.type != "cuda" else \
        semi_structured_support(dev)
    if reason is not None:
        raise SystemExit(f"bench_nm speed: {reason} It needs a CUDA GPU of compute capability ≥ 8.0 "
                         "(benchmarks/gpu_check.sh runs it there); the other parts run on the CPU.")
    return dev


def cuda_times(fns: dict[str, object], x: torch.Tensor, warmup: int, iters: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each ``fns[k](x)``: CUDA events around ``iters`` calls,
    ``repeats`` times, the functions interleaved within each repeat, after ``warmup`` calls each."""
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn(x)
        torch.cuda.synchronize(x.device)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(iters):
                    fn(x)
                end.record()
                end.synchronize()
                times[k].append(start.elapsed_time(end) / iters)
    return {k: statistics.median(v) for k, v in times.items()}


def masked_pair(model: nn.Module) -> tuple[nn.Module, nn.Module, str]:
    """(the model with 2:4 magnitude masks baked in dense, its semi-structured export, the
    sparse weight class) for every Linear weight of ``model``."""
    masks = {f"{n}.weight" if n else "weight": two_four_magnitude(m.weight) for n, m in model.named_modules()
             if isinstance(m, nn.Linear)}
    dense = copy.deepcopy(model)
    params = dict(dense.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].dtype))
    sparse = mo.export(dense, masks, format="semi_structured")
    kinds = sorted({type(m.weight).__name__ for m in sparse.modules() if isinstance(m, nn.Linear)})
    return dense, sparse, ", ".join(kinds)


def speed_row(kind: str, label: str, model: nn.Module, shape: list[int], tokens: int, args: argparse.Namespace
              ) -> dict:
    """Dense-masked and semi-structured forward times of ``model`` on ``tokens`` random inputs."""
    dev, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    dense, sparse, weight_class = masked_pair(model)
    d_in = next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features
    x = torch.randn(tokens, d_in, device=dev, dtype=dtype, generator=torch.Generator(dev).manual_seed(0))
    with torch.inference_mode():
        ref, got = dense(x).float(), sparse(x).float()
    err = float((got - ref).abs().max() / ref.abs().max())
    ms = cuda_times({"dense": dense, "sparse": sparse}, x, args.warmup, args.iters, args.repeats)
    return {"kind": kind, "label": label, "dtype": str(dtype).removeprefix("torch."), "shape": shape,
            "tokens": tokens, "dense ms": ms["dense"], "sparse ms": ms["sparse"], "speedup": ms["dense"] / ms["sparse"],
            "max rel err": err, "sparse weight": weight_class}


def mlp(widths: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b, device=device, dtype=dtype), nn.GELU()]
    return nn.Sequential(*layers[:-1])


def run_speed(args: argparse.Namespace) -> dict:
    dev = check_speed_device(args.device)
    shapes = (("tiny", 128, 128, 256),) if args.quick else SPEED_SHAPES
    widths, tokens = ((128, 256, 128), 256) if args.quick else (MLP_WIDTHS, 2048)
    rows = []
    for dtype in (torch.float16, torch.bfloat16):
        for label, out, d, n in shapes:
            torch.manual_seed(0)
            layer = nn.Linear(d, out, device=dev, dtype=dtype)
            rows.append(speed_row("linear", label, layer, [out, d], n, args))
            print(f"{rows[-1]['dtype']} {label} ({out}x{d}, {n} tokens): {rows[-1]['speedup']:.2f}x", flush=True)
            del layer
        torch.manual_seed(0)
        model = mlp(widths, dev, dtype)
        rows.append(speed_row("mlp", "MLP " + "-".join(map(str, widths)), model, list(widths), tokens, args))
        print(f"{rows[-1]['dtype']} MLP: {rows[-1]['speedup']:.2f}x", flush=True)
        del model
        torch.cuda.empty_cache()
    major, minor = torch.cuda.get_device_capability(dev)
    return {"device_name": f"{torch.cuda.get_device_name(dev)} (capability {major}.{minor}), torch "
                           f"{torch.__version__}, CUDA {torch.version.cuda}",
            "cusparselt": bool(hasattr(torch.backends, "cusparselt") and torch.backends.cusparselt.is_available()),
            "settings": {"warmup": args.warmup, "iters": args.iters, "repeats": args.repeats, "quick": args.quick},
            "rows": rows}


# ---------------------------------------------------------------- report


def header(d: dict) -> list[str]:
    return [f"Command: `{d['command']}`", "", f"Machine: {d['machine']}", ""]


def options_text(options: dict | str, lead: str = "") -> str:
    """``{"steps": 10}`` as ``"steps=10"`` (``lead`` before it; nothing for no options)."""
    if not isinstance(options, dict):
        return lead + options
    return lead + ", ".join(f"{k}={v}" for k, v in options.items()) if options else ""


def gap_cell(rows: list[dict], method: str) -> str:
    gaps = [r[method] for r in rows]
    return f"{pct(statistics.median(gaps))} / {pct(max(gaps))}" if gaps else "–"


def section_quality() -> str | None:
    d = load_results("nm_quality")
    if d is None:
        return None
    rows, s = d["rows"], d["settings"]
    counts = {(b, loss): sum((r["budget"], r["loss"]) == (b, loss) for r in rows)
              for b in QUALITY_BUDGETS for loss in ("l1", "l2")}
    columns = [c for c, n in counts.items() if n]
    cells = {c: [r for r in rows if (r["budget"], r["loss"]) == c and "optimum" in r] for c in columns}
    body = [[m] + [gap_cell(cells[c], m) for c in columns] for m in QUALITY_METHODS]
    body.append(["optima: exact / enumeration / none"] + [
        " / ".join(str(sum(r.get("optimum_by") == by for r in rows if (r["budget"], r["loss"]) == c))
                   for by in ("exact", "enumeration", None)) for c in columns])
    body.append(["exact proven: median seconds"] + [
        f"{statistics.median(times):.2f}" if (times := [r["exact_time"] for r in cells[c]
                                                        if r.get("optimum_by") == "exact"]) else "–"
        for c in columns])
    optima = {(r["instance"], r["budget"]): r["optimum"] for r in rows if "optimum" in r}
    ratios = [optima[(i, "2:4")] / optima[(i, "50 % row")] for i, b in optima
              if b == "2:4" and (i, "50 % row") in optima]
    checked = [r for r in rows if "enumeration_optimum" in r and r.get("optimum_by") == "exact"]
    failed = [r for r in rows if r["exact_status"] != "optimal"]
    lines = [
        "## Gap to the optimum: 2:4 against 50 % per row", "", *header(d),
        f"Instances: the relaxation benchmark's layer-wise set (planted, noise 0.5, N = 40, in = 32, out = 2), "
        f"exact time limit {s['exact_time_limit']:g} s, relative gap {s['exact_gap']:g}; hierarchy: "
        f"{options_text(s['hierarchy'])}; random: seed 0. Cells: median / worst relative gap "
        "(objective − optimum) / optimum over the instances with an optimum. The optimum is the exact solver's "
        "when it proves one; L2 under 2:4 is also solved by enumerating every mask of each row (11 patterns per "
        "group of 4, meet in the middle; `two_four_l2_optimum`, no code shared with the solver), which stands in "
        "where the exact solve fails.", "",
        table(["method"] + [f"{b}, {loss.upper()}" for b, loss in columns], body)]
    if ratios:
        lines += ["", f"Price of the 2:4 structure: the 2:4 optimum over the 50 %-per-row optimum of the same "
                      f"instance, median {statistics.median(ratios):.3f}, largest {max(ratios):.3f} "
                      f"(instances with both: {len(ratios)})."]
    if checked:
        worst = max(abs(r["enumeration_optimum"] - r["optimum"]) / r["optimum"] for r in checked)
        lines += ["", f"Exact against enumeration where both ran: largest relative difference {worst:.1e} "
                      f"({len(checked)} instances)."]
    if failed:
        lines += ["", f"Exact solver without a proven optimum ({len(failed)}): "
                      + ", ".join(f"{r['instance']} {r['budget']}" for r in failed)
                      + f". The first one's status: `{failed[0]['exact_status']}`"]
        enumerated = [r for r in failed if "enumeration_optimum" in r]
        if enumerated:
            lines[-1] += (" Enumerated optima of these: " + ", ".join(
                f"{r['instance']} {r['enumeration_optimum']:.6g}" for r in enumerated) + ".")
    return "\n".join(lines)


def section_tickets() -> str | None:
    d = load_results("nm_tickets")
    if d is None:
        return None
    rows, s = d["rows"], d["settings"]
    order = [("dense", "dense")] + [(m, b) for b in TICKET_BUDGETS for m in TICKET_METHODS]
    body = []
    for method, budget in order:
        sel = [r for r in rows if (r["method"], r["budget"]) == (method, budget)]
        if not sel:
            continue
        body.append([method, budget, pct(statistics.mean(r["weight sparsity"] for r in sel)),
                     f"{statistics.mean(r['search seconds'] for r in sel):.3g}",
                     ", ".join(f"{r['val-chosen test acc']:.1f}" for r in sel),
                     *(f"{statistics.mean(r[k] for r in sel):.1f}" for k in ("val-chosen test acc", "last test acc",
                                                                              "max test acc"))])
    p, cfg = s["protocol"], s["hierarchy"]
    return "\n".join([
        "## MNIST-1D tickets: 2:4 against 50 % per layer", "", *header(d),
        f"Student {s['student'][0]}{options_text(s['student'][1], ' ')} at initialization trial "
        f"{', '.join(map(str, s['trials']))} (seed 42 + trial); tickets trained {p['steps']} steps, batch "
        f"{p['batch_size']}, Adam lr {p['lr']:g}, "
        f"evaluated every {p['eval_every']} steps; the three weight matrices masked, biases dense. Hierarchy: "
        f"{len(cfg['teachers'])} {cfg['teachers'][0]} teachers ({cfg['teacher_steps']} steps), KL at temperature "
        f"{cfg['temperature']:g}, {cfg['steps']} steps, lr {cfg['lr']:g}. Test accuracy (%) at the evaluation the "
        f"validation split chooses (per trial, mean), at the last evaluation and the maximum over evaluations "
        f"(an optimistic number: it looks at the test set). Mask search seconds: one worker process of one thread "
        f"(hierarchy: without training its teachers). Wall time {d['wall_s'] / 60:.1f} min.", "",
        table(["method", "budget", "weight sparsity", "mask search s", "val-chosen test (per trial)",
               "val-chosen mean", "last mean", "max mean"], body)])


def section_size() -> str | None:
    d = load_results("nm_size")
    if d is None:
        return None
    body = [[r["model"], r["dtype"], r["mask"], f"{r['masked weights']:,} of {r['parameters']:,}",
             f"{r['dense bytes']:,}", f"{r['compressed bytes']:,}", f"{r['ratio']:.3f}",
             "yes" if r["round trip exact"] else "**no**"] for r in d["rows"]]
    return "\n".join([
        "## File size: compressed state dict against dense", "", *header(d),
        "Dense: the `state_dict` saved with `safetensors.torch.save_file`. Compressed: "
        "`mo.export(model, masks, format=\"compressed\").save(path)` (kept values + 1 bit per masked weight; "
        "biases dense). Masks: magnitude, weight matrices only; 2:4 = `Budget(nm=(2, 4))`, the percentages "
        "`Budget(sparsity=s, scope=\"layer\")`. Round trip: the file loads back to the masked `state_dict` bit for "
        "bit.", "",
        table(["model", "dtype", "mask", "masked / all parameters", "dense bytes", "compressed bytes", "ratio",
               "round trip"], body)])


def section_speed() -> str | None:
    d = load_results("nm_speed_cuda")
    if d is None:
        return None
    s = d["settings"]
    body = [[r["dtype"], r["label"] + (" (large)" if r["label"] in LARGE else ""), "-".join(map(str, r["shape"])),
             r["tokens"], f"{r['dense ms']:.3f}", f"{r['sparse ms']:.3f}", f"**{r['speedup']:.2f}×**",
             f"{r['max rel err']:.1e}"] for r in d["rows"]]
    classes = sorted({r["sparse weight"] for r in d["rows"]})
    return "\n".join([
        "## GPU speed: 2:4 semi-structured against dense", "", *header(d),
        f"Device: {d['device_name']}; cuSPARSELt available: {'yes' if d['cusparselt'] else 'no'}; sparse weights: "
        f"{', '.join(classes)}. Forward passes under `torch.inference_mode()`, CUDA events around {s['iters']} calls,"
        f" median of {s['repeats']} repeats after {s['warmup']} warm-up calls, dense and sparse interleaved. "
        "Shapes: out-in for a Linear (with bias), the widths for the MLP; error: max |sparse − dense| / max |dense|.",
        "", table(["dtype", "layer", "shape", "tokens", "dense ms", "2:4 ms", "speedup", "max rel err"], body)])


def sections() -> dict[str, str]:
    """Block name -> markdown, for every record present."""
    out = {"nm_quality": section_quality(), "nm_tickets": section_tickets(), "nm_size": section_size(),
           "nm_speed": section_speed()}
    return {name: f'<a id="{name}"></a>\n\n{body}' for name, body in out.items() if body is not None}


def verdict(ok: int, n: int) -> str:
    return "met" if ok == n else "not met" if ok == 0 else "partly met"


def goals() -> list[Goal]:
    out = []
    d = load_results("nm_size")
    if d is not None:
        worst = {m: max((r["ratio"] for r in d["rows"] if r["mask"] == m), default=None) for m in GOAL_SIZE}
        cells = [r for r in d["rows"] if r["mask"] in GOAL_SIZE]
        ok = sum(r["ratio"] < GOAL_SIZE[r["mask"]] and r["round trip exact"] for r in cells)
        out.append(Goal(AREA, "2:4 file < 0.6× dense, 90 % < 0.2×",
                        f"worst {worst['2:4']:.2f}×, {worst['90 %']:.2f}×", verdict(ok, len(cells)), "nm_size"))
    d = load_results("nm_speed_cuda")
    if d is not None:
        cells = [r for r in d["rows"] if r["label"] in LARGE]
        ok = sum(r["speedup"] >= GOAL_SPEEDUP for r in cells)
        worst = min(cells, key=lambda r: r["speedup"]) if cells else None
        measured = f"{ok}/{len(cells)}; min {worst['speedup']:.2f}×" if worst else "no large shape"
        out.append(Goal(AREA, f"2:4 Linear ≥ {GOAL_SPEEDUP:g}× dense, large shapes", measured,
                        verdict(ok, len(cells)) if cells else "not met", "nm_speed"))
    return out


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["quality", "tickets", "size"], choices=PARTS)
    ap.add_argument("--exact-time-limit", type=float, default=300.0, help="quality: seconds per exact solve")
    ap.add_argument("--trials", type=int, nargs="+", default=[0, 1], help="tickets: student initializations")
    ap.add_argument("--workers", type=int, default=2, help="tickets: trials at a time (one thread each)")
    ap.add_argument("--device", default="cuda", help="speed: the CUDA device")
    ap.add_argument("--warmup", type=int, default=10, help="speed: warm-up calls per variant")
    ap.add_argument("--iters", type=int, default=20, help="speed: calls per timed repeat")
    ap.add_argument("--repeats", type=int, default=10, help="speed: timed repeats")
    ap.add_argument("--threads", type=int, help="torch CPU threads of the quality and size parts")
    ap.add_argument("--report", action="store_true", help="only rewrite the page's blocks from the JSON")
    ap.add_argument("--quick", action="store_true",
                    help="every part on a tiny setting in seconds (speed only where CUDA runs it; scratch results)")
    args = ap.parse_args()
    if args.report:
        write_sections(PAGE, sections())
        return 0
    if args.quick:
        use_scratch_results()
        args.exact_time_limit, args.trials, args.warmup, args.iters, args.repeats = 30.0, [0], 1, 2, 2
        args.parts = [p for p in PARTS if p != "speed" or semi_structured_support() is None]
        if "speed" not in args.parts:
            print(f"--quick: the speed part is left out: {semi_structured_support()}", flush=True)
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if "speed" in args.parts:
        check_speed_device(args.device)  # refuse before any other part runs
    info = run_info(args)
    runs = {"quality": run_quality, "tickets": run_tickets, "size": run_size, "speed": run_speed}
    for part in args.parts:
        name = "nm_speed_cuda" if part == "speed" else f"nm_{part}"
        save_results(name, {**info, **runs[part](args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
