"""The ``maskopt`` command. Exit codes: 0 success, 2 bad input, 1 internal error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import maskopt as mo
from maskopt.report import format_table, write_csv, write_json
from maskopt.solvers.unrolled.bench import add_arguments, bench_main

DEMO_COLUMNS = ("loss", "method", "objective", "bound", "gap", "status", "time", "density", "hamming_to_planted")


def _demo(args: argparse.Namespace) -> int:
    n_in = 12 if args.quick else 24
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.quiet else print
    say(f"maskopt demo: planted layer-wise problem, N={2 * n_in}, in={n_in}, density 0.25, noise 0.1, seed {args.seed}")
    rows = []
    for loss in ("l1", "l2"):
        prob, planted = mo.data.planted_layerwise(
            n_samples=2 * n_in, n_in=n_in, density=0.25, noise=0.1, seed=args.seed, loss=loss
        )
        runs = [("exact", {"time_limit": args.time_limit}), ("bruteforce", {}), ("magnitude", {}),
                ("random", {"seed": args.seed})]
        for method, opts in runs:
            res = mo.solve(prob, method=method, **opts)
            hamming = int((res.masks["weight"] != planted["weight"]).sum())
            rows.append({"loss": loss, **res.summary(), "hamming_to_planted": hamming})
            res.masks.save(out / f"masks_{loss}_{method}.safetensors")
            say(f"  {loss:<2} {method:<10} objective {res.objective:.6g}  ({res.status}, {res.time:.2f} s)")
    write_csv(out / "results.csv", rows, DEMO_COLUMNS)
    write_json(out / "results.json", {"problem": "planted_layerwise", "n_in": n_in, "seed": args.seed, "rows": rows})
    print(format_table(rows, DEMO_COLUMNS))
    say(f"\ngap = (objective - bound) / objective; bound = proven lower bound on the optimum.\n"
        f"Wrote results.csv, results.json and masks_*.safetensors to {out}/")
    return 0


def _lista_bench(args: argparse.Namespace) -> int:
    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskopt", description="Sparse masks of neural networks by optimization.")
    parser.add_argument("--version", action="version", version=f"maskopt {mo.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="solve a built-in planted problem exactly, by brute force and by baselines")
    demo.add_argument("--out", default="maskopt-demo", help="results folder (default: ./maskopt-demo)")
    demo.add_argument("--seed", type=int, default=0, help="instance and baseline seed (default 0)")
    demo.add_argument("--time-limit", type=float, default=60.0, help="seconds for the exact solver (default 60)")
    demo.add_argument("--quick", action="store_true", help="a smaller instance (for tests)")
    demo.add_argument("--quiet", action="store_true", help="print only the final table")
    demo.set_defaults(func=_demo)
    lista = sub.add_parser("lista-bench", help="train/tune an unrolled sparse solver (or run ISTA/FISTA) on the "
                           "sparse-coding benchmark and print its test NMSE per layer")
    add_arguments(lista)
    lista.set_defaults(func=_lista_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maskopt`` console script."""
    args = build_parser().parse_args(argv)
    torch.manual_seed(getattr(args, "seed", 0))
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:
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
