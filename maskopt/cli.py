"""The ``maskopt`` command. Exit codes: 0 success, 2 bad input, 1 internal error."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

import maskopt as mo
from maskopt.report import format_table, plain, write_json
from maskopt.solvers.unrolled.bench import CONVENTION, METHODS, default_config, run_method

DEMO_STUDENT = {"in_features": 64, "hidden": [64], "num_classes": 10}
DEMO_TEACHERS = [("mlp", {"in_features": 64, "hidden": [128], "num_classes": 10}),
                 ("mlp", {"in_features": 64, "hidden": [64, 64], "num_classes": 10})]
DEMO_BASELINES = ("magnitude", "snip", "grasp", "synflow", "random")  # one-shot methods shown beside the relaxations


def _say(args: argparse.Namespace):
    return (lambda *a, **k: None) if args.quiet else print


def _with_common(method: str, opts: dict, args: argparse.Namespace, device: bool = True) -> dict:
    """``opts`` plus the command's --time-limit for methods that take it, ``verbose=False``,
    and its --device unless ``device=False`` (compare applies it, running CPU-only methods on
    the CPU)."""
    out = dict(opts)
    if device and getattr(args, "device", None):
        out.setdefault("device", args.device)
    if "time_limit" in _fields(method) and getattr(args, "time_limit", None) is not None:
        out.setdefault("time_limit", args.time_limit)
    out.setdefault("verbose", False)
    return out


def _write_comparison(comparison: mo.Comparison, out: Path, stem: str, masks: str) -> list[str]:
    """``stem``.csv/.json/.png and every method's best mask in ``masks``; the names written."""
    from maskopt.compare import save_masks

    comparison.to_csv(out / f"{stem}.csv")
    comparison.to_json(out / f"{stem}.json")
    comparison.plot(out / f"{stem}.png")
    save_masks(comparison, out / masks)
    return [f"{stem}.csv", f"{stem}.json", f"{stem}.png", masks]


def _demo(args: argparse.Namespace) -> int:
    """Teachers on digits, a student at initialization; the exact solver on the student's last
    layer (an exactly solvable layer-wise problem), relaxations and baselines on the whole
    student with its trained tickets."""
    say = _say(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    data = mo.data.digits(seed=args.seed)
    say(f"maskopt demo: {data}; teachers: {len(DEMO_TEACHERS)} MLPs; student MLP 64-64-10 at initialization, "
        f"seed {args.seed}")
    teachers = mo.train_teachers(data, DEMO_TEACHERS, seeds=(args.seed,), epochs=5 if quick else 20, lr=3e-3,
                                 batch_size=64, device=args.device, verbose=False)
    student = mo.models.create("mlp", seed=args.seed, **DEMO_STUDENT)
    n = 12 if quick else 24
    with torch.no_grad():
        hidden = student[:-1](data.x[:n])
        target = sum(t(data.x[:n]) for t in teachers) / len(teachers)
    last = student[-1]
    layer = mo.LayerwiseProblem(hidden, last.weight.detach(), target - last.bias.detach(),
                                mo.Budget(sparsity=0.9, scope="row"), loss="l1")
    steps = 60 if quick else 300
    relaxations = mo.methods(family="relaxation")
    relax = {m: {"steps": steps // 3 if m == "hierarchy" else steps} for m in relaxations}
    methods = ["exact", *relaxations, *(m for m in DEMO_BASELINES if mo.method_spec(m).accepts(layer))]
    say(f"\n[1/2] last layer alone, exactly: {n} samples, mask of {last.weight.numel()} weights, "
        "10 % of each row kept, L1 distance to the teachers' mean logits")
    exact = mo.compare(layer, methods, seeds=(args.seed,), verbose=not args.quiet, device=args.device,
                       options={m: _with_common(m, relax.get(m, {}), args, device=False) for m in methods})
    full = mo.DistillProblem(student, teachers, data.x, mo.Budget(sparsity=0.9, scope="layer"), loss="kl",
                             temperature=2.0, labels=data.y)
    methods = [*relaxations, *(m for m in DEMO_BASELINES if mo.method_spec(m).accepts(full))]
    say(f"\n[2/2] whole student: KL distillation (T = 2) on {data.x.shape[0]} digits, 90 % sparsity per layer, "
        "tickets trained from initialization on the labels")
    compared = mo.compare(full, methods, seeds=(args.seed,), certify=False, verbose=not args.quiet,
                          device=args.device,
                          options={m: _with_common(m, relax.get(m, {}), args, device=False) for m in methods},
                          ticket={"data": data, "epochs": 3 if quick else 20, "lr": 3e-3, "batch_size": 64})
    files = (_write_comparison(exact, out, "exact_layer", "exact_layer_masks.safetensors")
             + _write_comparison(compared, out, "student", "masks.safetensors"))
    print("\nLast layer (gap = (objective - bound) / objective, bound proven by the exact solver):")
    print(exact.table())
    print("\nWhole student (gap to the best objective found; test_acc = max test accuracy of the trained ticket, %):")
    print(compared.table())
    say(f"\nWrote {', '.join(files)} to {out}/ (masks.safetensors: the student's masks, keyed "
        "'<method>/<parameter>'; load one with maskopt.MaskSet.load(path, method=NAME))")
    return 0


def _experiment(args: argparse.Namespace, command: str):
    from maskopt import config as cfg

    conf = cfg.load(args.config)
    cfg.require(conf, command)
    exp = cfg.build(conf, seed=args.seed, device=args.device, verbose=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return conf, exp, out


def _solve(args: argparse.Namespace) -> int:
    conf, exp, out = _experiment(args, "solve")
    method = conf["solve"]["method"]
    opts = _with_common(method, conf["solve"].get("options", {}), args)
    opts.setdefault("seed", args.seed)
    res = mo.solve(exp.problem, method=method, **opts)
    summary = res.summary()
    if exp.ticket is not None:
        ticket = dict(exp.ticket)
        summary["test_acc"] = mo.train_ticket(exp.student, res.masks, ticket.pop("data"),
                                              verbose=not args.quiet, **ticket).best("test_acc")
    res.masks.save(out / "masks.safetensors")
    write_json(out / "result.json", {"config": conf, "result": summary, "layers": res.masks.report(),
                                     "stats": plain(res.stats)})
    print(format_table([summary], list(summary)))
    _say(args)(f"Wrote masks.safetensors and result.json to {out}/")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from maskopt import config as cfg

    conf = cfg.load(args.config)
    job = cfg.build_prune(conf, seed=args.seed, device=args.device, verbose=not args.quiet)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = dict(job.options)
    method = opts.pop("method")
    options = _with_common(method, opts.pop("options", {}), args)
    res = mo.prune_layerwise(job.model, job.calibration, job.budget, method=method, options=options,
                             verbose=not args.quiet, **opts)
    data = job.data
    with torch.no_grad():
        dense, pruned = ((m(data.x_test).argmax(1) == data.y_test).float().mean().item() * 100
                         for m in (job.model, res.model))
    res.masks.save(out / "masks.safetensors")
    res.to_csv(out / "layers.csv")
    write_json(out / "result.json", {"config": conf, "layers": res.rows, "test_acc_dense": dense,
                                     "test_acc_pruned": pruned})
    print(res.table())
    print(f"test accuracy: dense {dense:.2f} %, pruned {pruned:.2f} % (no retraining)")
    _say(args)(f"Wrote masks.safetensors, layers.csv and result.json to {out}/")
    return 0


def _fields(method: str) -> set[str]:
    from maskopt.api import method_spec

    return method_spec(method).option_names


def _compare(args: argparse.Namespace) -> int:
    conf, exp, out = _experiment(args, "compare")
    cc = conf["compare"]
    methods = cc["methods"]
    options = {m: _with_common(m, cc.get("options", {}).get(m, {}), args, device=False) for m in methods}
    comparison = mo.compare(exp.problem, methods, seeds=cc.get("seeds", [args.seed]), options=options,
                            certify=cc.get("certify", True), certify_time_limit=cc.get("certify_time_limit", 30.0),
                            ticket=exp.ticket, verbose=not args.quiet, device=args.device)
    files = _write_comparison(comparison, out, "results", "masks.safetensors")
    print(comparison.table())
    _say(args)(f"Wrote {', '.join(files)} to {out}/")
    return 0


def _lista_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``maskopt lista-bench``."""
    parser.add_argument("--method", required=True, choices=METHODS, help="solver or unrolled model")
    parser.add_argument("--layers", type=int, default=16, help="layers (or iterations for ista/fista), default 16")
    parser.add_argument("--snr", type=float, default=math.inf, help="SNR in dB, or inf (default) for noise-free")
    parser.add_argument("--json", help="write the result record to this file")
    parser.add_argument("--m", type=int, default=250, help="measurements (default 250)")
    parser.add_argument("--n", type=int, default=500, help="signal length (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="problem and training seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is best on a busy machine)")
    parser.add_argument("--test-size", type=int, default=1000, help="test samples (default 1000)")
    parser.add_argument("--max-steps", type=int, help="training steps per stage at most (default 2000)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 128)")
    parser.add_argument("--lr", type=float, help="stage-1 learning rate (default: per method)")
    parser.add_argument("--time-limit", type=float, help="seconds of training at most (default: none)")
    parser.add_argument("--cp-init", choices=("ista", "alista"), default="ista",
                        help="initialisation of lista-cp/lista-cpss (default ista)")
    parser.add_argument("--checkpoint", help="checkpoint file (written per layer; resumed from when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _lista_record(args: argparse.Namespace) -> dict:
    """Run ``maskopt lista-bench``: print the NMSE per layer and return the result record
    (the command writes it to ``--json``)."""
    if args.layers < 1 or args.m < 1 or args.n < 1 or args.test_size < 1:
        raise ValueError("--layers, --m, --n and --test-size must be positive.")
    if math.isnan(args.snr) or args.snr <= -math.inf:
        raise ValueError(f"--snr must be a number of dB or inf, got {args.snr}.")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be positive.")
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise ValueError(f"bad --device {args.device!r}: {e}") from None
    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("time_limit", args.time_limit)) if v is not None}
    config = replace(default_config(args.method, args.seed), **overrides)
    record = run_method(args.method, layers=args.layers, snr_db=args.snr, m=args.m, n=args.n, seed=args.seed,
                        device=str(device), test_size=args.test_size, config=config, checkpoint=args.checkpoint,
                        model_options={"init": args.cp_init} if args.method.startswith("lista-cp") else None,
                        verbose=not args.quiet)
    print(f"{args.method}: {args.m}x{args.n}, SNR {args.snr} dB, test NMSE in dB ({CONVENTION})")
    print("layer  nmse_db   nmse_db_per_sample")
    for k, (a, b) in enumerate(zip(record["nmse_db"], record["nmse_db_per_sample"]), start=1):
        print(f"{k:<5}  {a:8.2f}  {b:8.2f}")
    print(f"prepared in {record['prepare_time_s']:.1f} s")
    return record


def _lista_bench(args: argparse.Namespace) -> int:
    record = _lista_record(args)
    if args.json:
        write_json(args.json, record)
    return 0


def _checked(convert, ok, what: str):
    """An argparse ``type``: ``convert(text)``, refused unless ``ok(value)``; errors say ``what``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}; got {value}")
        return value
    return parse


_seed = _checked(int, lambda v: v >= 0, "an integer ≥ 0")
_seconds = _checked(float, lambda v: 0 < v < float("inf"), "a number of seconds > 0")


def _common_flags(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--out", default=out, help=f"results folder (default: ./{out})")
    p.add_argument("--seed", type=_seed, default=0, help="default seed of data split, student, methods (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (relaxations and training)")
    p.add_argument("--time-limit", type=_seconds, default=60.0, help="seconds for the exact solver (default 60)")
    p.add_argument("--quiet", action="store_true", help="print only the final tables")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskopt", description="Sparse masks of neural networks by optimization.")
    parser.add_argument("--version", action="version", version=f"maskopt {mo.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="teachers on digits, a student at initialization: exact, relaxed and "
                          "baseline masks compared, tickets trained")
    _common_flags(demo, "maskopt-demo")
    demo.add_argument("--quick", action="store_true", help="fewer steps and samples (for tests)")
    demo.set_defaults(func=_demo)
    for name, func, what in (("solve", _solve, "find one mask with the method of [solve]"),
                             ("compare", _compare, "compare the methods of [compare]"),
                             ("prune", _prune, "prune a trained [model] layer by layer with the method of [prune]")):
        p = sub.add_parser(name, help=f"{what} on the problem a TOML config describes (see examples/)")
        p.add_argument("config", help="a TOML config file (examples/README.md documents every key)")
        _common_flags(p, f"maskopt-{name}")
        p.set_defaults(func=func)
    lista = sub.add_parser("lista-bench", help="train/tune an unrolled sparse solver (or run ISTA/FISTA) on the "
                           "sparse-coding benchmark and print its test NMSE per layer")
    _lista_arguments(lista)
    lista.set_defaults(func=_lista_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maskopt`` console script."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse: 2 after printing a usage error, 0 after --help / --version
        return int(stop.code or 0)
    torch.manual_seed(getattr(args, "seed", 0))
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as e:  # OSError: a file or folder the user named (FileNotFoundError, ...)
        print(f"maskopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskopt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - report, then exit 1
        print(f"maskopt: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
