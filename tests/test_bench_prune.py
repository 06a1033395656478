"""benchmarks/bench_prune.py: --quick then --report in temporary folders; the committed page
regenerates from its results; the goal verdicts on hand-made rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402
import bench_prune  # noqa: E402


def test_quick_then_report_writes_both_blocks(tmp_path):
    env = {**os.environ, "MASKOPT_BENCH_RESULTS": str(tmp_path / "results"),
           "MASKOPT_BENCH_DOCS": str(tmp_path / "docs")}
    for args in (["--quick"], ["--report"]):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_prune.py"), *args], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "docs" / "posttraining.md").read_text()
    for block in ("posttraining_layers", "posttraining_network"):
        assert f"<!-- {block}:start -->" in page
    assert "hierarchy+swap" in page and "python benchmarks/bench_prune.py --quick" in page


def test_goals_from_hand_made_rows(monkeypatch):
    rows = [{"sparsity": 0.9, "layer": "a", "method": m, "objective": v, "gap": g}
            for m, v, g in (("exact", 10.0, 0.0), ("hierarchy+swap", 10.05, 0.005), ("wanda", 12.0, 0.17))]
    rows += [{"sparsity": 0.9, "layer": "b", "method": m, "objective": v, "gap": g}
             for m, v, g in (("exact", 5.0, 0.2), ("hierarchy+swap", 4.0, 0.0))]
    monkeypatch.setattr(bench_prune, "load_results", lambda name: {"rows": rows})
    level, within = bench_prune.goals()
    assert level.verdict == "partly met" and level.measured == "best or level on 1 of 2 layer problems"
    assert within.verdict == "met" and within.measured == "90 %: 0.5 %"


def test_committed_page_regenerates():
    if "MASKOPT_BENCH_RESULTS" in os.environ or "MASKOPT_BENCH_DOCS" in os.environ:
        pytest.skip("checks the committed page against the committed results")
    page = _common.docs_dir() / "posttraining.md"
    if _common.load_results(bench_prune.NAME) is None:
        pytest.skip("no recorded run")
    assert _common.render_page(bench_prune.PAGE, bench_prune.sections()) == page.read_text()
