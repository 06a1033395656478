"""The exact-solver benchmark scripts (page docs/benchmarks/exact.md): every script's
``--quick`` and ``--report`` run end to end into temporary folders, the committed page is
exactly what the recorded results render, and the summaries and goal verdicts are checked on
small hand-made rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402
import bench_bound_widths  # noqa: E402
import bench_exact_layerwise  # noqa: E402
import bench_exact_network  # noqa: E402
import bench_exact_rows  # noqa: E402
import exact_common  # noqa: E402

SCRIPTS = (bench_exact_layerwise, bench_exact_network, bench_bound_widths, bench_exact_rows)


def run_script(script: str, args: list[str], env: dict) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


@pytest.fixture
def bench_env(tmp_path, monkeypatch):
    """Results and docs in temporary folders, for the subprocesses and for this process."""
    dirs = {"MASKOPT_BENCH_RESULTS": str(tmp_path / "results"), "MASKOPT_BENCH_DOCS": str(tmp_path / "docs")}
    for k, v in dirs.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **dirs}


def recorded() -> dict[str, int]:
    """Modification times of the recorded results of this page."""
    files = [p for p in (ROOT / "benchmarks" / "results").glob("*.json") if p.name.startswith(("exact_", "bound_"))]
    return {p.name: p.stat().st_mtime_ns for p in files}


def check_quick_then_report(module, script: str, quick_args: list[str], blocks: list[str], env: dict) -> None:
    before = recorded()
    run_script(script, ["--quick", *quick_args], env)
    run_script(script, ["--report"], env)
    page = (Path(env["MASKOPT_BENCH_DOCS"]) / "exact.md").read_text()
    for name in blocks:
        assert f"<!-- {name}:start -->" in page and f"<!-- {name}:end -->" in page
        assert f'<a id="{name}"></a>' in page
    assert "Command: `python benchmarks/" in page
    assert module.PAGE == "exact"
    first = module.sections()
    assert set(first) == set(blocks) and module.sections() == first  # deterministic, from the JSON only
    for goal in module.goals():
        assert goal.section in first
    assert recorded() == before  # the recorded results are untouched


def test_layerwise_quick_and_report(bench_env):
    check_quick_then_report(bench_exact_layerwise, "bench_exact_layerwise.py", [], ["exact_layerwise"], bench_env)


def test_network_quick_and_report_with_section_name(bench_env):
    check_quick_then_report(bench_exact_network, "bench_exact_network.py", ["--section", "exact_network_planted32"],
                            ["exact_network_planted32"], bench_env)


def test_bound_widths_quick_and_report(bench_env):
    check_quick_then_report(bench_bound_widths, "bench_bound_widths.py", [], ["bound_widths"], bench_env)


def test_rows_quick_every_part(bench_env):
    check_quick_then_report(bench_exact_rows, "bench_exact_rows.py", [],
                            ["exact_rows", "exact_rows_compare", "exact_rows_coupled", "exact_rows_dask"], bench_env)


def test_network_section_must_keep_its_prefix(bench_env):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_exact_network.py"), "--quick",
                          "--section", "other"], env=bench_env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "exact_network" in out.stderr


@pytest.mark.parametrize("module", SCRIPTS, ids=lambda m: m.__name__)
def test_committed_page_is_what_the_results_render(module, monkeypatch):
    monkeypatch.delenv("MASKOPT_BENCH_RESULTS", raising=False)
    monkeypatch.delenv("MASKOPT_BENCH_DOCS", raising=False)
    sections = module.sections()
    assert sections  # every block has its recorded results
    page = ROOT / "docs" / "benchmarks" / f"{module.PAGE}.md"
    assert _common.render_page(module.PAGE, sections) == page.read_text()


def test_recorded_goals(monkeypatch):
    monkeypatch.delenv("MASKOPT_BENCH_RESULTS", raising=False)
    rows = {g.goal: g for m in SCRIPTS for g in m.goals()}
    verdicts = [g.verdict for g in rows.values()]
    assert len(rows) <= 12 and set(verdicts) <= set(_common.VERDICTS)
    assert rows["L1 at in = 128 proven optimal in < 30 s on every seed"].verdict == "met"
    assert rows["maskopt / direct highspy time at in = 128 < 1.5x"].verdict == "met"
    tight = [g for g in rows.values() if g.goal.startswith("Bound tightening")]
    assert [g.verdict for g in tight] == ["not met"] and tight[0].section == "exact_network_planted32"
    assert rows["Layer 1 at 90% sparsity certified row by row in ≤ 15 min"].verdict == "met"
    assert rows["Layer 1 at 50% sparsity certified row by row in ≤ 15 min"].verdict == "not met"


def test_quick_without_results_folder_goes_to_a_temporary_one(monkeypatch):
    for var in ("MASKOPT_BENCH_RESULTS", "MASKOPT_BENCH_DOCS"):
        monkeypatch.setenv(var, "")  # recorded, so the teardown restores the variable's state
        monkeypatch.delenv(var)
    path = _common.use_scratch_results()
    try:
        assert path != ROOT / "benchmarks" / "results" and path.exists() and not any(path.iterdir())
    finally:
        path.rmdir()


def test_formatting_helpers():
    assert exact_common.spread([3.0, 1.0, 2.0]) == "2 [1, 3]"
    assert exact_common.statuses(["optimal", "numerical", "optimal"]) == "1 numerical, 2 optimal"
    assert exact_common.fmt(0.000123456) == "0.000123" and exact_common.fmt(None) == "-" and exact_common.fmt(7) == "7"
    assert exact_common.command_text("benchmarks/x.py --a") == "python benchmarks/x.py --a"
    assert exact_common.bounds_below([(1.0, 1.0), (0.5, 2.0), (1.0 + 1e-9, 1.0)])
    assert not exact_common.bounds_below([(1.1, 1.0)])


def layerwise_row(d, seed, time, ratio, status="optimal"):
    return {"in": d, "seed": seed, "l1_status": status, "l1_time": time, "ratio": ratio, "l2_status": "optimal",
            "l2_time": 10.0, "l2_gap": 0.0, "direct_time": time / ratio, "l1_build": 0.1, "l2_rounds": 3}


def test_layerwise_goal_verdicts():
    fast = [layerwise_row(128, s, 5.0 + s, 1.1) for s in range(3)]
    goals = bench_exact_layerwise.l1_goals(fast)
    assert [g.verdict for g in goals] == ["met", "met"]
    assert goals[0].measured == "3/3 optimal, median 6.0 s, worst 7.0 s"
    one_slow = fast[:2] + [layerwise_row(128, 2, 40.0, 1.6)]
    assert [g.verdict for g in bench_exact_layerwise.l1_goals(one_slow)] == ["partly met", "partly met"]
    slow = [layerwise_row(128, s, 300.0, 2.0, "time_limit") for s in range(3)]
    assert [g.verdict for g in bench_exact_layerwise.l1_goals(slow)] == ["not met", "not met"]
    assert bench_exact_layerwise.l1_goals([layerwise_row(64, 0, 1.0, 1.0)]) == []
    summary = bench_exact_layerwise.summarize(fast)
    assert summary[0]["L1 status"] == "3 optimal" and summary[0]["ratio, median [min, max]"] == "1.1 [1.1, 1.1]"


def net_row(inst, n, bounds, time, status="optimal", seed=0):
    return {"instance": inst, "student": "8-8-3", "N": n, "seed": seed, "bounds": bounds, "time": time,
            "status": status, "nodes": 1, "gap": 0.0 if status == "optimal" else 1.0}


def test_network_speedups_and_tightening_goal():
    rows = [net_row("planted", 16, "global", 100.0), net_row("planted", 16, "interval", 10.0),
            net_row("planted", 32, "global", 300.0), net_row("planted", 32, "interval", 600.0, "time_limit"),
            net_row("digits", 64, "global", 90.0), net_row("digits", 64, "interval", 15.0)]
    speed = bench_exact_network.speedup_rows(rows)
    assert speed[0]["global/interval time"] == "10"
    assert speed[1]["global/interval time"] == "- (1 only interval hit the limit)"
    goal = bench_exact_network.tightening_goal({"a": {"time_limit": 600.0, "rows": rows}})
    assert goal.verdict == "partly met" and goal.section == "a"  # digits 6x, planted N = 32 0x
    assert "planted 8-8-3 N = 32: interval 0.00x" in goal.measured
    assert "digits 8-8-3 N = 64: interval 6.00x" in goal.measured
    assert bench_exact_network.tightening_goal({"a": {"time_limit": 120.0, "rows": rows}}) is None


def test_network_seeds_goal_counts_proofs():
    rows = [net_row("planted", 16, "global", 10.0, seed=0), net_row("planted", 16, "interval", 20.0, seed=0),
            net_row("planted", 16, "global", 120.0, "time_limit", seed=1),
            net_row("planted", 16, "interval", 5.0, seed=1)]
    goal = bench_exact_network.seeds_goal({"time_limit": 120.0, "rows": rows})
    assert goal.verdict == "no goal"
    assert goal.measured == "planted: N 16: 0.50x (interval proves 2/2, big-M 1/2)"
    assert bench_exact_network.title({"time_limit": 120.0, "threads": 1, "rows": rows}) == \
        "Network MILP bound modes: planted 8-8-3, N = 16, 120 s limit, 2 student seeds, 1 HiGHS thread"


def test_bound_widths_summary():
    rows = [{"instance": "a", "bounds": "interval", "stable": 4, "median shrink %": 0.0, "max shrink %": 0.0},
            {"instance": "a", "bounds": "lp", "stable": 5, "median shrink %": 0.01, "max shrink %": 0.5},
            {"instance": "b", "bounds": "interval", "stable": 2, "median shrink %": 0.0, "max shrink %": 0.0},
            {"instance": "b", "bounds": "milp", "stable": 2, "median shrink %": 0.0, "max shrink %": 0.04}]
    assert bench_bound_widths.tightening_summary(rows) == "width shrink: median 0.01 %, max 0.5 %; stable neurons +1"


def rows_setting(layer, sparsity, loss, rows, proven, wall, gap_median=1e-5, gap_max=1e-4):
    return {"layer": layer, "sparsity": sparsity, "loss": loss, "rows": rows, "proven": proven, "wall": wall,
            "row_gap_median": gap_median, "row_gap_max": gap_max}


def test_rows_goal_verdicts():
    settings = [rows_setting(1, 0.9, "l2", 500, 500, 200.0), rows_setting(1, 0.9, "l1", 500, 500, 950.0),
                rows_setting(1, 0.5, "l2", 500, 499, 100.0), rows_setting(2, 0.9, "l2", 60, 60, 300.0)]
    g90 = bench_exact_rows.layer1_goal(settings, 500, 0.9)
    assert g90.verdict == "partly met" and g90.measured.startswith("L2 200 s (500/500 rows proven), L1 950 s")
    assert bench_exact_rows.layer1_goal(settings, 500, 0.5).verdict == "not met"  # one row unproven
    assert bench_exact_rows.layer1_goal(settings, 500, 0.8) is None
    assert bench_exact_rows.layer2_goal(settings, 500).verdict == "partly met"  # 60 of 500 rows
    assert bench_exact_rows.layer2_goal(settings, 60).verdict == "met"
    worse = [rows_setting(2, 0.9, "l2", 60, 60, 300.0, gap_median=0.02)]
    assert bench_exact_rows.layer2_goal(worse, 60).verdict == "not met"
