"""benchmarks/bench_distill_overhead.py: --quick then --report in temporary folders; the goal
verdicts on hand-made rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_distill_overhead as bench  # noqa: E402


def test_quick_then_report_writes_the_cpu_block(tmp_path):
    env = {**os.environ, "MASKOPT_BENCH_RESULTS": str(tmp_path / "results"),
           "MASKOPT_BENCH_DOCS": str(tmp_path / "docs"), "OMP_NUM_THREADS": "1"}
    for args in (["--quick"], ["--report"]):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_distill_overhead.py"), *args], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "results" / "distill_overhead_cpu.json").exists()
    page = (tmp_path / "docs" / "relaxations.md").read_text()
    assert "<!-- distill_overhead_cpu:start -->" in page and "full checks" in page
    assert "distill_overhead_cuda" not in page  # no CUDA record in the scratch results


def test_goals_from_hand_made_rows(monkeypatch):
    def rows(*ratios):
        return {"rows": [{"student": s, "method": "sigmoid", "checks": c, "mask / dense": r} for s, c, r in ratios],
                "settings": {"batch_size": 256, "inputs": 4096}}

    records = {"distill_overhead_cpu": rows(("MLP", "default", 1.2), ("MLP", "full checks", 1.9)),
               "distill_overhead_cuda": rows(("ResNet-20", "default", 1.25), ("VGG-16", "default", 1.4),
                                             ("VGG-16", "full checks", 2.3))}
    monkeypatch.setattr(bench, "load_results", records.get)
    cpu, cuda = bench.goals()
    assert cpu.verdict == "met" and cpu.measured.startswith("1/1 cells; worst 1.20×")
    assert cuda.verdict == "partly met" and cuda.measured == "1/2 cells; worst 1.40× (VGG-16, sigmoid)"
