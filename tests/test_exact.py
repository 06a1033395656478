"""The exact layer-wise MILP against brute force, its certificates, limits and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import maskopt as mo
from maskopt.solvers.exact.highs import HighsSession, MipSettings
from maskopt.solvers.exact.layerwise import _build_l1, _build_l2, local_search

from oracles import numpy_loss, random_layerwise, tiny_instances

TINY = tiny_instances()


@pytest.mark.parametrize("name,problem", TINY, ids=[t[0] for t in TINY])
def test_exact_equals_bruteforce(name, problem):
    exact = mo.solve(problem, method="exact", gap=0.0)
    brute = mo.solve(problem, method="bruteforce")
    tol = 1e-6 * max(1.0, brute.objective)
    assert exact.status == "optimal" and brute.status == "optimal"
    assert abs(exact.objective - brute.objective) <= tol
    # the certificate: a valid lower bound, at most the true optimum
    assert exact.bound <= brute.objective + tol
    assert exact.bound <= exact.objective
    assert exact.gap is not None and exact.gap <= 1e-5
    # objective is the independent numpy loss of the returned mask, and the mask is in budget
    assert exact.objective == pytest.approx(numpy_loss(problem, exact.masks["weight"].numpy()), rel=1e-12, abs=1e-12)
    assert exact.objective == mo.evaluate(problem, exact.masks)
    assert problem.allocation.violations(exact.masks) == []


def test_budget_zero_and_full():
    prob = TINY[0][1]  # k = 0
    res = mo.solve(prob, method="exact")
    assert res.masks.kept == 0
    assert res.objective == pytest.approx(numpy_loss(prob, np.zeros(prob.weight.shape)))


def test_noise_free_planted_is_recovered():
    prob, planted = mo.data.planted_layerwise(n_samples=40, n_in=20, density=0.25, noise=0.0, seed=1)
    res = mo.solve(prob, method="exact")
    assert res.objective <= 1e-6
    assert torch.equal(res.masks["weight"], planted["weight"])


def test_l2_outer_approximation_history_is_monotone():
    prob, _ = mo.data.planted_layerwise(n_samples=16, n_in=10, n_out=2, density=0.3, noise=0.3, loss="l2", seed=4)
    res = mo.solve(prob, method="exact")
    brute = mo.solve(prob, method="bruteforce")
    assert res.objective == pytest.approx(brute.objective, rel=1e-6)
    lows = [h["lower_bound"] for h in res.history]
    ups = [h["upper_bound"] for h in res.history]
    assert all(a <= b + 1e-12 for a, b in zip(lows, lows[1:]))
    assert all(a >= b - 1e-12 for a, b in zip(ups, ups[1:]))
    assert res.stats["rounds"] == len(res.history) >= 1


def test_milp_counts_and_forward_pass_match_torch():
    """Exact variable/constraint counts of a tiny model, and with the mask fixed the MILP's
    value is the torch objective (the encoding is the layer)."""
    rng = np.random.default_rng(0)
    X, W, T = rng.standard_normal((3, 4)), rng.standard_normal((1, 4)), rng.standard_normal((3, 1))
    active = np.arange(4)
    units = [(0, 4, 2)]
    built = _build_l1(X, W, -T, active, units)
    assert built.model.nvariables() == 4 + 2 * 3  # binaries m, u, v
    assert built.model.nconstraints() == 3 + 1  # one equality per residual, one budget row
    built2 = _build_l2(X, W, -T, active, units)
    assert built2.model.nvariables() == 4 + 2 * 3  # binaries m, r, s
    assert built2.model.nconstraints() == 3 + 1
    built2.add_cuts(np.array([0.5, -1.0, 2.0]))
    assert built2.model.nconstraints() == 3 + 1 + 3

    prob = mo.LayerwiseProblem(X, W, T, mo.Budget(k=2))
    for mask in ([1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]):
        model = _build_l1(X, W, -T, active, units)
        for var, v in zip(model.mvars, mask):
            var.fix(v)
        out = HighsSession(MipSettings(gap=0.0)).solve(model.model, model.mvars, None, warm_start=False)
        expected = mo.evaluate(prob, {"weight": torch.tensor([mask], dtype=torch.bool)})
        assert out.objective == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_warm_start_is_used():
    prob, _ = mo.data.planted_layerwise(n_samples=128, n_in=64, density=0.25, noise=0.1, seed=0)
    best = mo.solve(prob, method="exact")
    res = mo.solve(prob, method="exact", warm_start=best.masks, time_limit=0.2)
    assert res.stats["warm_start_objective"] == pytest.approx(best.objective)
    # the start handed to HiGHS is the warm start (the optimum: no local move improves it), and HiGHS took it
    assert res.stats["start_objective"] == pytest.approx(best.objective, rel=1e-12)
    assert res.stats["mip_starts_accepted"] == res.stats["mip_starts"] >= 1
    assert res.objective <= best.objective + 1e-9
    assert res.stats["bound_raw"] <= best.objective + 1e-6


@pytest.mark.parametrize("loss,scope", [("l1", "global"), ("l1", "row"), ("l2", "global")])
def test_time_limit_returns_incumbent_and_valid_bound(loss, scope):
    prob, planted = mo.data.planted_layerwise(
        n_samples=192, n_in=96, n_out=2 if scope == "row" else 1, density=0.25, noise=0.2, loss=loss, scope=scope,
        seed=2,
    )
    res = mo.solve(prob, method="exact", time_limit=0.3)
    assert res.status == "time_limit"
    assert problem_ok(prob, res)
    # the optimum is at most the planted mask's objective, and the bound at most the optimum
    assert res.stats["bound_raw"] <= mo.evaluate(prob, planted) + 1e-9
    assert res.gap == mo.relative_gap(res.objective, res.bound)
    assert res.gap > 0


def problem_ok(prob, res) -> bool:
    return prob.allocation.violations(res.masks) == [] and res.bound <= res.objective


def test_size_guard():
    prob, _ = mo.data.planted_layerwise(n_samples=100, n_in=50, density=0.2)
    with pytest.raises(mo.ProblemTooLargeError, match=r"nonzeros.*max_size=1,000.*heuristic method"):
        mo.solve(prob, method="exact", max_size=1000)
    rng = np.random.default_rng(0)
    big = mo.LayerwiseProblem(rng.standard_normal((1500, 1500)), rng.standard_normal((1, 1500)),
                              rng.standard_normal((1500, 1)), mo.Budget(density=0.1))
    with pytest.raises(mo.ProblemTooLargeError, match="2,254,500 nonzeros"):
        mo.solve(big, method="exact")


def test_bruteforce_refuses_large():
    prob, _ = mo.data.planted_layerwise(n_samples=10, n_in=40, density=0.5)
    with pytest.raises(mo.TooManyCandidatesError, match="max_candidates=1,048,576.*method='exact'"):
        mo.solve(prob, method="bruteforce")


@pytest.mark.parametrize(
    "options,exc,match",
    [
        ({"gap": 2.0}, ValueError, "gap must be"),
        ({"time_limit": -1}, ValueError, "time_limit must be"),
        ({"threads": 0}, ValueError, "threads must be"),
        ({"max_size": 0}, ValueError, "max_size must be"),
        ({"timelimit": 3}, TypeError, r"Unknown option\(s\) \['timelimit'\].*valid options: \['time_limit'"),
        ({"warm_start": {"weight": torch.ones(1, 10, dtype=torch.bool)}}, ValueError, "warm_start is over the budget"),
        ({"warm_start": {"weight": torch.ones(2, 10, dtype=torch.bool)}}, ValueError, "has shape"),
        ({"warm_start": {"w": torch.ones(1, 10, dtype=torch.bool)}}, ValueError, "missing \\['weight'\\]"),
    ],
)
def test_exact_option_errors(options, exc, match):
    prob, _ = mo.data.planted_layerwise(n_samples=20, n_in=10, density=0.3)
    with pytest.raises(exc, match=match):
        mo.solve(prob, method="exact", **options)


def test_inactive_weights_are_never_kept():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 6))
    X[:, 2] = 0.0
    W = rng.standard_normal((1, 6))
    W[0, 4] = 0.0
    prob = mo.LayerwiseProblem(X, W, rng.standard_normal((12, 1)), mo.Budget(density=1.0))
    res = mo.solve(prob, method="exact")
    assert not res.masks["weight"][0, 2] and not res.masks["weight"][0, 4]
    assert res.objective == pytest.approx(mo.solve(prob, method="bruteforce").objective, rel=1e-6)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    d=st.integers(1, 5),
    p=st.integers(1, 2),
    n=st.integers(1, 6),
    loss=st.sampled_from(["l1", "l2"]),
    scope=st.sampled_from(["global", "row"]),
    density=st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]),
    bias=st.booleans(),
)
def test_exact_equals_bruteforce_hypothesis(seed, d, p, n, loss, scope, density, bias):
    prob = random_layerwise(seed, n=n, d=d, p=p, budget=mo.Budget(density=density, scope=scope), loss=loss, bias=bias)
    exact = mo.solve(prob, method="exact", gap=0.0)
    brute = mo.solve(prob, method="bruteforce")
    assert abs(exact.objective - brute.objective) <= 1e-6 * max(1.0, brute.objective)
    assert exact.bound <= brute.objective + 1e-6 * max(1.0, brute.objective)
    assert prob.allocation.violations(exact.masks) == []


def test_verbose_streams_the_highs_log(capfd):
    prob, _ = mo.data.planted_layerwise(n_samples=20, n_in=10)
    mo.solve(prob, method="exact", verbose=False)
    assert "HiGHS" not in capfd.readouterr().out
    res = mo.solve(prob, method="exact", verbose=True, threads=1)
    assert "HiGHS" in capfd.readouterr().out
    assert res.status == "optimal"


@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("scope_units", ["global", "row"])
def test_local_search_reaches_a_one_opt_minimum(loss, scope_units):
    """The MIP-start heuristic: feasible, never worse than its start, and no single remove,
    add or same-unit swap improves it (checked by enumerating every such move)."""
    rng = np.random.default_rng(7)
    p, d, n = 2, 6, 9
    X, W, T = rng.standard_normal((n, d)), rng.standard_normal((p, d)), rng.standard_normal((n, p))
    units = [(0, p * d, 5)] if scope_units == "global" else [(o * d, (o + 1) * d, 2) for o in range(p)]
    active = np.ones((p, d), dtype=bool)
    start = np.zeros((p, d), dtype=bool)

    def f(m):
        r = X @ (m * W).T - T
        return float(np.abs(r).sum() if loss == "l1" else np.square(r).sum())

    def feasible(m):
        flat = m.reshape(-1)
        return all(flat[s:e].sum() <= c for s, e, c in units)

    out = local_search(X, W, -T, active, units, loss, start)
    assert feasible(out) and f(out) <= f(start)
    flat = out.reshape(-1)
    unit = {i: u for u, (s, e, _) in enumerate(units) for i in range(s, e)}
    for i in range(p * d):
        for j in [None, *range(p * d)]:
            m = flat.copy()
            m[i] = not m[i]
            if j is not None:
                if flat[i] == flat[j] or unit[i] != unit[j]:
                    continue
                m[j] = not m[j]
            if feasible(m.reshape(p, d)):
                assert f(m.reshape(p, d)) >= f(out) - 1e-9


def test_time_a_row_leaves_unused_goes_to_a_row_stopped_by_its_share(monkeypatch):
    """Row-separable budgets solve one MILP per row, each first given an equal share of the
    time left; a row stopped by its share gets a second pass with the time others left unused,
    so it is still proven optimal. Simulated: row 0's first pass gets no time at all."""
    import maskopt.solvers.exact.layerwise as lw

    prob = random_layerwise(5, n=6, d=5, p=3, budget=mo.Budget(k=2, scope="row"), loss="l1", bias=False)
    real, calls = lw._solve_group, []

    def starved_first_call(*args):  # args[8]: the time limit of this call
        calls.append(args[8])
        return real(*args[:8], 0.0 if len(calls) == 1 else args[8], *args[9:])

    monkeypatch.setattr(lw, "_solve_group", starved_first_call)
    res = mo.solve(prob, method="exact", time_limit=60.0, gap=0.0)
    assert len(calls) == 4  # rows 0, 1, 2, then row 0 again
    assert calls[-1] > calls[1] / 2  # the second pass had most of the time left, not a share of it
    assert res.status == "optimal" and res.stats["second_pass"] == 1
    row0 = [h["pass"] for h in res.history if h["rows"] == "0-0"]
    assert row0 and set(row0) == {2}  # the starved first pass ran no round
    brute = mo.solve(prob, method="bruteforce")
    assert res.objective == pytest.approx(brute.objective, rel=1e-9)
    assert res.bound <= brute.objective + 1e-9


def test_second_pass_never_loses_the_first_incumbent_or_bound():
    """Both passes merged: the second starts from the first's incumbent (no worse) and the
    larger proven bound is kept; work counts add up, model sizes do not."""
    from maskopt.solvers.exact.highs import MilpResult
    from maskopt.solvers.exact.layerwise import _merge_passes

    stats = {"binaries": 4, "constraints": 9, "nonzeros": 20, "nodes": 3, "rounds": 1, "build_time": 0.5, "time": 1.0,
             "incumbent_from_candidates": 1, "mip_starts": 1, "mip_starts_accepted": 1, "start_objective": 6.0}
    first = MilpResult(np.array([True, False]), 5.0, 4.0, "time_limit", [{"pass": 1}], dict(stats))
    second = MilpResult(np.array([False, True]), 4.5, 3.0, "time_limit", [{"pass": 2}], dict(stats, nodes=7))
    merged = _merge_passes(first, second)
    assert merged.objective == 4.5 and merged.bound == 4.0 and merged.status == "time_limit"
    assert merged.stats["nodes"] == 10 and merged.stats["rounds"] == 2 and merged.stats["binaries"] == 4
    assert merged.stats["time"] == 2.0
    assert merged.stats["mip_starts"] == 2 and merged.stats["start_objective"] == 6.0
    assert merged.history == [{"pass": 1}, {"pass": 2}]
    # the second pass kept the first's MILP incumbent: it still counts as found by the MILP
    first.stats["incumbent_from_candidates"] = 0
    same = MilpResult(first.mask, 5.0, 4.2, "optimal", [], dict(stats))
    assert _merge_passes(first, same).stats["incumbent_from_candidates"] == 0
    assert _merge_passes(first, same).bound == 4.2
