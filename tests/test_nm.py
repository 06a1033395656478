"""N:M budgets end to end: every registered method returns a mask with at most N of every M
consecutive weights of a row; the exact solvers equal brute force under N:M."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import maskopt as mo

# few steps/epochs; keyed by method name (a method missing here runs at its defaults)
FAST = {"sigmoid": {"steps": 6}, "anneal": {"steps": 6}, "ste": {"steps": 6}, "hierarchy": {"steps": 3},
        "imp": {"epochs": 1, "rounds": 2}, "kstarts": {"k": 2, "epochs": 1}, "dissipating": {"epochs": 1},
        "kstarts_dissipating": {"k": 2, "epochs": 1}, "synflow": {"iterations": 5}, "exact": {"time_limit": 60.0}}


@pytest.fixture(scope="module")
def problems() -> list[mo.Problem]:
    """A tiny N:M LayerwiseProblem (tried first) and a tiny N:M DistillProblem."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 8, generator=gen)
    w = torch.randn(2, 8, generator=gen)
    layer = mo.LayerwiseProblem(x, w, x @ (w * (torch.rand(2, 8, generator=gen) < 0.5)).T, mo.Budget(nm=(2, 4)))
    torch.manual_seed(0)
    student, teacher = (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)) for _ in range(2))
    net = mo.DistillProblem(student, [teacher], torch.randn(12, 4, generator=gen), mo.Budget(nm=(2, 4)),
                            labels=torch.randint(0, 2, (12,), generator=gen))
    return [layer, net]


def pattern_holds(masks: mo.MaskSet, n: int, m: int) -> bool:
    return all(bool((mask.reshape(mask.shape[0], -1, m).sum(-1) <= n).all()) for mask in masks.values())


@pytest.mark.parametrize("method", mo.methods())
def test_every_method_keeps_the_pattern(method, problems):
    spec = mo.method_spec(method)
    taken = [p for p in problems if spec.accepts(p)]
    if not taken:
        pytest.skip(f"{method} takes neither N:M problem: {[spec.refusal(p) for p in problems]}")
    res = mo.solve(taken[0], method=method, verbose=False, **FAST.get(method, {}))
    assert pattern_holds(res.masks, 2, 4) and taken[0].allocation.violations(res.masks) == []


def enumerate_nm(problem: mo.Problem, n: int, m: int) -> tuple[float, dict]:
    """The best mask with at most N kept in every group of M, by evaluating every choice: an
    oracle that shares no code with the solvers."""
    shapes = problem.mask_shapes()
    groups = sum(torch.Size(s).numel() // m for s in shapes.values())
    choices = [c for k in range(n + 1) for c in itertools.combinations(range(m), k)]
    best, best_masks = float("inf"), None
    for pick in itertools.product(choices, repeat=groups):
        flat = torch.zeros(groups, m, dtype=torch.bool)
        for g, kept in enumerate(pick):
            flat[g, list(kept)] = True
        masks, offset = {}, 0
        for name, shape in shapes.items():
            size = torch.Size(shape).numel()
            masks[name] = flat.reshape(-1)[offset: offset + size].reshape(shape)
            offset += size
        value = mo.evaluate(problem, masks)
        if value < best:
            best, best_masks = value, masks
    return best, best_masks


def test_exact_layerwise_equals_enumeration():
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(9, 8, generator=gen), torch.randn(2, 8, generator=gen)
    for loss in ("l1", "l2"):
        prob = mo.LayerwiseProblem(x, w, torch.randn(9, 2, generator=gen), mo.Budget(nm=(2, 4)), loss=loss)
        res = mo.solve(prob, method="exact", gap=0.0, time_limit=60.0)
        best, _ = enumerate_nm(prob, 2, 4)
        assert res.status == "optimal" and res.objective == pytest.approx(best, rel=1e-7, abs=1e-9)
        assert res.bound <= best + 1e-6 * abs(best) and pattern_holds(res.masks, 2, 4)


def test_exact_network_equals_enumeration():
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(3)
    student, teacher = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2)), nn.Linear(4, 2)
    prob = mo.DistillProblem(student, [teacher], torch.randn(6, 4, generator=gen), mo.Budget(nm=(1, 2)))
    res = mo.solve(prob, method="exact", gap=0.0, time_limit=120.0)
    best, _ = enumerate_nm(prob, 1, 2)
    assert res.status == "optimal" and res.objective == pytest.approx(best, rel=1e-6, abs=1e-8)
    assert pattern_holds(res.masks, 1, 2)


def test_obs_with_an_identity_hessian_is_the_magnitude_pattern():
    """Oracle: with H = I the OBS saliency is w² and no error spreads, so its N:M mask is the
    largest |w| of every group (the budget's own projection)."""
    from maskopt.solvers.posttrain import obs_mask

    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    alloc = mo.Budget(nm=(2, 4)).allocate({"w": (3, 16)})
    got = obs_mask(torch.eye(16, dtype=torch.float64), w, alloc.units(), blocksize=6)  # 6 rounds up to 8
    assert torch.equal(got, alloc.project({"w": w.abs()})["w"])


def test_mask_file_and_report_know_the_pattern(tmp_path, problems):
    res = mo.solve(problems[0], method="magnitude")
    res.masks.save(tmp_path / "m.safetensors")
    back = mo.MaskSet.load(tmp_path / "m.safetensors")
    assert back.budget == mo.Budget(nm=(2, 4)) and back == res.masks
    rows = back.report()
    assert rows[0]["max per group"] == 2 and "max per group" in back.report_table()


@pytest.mark.parametrize("strengthen", ["none", "eig"])
def test_exact_l2_row_with_several_groups_equals_enumeration(strengthen):
    """A row of three 2:4 groups under L2: the one-row relaxation counts the whole row's
    capacity (Σ over its groups), and the strengthened MILP keeps the per-group counts."""
    prob, _ = mo.data.planted_layerwise(n_samples=40, n_in=12, n_out=1, density=0.25, noise=0.5, seed=0, loss="l2")
    prob = mo.LayerwiseProblem(prob.inputs, prob.weight, prob.target, mo.Budget(nm=(2, 4)), loss="l2")
    res = mo.solve(prob, method="exact", gap=0.0, time_limit=60.0, strengthen=strengthen)
    best, _ = enumerate_nm(prob, 2, 4)
    assert res.objective == pytest.approx(best, rel=1e-7) and res.bound <= best * (1 + 1e-6)
