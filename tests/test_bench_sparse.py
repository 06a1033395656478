"""benchmarks/bench_sparse.py: --quick then --report in temporary folders; the committed page
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
import bench_sparse  # noqa: E402


def test_quick_then_report_writes_every_block(tmp_path):
    env = {**os.environ, "MASKOPT_BENCH_RESULTS": str(tmp_path / "results"),
           "MASKOPT_BENCH_DOCS": str(tmp_path / "docs")}
    for args in (["--quick"], ["--report"]):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sparse.py"), *args], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "docs" / "sparse_training.md").read_text()
    for block in ("sparse_mnist1d", "sparse_digits", "sparse_transfer"):
        assert f"<!-- {block}:start -->" in page
    for method in ("gmp", "acdc", "rigl", "set", "static", "cram", "cram dense", "one-shot magnitude"):
        assert f"| {method} |" in page
    assert "python benchmarks/bench_sparse.py --quick" in page


def _rows(values: dict) -> list[dict]:
    return [{"bench": b, "seed": 0, "method": m, "sparsity": s, "last": v, "val-chosen": v, "passes": 1.0}
            for (b, m, s), v in values.items()]


def test_goals_from_hand_made_rows(monkeypatch):
    values = {}
    for b in ("mnist1d", "digits"):
        values.update({(b, "gmp", 0.9): 70.0, (b, "gmp", 0.95): 68.0, (b, "acdc", 0.9): 71.0, (b, "acdc", 0.95): 67.0,
                       (b, "rigl", 0.9): 70.0, (b, "rigl", 0.95): 69.0, (b, "static", 0.95): 60.0,
                       (b, "cram dense", 0.0): 75.0, (b, "one-shot magnitude", 0.9): 60.0})
    values[("mnist1d", "cram", 0.9)], values[("digits", "cram", 0.9)] = 73.5, 64.0
    monkeypatch.setattr(bench_sparse, "load_results", lambda name: {"rows": _rows(values), "sparsities": [0.9, 0.95]})
    both, static, cram = bench_sparse.goals()
    assert both.verdict == "partly met"
    assert both.measured == "AC/DC +1.0 -1.0 / +1.0 -1.0; RigL +0.0 +1.0 / +0.0 +1.0 (mnist1d / digits; 90, 95 %)"
    assert static.verdict == "met" and static.measured == "+9.0 / +9.0 (mnist1d / digits; 95 %)"
    assert cram.verdict == "partly met"
    assert cram.measured == "-1.5 / -11.0 vs dense; +13.5 / +4.0 vs magnitude (mnist1d / digits)"


def test_committed_page_regenerates():
    if "MASKOPT_BENCH_RESULTS" in os.environ or "MASKOPT_BENCH_DOCS" in os.environ:
        pytest.skip("checks the committed page against the committed results")
    page = _common.docs_dir() / "sparse_training.md"
    if _common.load_results(bench_sparse.NAME) is None:
        pytest.skip("no recorded run")
    assert _common.render_page(bench_sparse.PAGE, bench_sparse.sections()) == page.read_text()
