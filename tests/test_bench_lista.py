"""benchmarks/bench_lista.py and its page: ``--quick`` then ``--report`` run the whole
pipeline into scratch directories, the committed page is what the JSON renders to, and the
goal verdicts and FISTA ratios follow from hand-made records."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common as c  # noqa: E402
import bench_lista as b  # noqa: E402
import lista_report as lr  # noqa: E402


def record(method: str, final_db: float, snr: float = math.inf, cpu_s: float = 60.0, **extra) -> dict:
    r = {"method": method, "layers": 4, "snr_db": snr, "m": 20, "n": 40, "seed": 0, "test_size": 10,
         "nmse_db": [-1.0, -2.0, -3.0, final_db], "nmse_db_per_sample": [-1.0, -2.0, -3.0, final_db],
         "prepare_time_s": cpu_s, "prepare_cpu_s": cpu_s, "settings": {"lam": 0.1}, "machine": "m"}
    return {**r, **extra}


def test_names_and_commands():
    assert lr.name("alista", math.inf) == "lista_alista_snrinf" and lr.name("lasso", 40.0) == "lista_lasso_snr40"
    assert lr.command(record("alista", -5.0)) == "train --method alista --snr inf"
    assert lr.command(record("alista (trained noise-free)", -5.0, snr=40.0)) == "transfer --method alista --snr 40"
    assert lr.command(record("lasso", -5.0, snr=40.0, command="lasso --snr 40")) == "lasso --snr 40"


def test_fista_targets_and_ratio_range():
    curves = {"continuation decay=0.99": [-1.0 * k for k in range(1, 401)],
              "fixed lam=0.0001": [-0.5 * k for k in range(1, 401)]}
    clean = [record("alista", -100.0), record("hyperlista", -50.0), record("fista", -3.0)]
    targets = lr.fista_targets(clean, {"curves": curves, "max_iters": 400})
    assert set(targets) == {"alista", "hyperlista"}  # the classical solvers are not matched
    assert targets["alista"]["continuation"] == (100, "continuation decay=0.99")
    assert targets["alista"]["fixed"] == (200, "fixed lam=0.0001")
    assert lr.ratio_range(targets, "continuation", 4) == (12.5, 25.0)
    assert lr.match_cell((None, None), 4, 400) == "> 400 (×>100)"


def goals_by_text(goals):
    return {g.goal: g for g in goals}


def test_noise_free_goal_verdicts():
    clean = {"alista": record("alista", -70.0, cpu_s=600.0), "lista-cpss": record("lista-cpss", -45.0),
             "hyperlista": record("hyperlista", -66.5, cpu_s=2000.0)}
    targets = {"alista": {"continuation": (500, "c"), "fixed": (800, "f")},
               "hyperlista": {"continuation": (420, "c"), "fixed": (900, "f")}}
    goals = goals_by_text(lr.noise_free_goals(clean, targets))
    assert goals["alista ≤ -60 dB noise-free"].verdict == "met"
    assert goals["lista-cpss ≤ -50 dB noise-free"].verdict == "not met"
    hyper = goals["hyperlista (non-oracle) within 3 dB of alista"]
    assert (hyper.measured, hyper.verdict) == ("+3.50 dB", "not met")
    prep = next(g for g in goals.values() if "CPU-minutes" in g.goal)
    assert prep.measured.startswith("10.0 / 1.0 / 33.3") and prep.verdict == "not met"
    fista = next(g for g in goals.values() if g.goal.startswith("FISTA"))
    assert fista.measured == "105–125× (best fixed λ: 200–225×)" and fista.verdict == "met"
    assert all(g.section == "lista_noise_free" for g in goals.values())


def test_snr40_goal_verdicts():
    floor = {"noise_floor_db": -45.0, "snr_db": 40.0}
    noisy = [record("alista", -42.0, **floor), record("hyperlista", -44.5, **floor),
             record("fista", -10.0, **floor),  # a classical solver: no goal
             record("lasso solution", -37.0, command="lasso --snr 40", **floor),
             record("hyperlista + two-stage LS debiasing", -44.2, command="refit --snr 40", **floor)]
    models, refit = lr.snr40_goals(noisy)
    assert models.measured == "alista +3.00 dB; hyperlista +0.50 dB" and models.verdict == "met"
    assert refit.measured == "+0.80 dB" and refit.verdict == "met" and refit.section == "lista_snr40"


def test_real_page_regenerates_byte_for_byte():
    if "MASKOPT_BENCH_RESULTS" in os.environ or "MASKOPT_BENCH_DOCS" in os.environ:
        pytest.skip("checks the committed page against the committed results")
    page = c.docs_dir() / f"{b.PAGE}.md"
    assert c.render_page(b.PAGE, b.sections()) == page.read_text()
    assert b.sections() == b.sections()
    assert set(b.sections()) == {"lista_noise_free", "lista_snr40"}
    assert all(g.section in b.sections() for g in b.goals())


def test_quick_then_report_into_scratch_dirs(tmp_path):
    env = {**os.environ, "MASKOPT_BENCH_RESULTS": str(tmp_path / "results"),
           "MASKOPT_BENCH_DOCS": str(tmp_path / "docs")}
    real = ROOT / "benchmarks" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in real.glob("lista_*")}
    for args in (["--quick"], ["--report"]):
        run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_lista.py"), *args], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    results = {p.name for p in (tmp_path / "results").iterdir()}
    assert {"lista_alista_snrinf.json", "lista_hyperlista_snr40_refit.json", "lista_lasso_snr40.json",
            "lista_fista_iters.json", "lista_alista_snr40_transfer.json", "lista_nmse.png"} <= results
    page = (tmp_path / "docs" / "unrolled.md").read_text()
    for block in ("lista_noise_free", "lista_snr40"):
        assert f"<!-- {block}:start -->" in page and f"<!-- {block}:end -->" in page
    assert "Problem: A 20×40" in page
    assert {p.name: p.stat().st_mtime_ns for p in real.glob("lista_*")} == before  # the real results are untouched
