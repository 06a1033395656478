"""Shared helpers of the benchmark scripts: the machine description and BENCHMARKS.md sections."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import highspy
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from torch import nn

from maskopt.report import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """CPU architecture, cores, Python, torch (and the CPU kernels it picked: results of long
    float32 runs depend on them), HiGHS, OS."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
            f"HiGHS {highspy.Highs().version()}, {platform.platform()}")


def save_results(name: str, data: dict) -> None:
    """Write ``data`` plus the machine description to ``benchmarks/results/<name>.json`` (atomically)."""
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    atomic_write_text(ROOT / "benchmarks" / "results" / f"{name}.json",
                      json.dumps({"machine": machine(), **data}, indent=2, default=str))


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
