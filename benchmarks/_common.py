"""Shared pieces of the benchmark scripts: the machine description, the results files and
the generated blocks of the benchmark docs.

Contract every ``bench_*.py`` script follows:

- measured data go to ``results_dir()/<name>.json`` through :func:`save_results` (the
  default is ``benchmarks/results``; the environment variable ``MASKOPT_BENCH_RESULTS``
  points it elsewhere, which the smoke tests and ``--quick`` runs use);
- the module defines ``PAGE`` (the docs page under ``docs/benchmarks/``, e.g. ``"exact"``),
  ``sections() -> dict[str, str]`` (section name -> markdown block, built only from results
  JSON; a section whose results are missing is left out) and ``goals() -> list[Goal]``;
- ``--report`` rewrites that script's blocks in its docs page (``write_sections``) and
  ``python benchmarks/report.py`` rebuilds every page and the goals table of BENCHMARKS.md;
- ``--quick`` runs the whole pipeline on a tiny setting in seconds.

A docs page is hand-written prose around generated blocks; a block sits between
``<!-- name:start -->`` and ``<!-- name:end -->`` and only the block is rewritten.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import highspy
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from torch import nn

from maskopt.report import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
VERDICTS = ("met", "not met", "partly met", "no goal")


@dataclass(frozen=True)
class Goal:
    """One row of BENCHMARKS.md's goals table: what was asked, what was measured, whether
    it holds, and the section (``section`` is a block name of the script's ``PAGE``)."""

    area: str
    goal: str
    measured: str
    verdict: str
    section: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


def machine() -> str:
    """CPU architecture, cores, Python, torch (and the CPU kernels it picked: results of long
    float32 runs depend on them), HiGHS, OS."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
            f"HiGHS {highspy.Highs().version()}, {platform.platform()}")


def results_dir() -> Path:
    """Where results JSON are read and written: ``$MASKOPT_BENCH_RESULTS`` or ``benchmarks/results``."""
    return Path(os.environ.get("MASKOPT_BENCH_RESULTS", ROOT / "benchmarks" / "results"))


def docs_dir() -> Path:
    """Where the docs pages are: ``$MASKOPT_BENCH_DOCS`` or ``docs/benchmarks``."""
    return Path(os.environ.get("MASKOPT_BENCH_DOCS", ROOT / "docs" / "benchmarks"))


def use_scratch_results() -> Path:
    """For ``--quick``: without ``$MASKOPT_BENCH_RESULTS``, point the results (and, unless
    set, the docs) at a fresh temporary folder, so a smoke run never replaces recorded
    results; returns ``results_dir()``."""
    if "MASKOPT_BENCH_RESULTS" not in os.environ:
        scratch = Path(tempfile.mkdtemp(prefix="maskopt-bench-quick-"))
        os.environ["MASKOPT_BENCH_RESULTS"] = str(scratch / "results")
        os.environ.setdefault("MASKOPT_BENCH_DOCS", str(scratch / "docs"))
    results_dir().mkdir(parents=True, exist_ok=True)
    print(f"--quick: results in {results_dir()}, docs in {docs_dir()}", flush=True)
    return results_dir()


def save_results(name: str, data: dict) -> None:
    """Write ``data`` plus the machine description to ``results_dir()/<name>.json`` (atomically)."""
    results_dir().mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir() / f"{name}.json",
                      json.dumps({"machine": machine(), **data}, indent=2, default=str))


def load_results(name: str) -> dict | None:
    """``results_dir()/<name>.json`` as a dict, or None when that run has not been made."""
    path = results_dir() / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body`` (appended if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def render_page(page: str, sections: dict[str, str], text: str | None = None) -> str:
    """The docs page ``page`` (its current text, or ``text``) with every block of ``sections`` rewritten."""
    if text is None:
        path = docs_dir() / f"{page}.md"
        text = path.read_text() if path.exists() else f"# {page.capitalize()} benchmarks\n"
    for name, body in sections.items():
        text = replace_block(text, name, body)
    return text


def write_sections(page: str, sections: dict[str, str]) -> None:
    """Rewrite the blocks ``sections`` of ``docs_dir()/<page>.md``; the rest of the page is kept."""
    docs_dir().mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs_dir() / f"{page}.md", render_page(page, sections))


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table (cells converted with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def digits_teachers(d_in: int, k: int) -> tuple[torch.Tensor, list[nn.Module]]:
    """PCA-``d_in`` features (standardised, float32) of scikit-learn's ``load_digits``
    restricted to classes 0..k-1, and 3 ReLU-MLP teachers of widths 32/64/16 trained on
    them with Adam (200 full-batch steps, seeds 100-102)."""
    X, y = load_digits(return_X_y=True)
    keep = y < k
    Z = PCA(d_in, random_state=0).fit_transform(X[keep] / 16.0)
    Z = (Z - Z.mean(0)) / Z.std(0)
    xt, yt = torch.tensor(Z, dtype=torch.float32), torch.tensor(y[keep])
    teachers = []
    for s, width in enumerate((32, 64, 16)):
        torch.manual_seed(100 + s)
        t = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, k))
        opt = torch.optim.Adam(t.parameters(), lr=1e-2)
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(t(xt), yt).backward()
            opt.step()
        teachers.append(t)
    return xt, teachers
