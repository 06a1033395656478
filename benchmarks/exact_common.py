"""Helpers shared by the exact-solver benchmark scripts, whose blocks all live on the docs page
``docs/benchmarks/exact.md``: cell formatting, spreads and status counts, the header of a
block (anchor, title, command, machine), the raw-bound check and the results folder of a
``--quick`` run."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from _common import table, use_scratch_results, write_sections

PAGE = "exact"


def fmt(value) -> str:
    """A table cell: floats to 3 significant digits, None as '-'."""
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def spread(values: Iterable[float]) -> str:
    """``median [min, max]`` to 3 significant digits."""
    values = list(values)
    return f"{statistics.median(values):.3g} [{min(values):.3g}, {max(values):.3g}]"


def statuses(values: Iterable[str]) -> str:
    """Counts of each status in alphabetical order, e.g. ``1 numerical, 9 optimal``."""
    values = list(values)
    return ", ".join(f"{values.count(s)} {s}" for s in sorted(set(values)))


def md_table(rows: list[dict]) -> str:
    """A markdown table of dict rows (the first row's keys are the columns)."""
    return table(list(rows[0]), [[fmt(v) for v in r.values()] for r in rows])


def command_text(command: str) -> str:
    """The recorded command line as a user types it (``python`` in front of the script)."""
    return command if command.startswith("python ") else f"python {command}"


def header(name: str, title: str, data: dict) -> list[str]:
    """First lines of block ``name``: an anchor (the goals table links to it), the title, the
    command and the machine recorded in ``data``."""
    return [f'<a id="{name}"></a>', "", f"## {title}", "", f"Command: `{command_text(data['command'])}`", "",
            f"Machine: {data['machine']}", ""]


def bounds_below(pairs: Iterable[tuple[float, float]], rtol: float = 1e-6) -> bool:
    """Every (raw bound, objective) pair has bound ≤ objective (relative tolerance ``rtol``)."""
    return all(b <= o + rtol * max(1.0, abs(o)) for b, o in pairs)


def command_line() -> str:
    """This process's command line, as recorded in a results file."""
    return "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def add_common_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--report", action="store_true",
                    help=f"rewrite this script's blocks of docs/benchmarks/{PAGE}.md from the results JSON and exit")
    ap.add_argument("--quick", action="store_true",
                    help="the whole pipeline on a tiny setting in seconds; JSON to $MASKOPT_BENCH_RESULTS "
                         "(a temporary folder when unset)")


def report_or_quick(args: argparse.Namespace, sections: Callable[[], dict[str, str]]) -> bool:
    """Handle ``--report`` (write the blocks; True: nothing else to do) and ``--quick`` (point
    the results at a safe folder)."""
    if args.report:
        write_sections(PAGE, sections())
        return True
    if args.quick:
        torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the test suite runs in parallel)
        use_scratch_results()
    return False
