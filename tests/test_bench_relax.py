"""benchmarks/bench_relax.py and its page: the overhead benchmark compares like with like (the
dense step runs the mask step's own optimizer), the held-out set is what its section says,
the quality summaries count proven optima only, ``--quick`` then ``--report`` run the whole
pipeline into scratch directories, and the committed page is what the JSON renders to."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import maskopt as mo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common as c  # noqa: E402
import bench_relax as b  # noqa: E402
import relax_report as rr  # noqa: E402


def tiny():
    def make():
        return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))

    torch.manual_seed(0)
    student, teacher = make(), make()
    x = torch.randn(16, 6)
    with torch.no_grad():
        target = teacher(x)
    return make, mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.5)), x, target


def optimizers_stepped(fn) -> list[tuple[type, dict]]:
    seen = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: seen.append((type(opt), dict(opt.defaults))))
    try:
        fn()
    finally:
        handle.remove()
    return seen


def without_lr(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "lr"}


@pytest.mark.parametrize("method", b.OVERHEAD)
def test_matched_dense_step_runs_the_mask_steps_optimizer(method):
    make, prob, x, target = tiny()
    mask = optimizers_stepped(lambda: mo.solve(prob, method=method, steps=3, verbose=False, device="cpu"))
    assert b.mask_optimizer(prob, method, "cpu") == mask[0]
    dense_opt = b.dense_optimizer(mask[0], "matched")
    dense = optimizers_stepped(lambda: b.dense_seconds_per_step(make(), x, target, 2, *dense_opt))
    assert len(dense) == 5  # 3 warm-up steps and 2 timed ones, all with the one optimizer
    cls, defaults = dense[0]
    assert cls is mask[0][0]
    assert without_lr(defaults) == without_lr(mask[0][1])  # foreach, fused, betas, momentum, ...
    assert defaults["lr"] == b.DENSE_LR
    assert b.describe_optimizer(*dense_opt, "cpu") == b.describe_optimizer(*mask[0], "cpu")


def test_adam_default_is_torch_adam_with_its_defaults():
    make, prob, x, target = tiny()
    dense_opt = b.dense_optimizer(b.mask_optimizer(prob, "sigmoid", "cpu"), "adam-default")
    (cls, defaults), *_ = optimizers_stepped(lambda: b.dense_seconds_per_step(make(), x, target, 1, *dense_opt))
    assert cls is torch.optim.Adam
    assert without_lr(defaults) == without_lr(torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults)
    with pytest.raises(ValueError, match="matched"):
        b.dense_optimizer(b.mask_optimizer(prob, "sigmoid", "cpu"), "plain")


def test_implementation_and_description():
    adam = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1, fused=True).defaults
    assert b.implementation(adam, "cpu") == b.implementation(adam, "cuda") == "fused"
    assert b.describe_optimizer(torch.optim.Adam, adam, "cpu") == "Adam(fused=True) fused"
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5, momentum=0.9).defaults
    assert b.describe_optimizer(torch.optim.SGD, sgd, "cpu") == "SGD(momentum=0.9) for-loop"
    assert b.implementation(sgd, "cuda") == "foreach"
    assert b.implementation({**sgd, "foreach": True}, "cpu") == "foreach"
    assert b.implementation({**sgd, "foreach": False}, "cuda") == "for-loop"
    # the CPU default agrees with torch's own choice
    choose = getattr(importlib.import_module("torch.optim.optimizer"), "_default_to_fused_or_foreach", None)
    if choose is not None:
        fused, foreach = choose([torch.zeros(1)], False, use_fused=False)
        assert (fused, foreach) == (False, False) and b.implementation(sgd, "cpu") == "for-loop"


@pytest.fixture
def one_thread():
    """Tiny tensors: on a shared 2-core machine a second torch thread only contends."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_heldout_set_is_what_its_section_says(one_thread):
    inst = b.heldout_instances()
    names = [n for n, _ in inst]
    assert len(names) == len(set(names))
    used_before = set(range(10)) | set(range(100, 110))  # the quality part's seeds
    seeds = [int(n.rsplit("-", 1)[1]) for n in names]
    assert len(seeds) == len(set(seeds)) and not used_before & set(seeds) and min(seeds) >= 10_000
    by_name = dict(inst)
    for family, n_in, n, n_out, density, loss, (first, stop) in b.HELDOUT["layerwise"]:
        for seed in range(first, stop):
            prob = by_name[f"{family}-{seed}"]
            assert isinstance(prob, mo.LayerwiseProblem)
            assert tuple(prob.inputs.shape) == (n, n_in) and tuple(prob.weight.shape) == (n_out, n_in)
            assert prob.allocation.total == n_out * round(density * n_in)
            assert prob.loss == loss
    assert "in 24 / N 48 / 2 outputs / k 12" in b.heldout_setup(b.HELDOUT)
    assert "in 48 / N 96 / 2 outputs / k 24" in b.heldout_setup(b.HELDOUT)
    nets = [p for n, p in inst if n.startswith("network")]
    row0, size = b.HELDOUT["network_row0"], b.HELDOUT["network_samples"]
    assert len(nets) == len(range(*b.HELDOUT["network_seeds"]))
    x, _ = b._digits_teachers()  # the same digits features the instances were built from (cached)
    # rows 0-159 belong to the quality part's networks; the held-out ones start after them
    assert row0 >= 160 and row0 + size * len(nets) <= x.shape[0]
    for i, p in enumerate(nets):
        assert torch.equal(p.inputs, x[row0 + size * i : row0 + size * (i + 1)])


def test_recorded_heldout_set_is_the_scripts():
    """The held-out record's own description of its set is the set the script draws."""
    data = rr.load_results("relax_heldout") if "MASKOPT_BENCH_RESULTS" not in os.environ else None
    if data is None:
        pytest.skip("no held-out record")
    assert data["instances"] == b.HELDOUT
    assert len(data["rows"]) == len(b.heldout_instances())


def rows_for_summary():
    gaps = {"magnitude": 1.0, "sigmoid": 0.05, "anneal": 0.02, "ste": 0.03, "hierarchy": 0.0,
            "hierarchy+polish": 0.0}
    rows = []
    for i, h in enumerate((0.0, 0.004, 0.08)):
        row = {"instance": f"in24-l1-{i}", "exact_status": "optimal"}
        for label, g in gaps.items():
            row[label], row[f"{label} time"] = (h if label == "hierarchy" else g), 1.0
        rows.append(row)
    rows.append({"instance": "in48-l2-9", "exact_status": "time_limit", "optimum": 1.0, "hierarchy": 9.0})
    rows.append({"instance": "network-9", "exact_status": "error: CertificateError: bound above objective"})
    return rows


def test_summaries_count_proven_optima_only():
    rows = rows_for_summary()
    summary = b.summarize_quality(rows, ["in24-l1", "in48-l2", "network"], worst_instance=True)
    assert {r["instances"] for r in summary} == {"in24-l1", "all"}  # families with nothing proven are left out
    hier = [r for r in summary if r["method"] == "hierarchy"]
    assert all(r["n"] == 3 for r in hier)
    assert hier[0]["median gap %"] == pytest.approx(0.4) and hier[0]["worst gap %"] == pytest.approx(8.0)
    assert hier[0]["worst instance"] == "in24-l1-2"
    assert [r["instance"] for r in b.not_proven(rows)] == ["in48-l2-9", "network-9"]
    text = b.heldout_text(rows, 600)
    assert "limit 600 s" in text and "3 of 5 exact optima" in text
    assert "in48-l2-9 (time_limit)" in text and "network-9 (error" in text
    assert "median gap 0.40 %, worst 8.00 % (in24-l1-2)" in text and "**median met, worst missed**" in text


@pytest.mark.parametrize(("h", "state"), [((0.0, 0.004, 0.03), "met"), ((0.02, 0.03, 0.04), "worst met, median missed"),
                                          ((0.02, 0.03, 0.09), "not met")])
def test_verdict_against_the_goal(h, state):
    rows = []
    for i, g in enumerate(h):
        rows.append({"instance": f"x-{i}", "exact_status": "optimal",
                     **{label: (g if label == "hierarchy" else 0.0) for label in b.LABELS}})
    assert f"**{state}**" in b.verdict(rows)


# ---------------------------------------------------------------- the page and its goals


def overhead_record(ratios: dict[str, list[float]], threads=2, malloc=None, dense="matched") -> dict:
    return {"machine": "m", "threads": threads, "malloc": malloc or {}, "dense_optimizer": dense,
            "settings": {"repeats": 3}, "command": "c",
            "rows": [{"student": f"{s} x", "weights": 1, "steps": 1, "method": m, "dense optimizer": "d",
                      "mask optimizer": "k", "dense s/step": 1.0, "mask s/step": r, "mask / dense": r}
                     for s, rs in ratios.items() for m, r in zip(b.OVERHEAD, rs)]}


def test_overhead_goal_counts_matched_cells_only():
    records = [("a", overhead_record({"MLP": [1.6, 1.7, 1.8], "CNN": [1.4, 1.5, 1.51]})),
               ("b", overhead_record({"MLP": [1.2, 1.2, 1.2], "CNN": [1.2, 1.2, 1.2]}, dense="adam-default"))]
    measured, verdict = rr.overhead_measured(records)
    assert measured == "MLP 1.60–1.80× (0 of 3 cells ≤ 1.5×); CNN 1.40–1.51× (2 of 3 cells ≤ 1.5×)"
    assert verdict == "partly met"
    assert rr.overhead_measured([("c", overhead_record({"MLP": [1.0, 1.1, 1.5]}))])[1] == "met"
    assert rr.overhead_measured([("d", overhead_record({"MLP": [1.6, 2.0, 1.51]}))])[1] == "not met"


def test_overhead_ratio_table_labels_settings_and_repeats():
    records = [("a", overhead_record({"MLP": [1.6, 1.7, 1.8]})), ("b", overhead_record({"MLP": [1.6, 1.7, 1.8]})),
               ("c", overhead_record({"MLP": [1.0, 1.1, 1.2]}, threads=1, malloc={"MALLOC_TRIM_THRESHOLD_": "1"}))]
    text = rr.ratio_table(records)
    assert "| 2 threads, default malloc, dense step: the mask step's optimizer | 3 | 1.60 | 1.70 | 1.80 |" in text
    assert "the mask step's optimizer (repeat 2) |" in text
    assert "| 1 thread, tuned glibc malloc, dense step: the mask step's optimizer | 3 | 1.00 |" in text


@pytest.mark.parametrize(("values", "verdict"), [([0.001, 0.004], "met"), ([0.02, 0.03], "not met"),
                                                  ([0.001, 0.02], "partly met")])
def test_quality_goal_across_records(values, verdict):
    measured, got = rr.across([(f"set {i}", v) for i, v in enumerate(values)], rr.GOAL_MEDIAN)
    assert got == verdict and measured.startswith(f"set 0 {100 * values[0]:.2f} %")


def test_goals_point_at_blocks_of_the_page():
    blocks = rr.sections()
    goals = rr.goals()
    assert goals and all(g.section in blocks for g in goals)
    assert all(g.area == rr.AREA for g in goals)


def test_real_page_regenerates_byte_for_byte():
    if "MASKOPT_BENCH_RESULTS" in os.environ or "MASKOPT_BENCH_DOCS" in os.environ:
        pytest.skip("checks the committed page against the committed results")
    page = c.docs_dir() / f"{b.PAGE}.md"
    assert c.render_page(b.PAGE, b.sections()) == page.read_text()
    assert b.sections() == b.sections()  # deterministic
    assert set(b.sections()) == {"relax_heldout", "relax_quality", "relax_overhead_cpu", "relax_overhead_cuda",
                                 "relax_scale"}


def run_script(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_quick_then_report_into_scratch_dirs(tmp_path):
    env = {**os.environ, "MASKOPT_BENCH_RESULTS": str(tmp_path / "results"),
           "MASKOPT_BENCH_DOCS": str(tmp_path / "docs")}
    before = {p.name: p.stat().st_mtime_ns for p in (ROOT / "benchmarks" / "results").glob("relax_*.json")}
    quick = run_script("bench_relax.py", "--quick", env=env)
    assert quick.returncode == 0, quick.stderr[-2000:]
    assert {p.name for p in (tmp_path / "results").iterdir()} == {
        "relax_quality.json", "relax_heldout.json", "relax_overhead.json", "relax_scale.json"}
    report = run_script("bench_relax.py", "--report", env=env)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "docs" / "relaxations.md").read_text()
    for block in ("relax_heldout", "relax_quality", "relax_overhead_cpu", "relax_scale"):
        assert f"<!-- {block}:start -->" in page and f"<!-- {block}:end -->" in page
    assert "relax_overhead_cuda" not in page  # no CUDA record in the scratch results
    assert "python benchmarks/bench_relax.py --quick" in page
    after = {p.name: p.stat().st_mtime_ns for p in (ROOT / "benchmarks" / "results").glob("relax_*.json")}
    assert after == before  # the real results are untouched
