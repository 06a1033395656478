"""Rebuild every generated block of the benchmark docs from ``benchmarks/results/*.json``.

    python benchmarks/report.py           # rewrite docs/benchmarks/*.md blocks and BENCHMARKS.md's goals table
    python benchmarks/report.py --check   # exit 1 and name every block that would change

Each ``bench_*.py`` module listed in ``SCRIPTS`` provides ``PAGE``, ``sections()`` and
``goals()`` (see ``_common.py``); this script only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Goal, docs_dir, render_page, replace_block, table  # noqa: E402

from maskopt.report import atomic_write_text  # noqa: E402

SCRIPTS = ("bench_exact_layerwise", "bench_exact_network", "bench_bound_widths", "bench_exact_rows",
           "bench_relax", "bench_distill_overhead", "bench_tickets", "bench_headline", "bench_lista", "bench_prune",
           "bench_sparse", "bench_nm")
INDEX = ROOT / "BENCHMARKS.md"


def goals_table(rows: list[tuple[str, Goal]]) -> str:
    """The goals table of BENCHMARKS.md: one row per goal, linked to its section."""
    return table(["Area", "Goal", "Measured", "Verdict", "Section"],
                 [[g.area, g.goal, g.measured, f"**{g.verdict}**",
                   f"[{g.section}](docs/benchmarks/{page}.md#{g.section})"] for page, g in rows])


def render() -> dict[Path, str]:
    """Every file the report writes -> its new text."""
    pages: dict[str, dict[str, str]] = {}
    goals: list[tuple[str, Goal]] = []
    for name in SCRIPTS:
        mod = importlib.import_module(name)
        pages.setdefault(mod.PAGE, {}).update(mod.sections())
        goals += [(mod.PAGE, g) for g in mod.goals()]
    out = {docs_dir() / f"{page}.md": render_page(page, sections) for page, sections in pages.items()}
    index = INDEX.read_text() if INDEX.exists() else "# Benchmarks\n"
    out[INDEX] = replace_block(index, "goals", goals_table(goals))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file would change")
    args = ap.parse_args()
    changed = []
    for path, text in render().items():
        if not path.exists() or path.read_text() != text:
            changed.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, text)
    for path in changed:
        print(("would change: " if args.check else "rewrote: ") + str(path.relative_to(ROOT)))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
