"""benchmarks/bench_relax.py's helpers: the overhead benchmark compares like with like (the
dense step runs the mask step's own optimizer), the held-out set is what its section says,
and the quality summaries count proven optima only. The benchmark itself is not run here."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import maskopt as mo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_relax as b  # noqa: E402


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


def test_heldout_set_is_what_its_section_says():
    inst = b.heldout_instances()
    names = [n for n, _ in inst]
    assert len(names) == len(set(names))
    used_before = set(range(10)) | set(range(100, 110))  # the quality part's seeds
    seeds = [int(n.rsplit("-", 1)[1]) for n in names]
    assert len(seeds) == len(set(seeds)) and not used_before & set(seeds) and min(seeds) >= 10_000
    by_name = dict(inst)
    for family, n_in, n, n_out, density, loss, family_seeds in b.HELDOUT_LAYERWISE:
        for seed in family_seeds:
            prob = by_name[f"{family}-{seed}"]
            assert isinstance(prob, mo.LayerwiseProblem)
            assert tuple(prob.inputs.shape) == (n, n_in) and tuple(prob.weight.shape) == (n_out, n_in)
            assert prob.allocation.total == n_out * round(density * n_in)
            assert prob.loss == loss
    assert "in 24 / N 48 / 2 outputs / k 12" in b.heldout_description()
    assert "in 48 / N 96 / 2 outputs / k 24" in b.heldout_description()
    nets = [p for n, p in inst if n.startswith("network")]
    assert len(nets) == len(b.HELDOUT_NETWORK_SEEDS)
    x, _ = b.digits_teachers(4, 3)
    # rows 0-159 belong to the quality part's networks; the held-out ones start after them
    assert b.HELDOUT_ROW0 >= 160 and b.HELDOUT_ROW0 + 16 * len(nets) <= x.shape[0]
    for i, p in enumerate(nets):
        assert torch.equal(p.inputs, x[b.HELDOUT_ROW0 + 16 * i : b.HELDOUT_ROW0 + 16 * i + 16])


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
    assert "3 of 5 exact optima" in text and "in48-l2-9 (time_limit)" in text and "network-9 (error" in text
    assert "median gap 0.40 %, worst 8.00 % (in24-l1-2)" in text and "**median met, worst missed**" in text


@pytest.mark.parametrize(("h", "state"), [((0.0, 0.004, 0.03), "met"), ((0.02, 0.03, 0.04), "worst met, median missed"),
                                          ((0.02, 0.03, 0.09), "not met")])
def test_verdict_against_the_goal(h, state):
    rows = []
    for i, g in enumerate(h):
        rows.append({"instance": f"x-{i}", "exact_status": "optimal",
                     **{label: (g if label == "hierarchy" else 0.0) for label in b.LABELS}})
    assert f"**{state}**" in b.verdict(rows)
