"""Shared helpers of the benchmark scripts: the machine description and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import highspy

from maskopt.report import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """CPU architecture, cores, Python and HiGHS versions, OS."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, HiGHS {highspy.Highs().version()}, {platform.platform()}")


def replace_section(name: str, body: str) -> None:
    """Write ``body`` into BENCHMARKS.md between the markers of section ``name`` (appended
    if absent); the rest of the file is kept."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body}\n{end}"
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    atomic_write_text(path, text)
