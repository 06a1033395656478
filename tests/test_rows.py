"""Exact layer-wise solves at scale: the Gram form, QCR bounds, rows on executors, and the
decomposition of a layer budget over rows, each against brute-force enumeration."""

from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import torch

import maskopt as mo
from maskopt.solvers.exact import decompose, qcr
from maskopt.solvers.exact.layerwise import gram_form, model_size

from oracles import enumerate_masks, layerwise_losses, random_layerwise, scope_units


def optimum(problem: mo.LayerwiseProblem, scope: str, k: int) -> float:
    """The brute-force optimum (independent enumerator and numpy losses)."""
    masks = enumerate_masks(problem.weight.numel(), scope_units({"weight": tuple(problem.weight.shape)}, scope, k))
    return float(layerwise_losses(problem, masks).min())


# --- Gram form ------------------------------------------------------------------------------

@pytest.mark.parametrize("n,d", [(50, 6), (4, 9), (9, 9)])  # tall, wide (rank-deficient), square
def test_gram_form_equals_the_per_sample_objective(n, d):
    rng = np.random.default_rng(n * d)
    X = rng.standard_normal((n, d))
    X[:, 1] = X[:, 0]  # a repeated column: X is rank-deficient in every case
    offset = rng.standard_normal((n, 3))
    R, a, s2 = gram_form(X, offset)
    assert R.shape == (min(n, d), d) and a.shape == (min(n, d), 3) and s2.shape == (3,)
    np.testing.assert_allclose(R.T @ R, X.T @ X, atol=1e-10)  # H = XᵀX
    np.testing.assert_allclose(R.T @ a, X.T @ offset, atol=1e-10)  # Xᵀ(y − b)
    np.testing.assert_allclose(np.square(a).sum(0) + s2, np.square(offset).sum(0), rtol=1e-12)
    assert (s2 >= 0).all()
    for v in [rng.standard_normal(d), rng.integers(0, 2, d).astype(float), np.zeros(d)]:
        for o in range(3):
            direct = np.square(X @ v + offset[:, o]).sum()
            assert np.square(R @ v + a[:, o]).sum() + s2[o] == pytest.approx(direct, rel=1e-10, abs=1e-10)


def test_size_guard_counts_the_gram_form_and_one_row():
    """L2 models have min(N, d) residual rows per output; a row budget builds one row's MILP."""
    units = [(o * 40, (o + 1) * 40, 4) for o in range(50)]
    l2 = model_size(1000, 40, 50, units, "l2")
    l1 = model_size(1000, 40, 50, units, "l1")
    assert l2["milps"] == 50 and l2["binaries"] == 40 and l2["nonzeros"] == 40 * 40 + 2 * 40 + 40
    assert l1["nonzeros"] == 1000 * 40 + 2 * 1000 + 40
    layer = model_size(1000, 40, 50, [(0, 2000, 200)], "l2")
    assert layer["milps"] == 1 and layer["nonzeros"] == 40 * 2000 + 2 * 40 * 50 + 2000
    assert model_size(1000, 40, 50, [(0, 2000, 200)], "l2", decompose=True) == l2 | {"constraints": 41}


def test_l2_with_many_samples_is_no_longer_refused_and_matches_bruteforce():
    """N = 20 000 samples: far above max_size per sample (the L1 model is refused), the L2
    Gram-form model has 4 residual rows."""
    prob = random_layerwise(3, n=20_000, d=4, p=2, budget=mo.Budget(k=2, scope="row"), loss="l2", bias=True)
    res = mo.solve(prob, method="exact", max_size=10_000, gap=0.0)
    best = optimum(prob, "row", 2)
    assert res.status == "optimal" and res.objective == pytest.approx(best, rel=1e-9)
    assert res.bound <= best * (1 + 1e-9)
    l1 = mo.LayerwiseProblem(prob.inputs, prob.weight, prob.target, prob.budget, loss="l1", bias=prob.bias)
    with pytest.raises(mo.exact.ProblemTooLargeError, match="each row's MILP"):
        mo.solve(l1, method="exact", max_size=10_000)


@pytest.mark.parametrize("seed,n,scope", [(s, n, sc) for s in range(3) for n in (3, 12) for sc in ("row", "layer")])
def test_gram_form_exact_equals_bruteforce_on_tiny_layers(seed, n, scope):
    """N = 3 < d (rank-deficient Gram matrix) and N = 12 > d; row and layer budgets."""
    k = 2 if scope == "row" else 4
    prob = random_layerwise(seed, n=n, d=5, p=3, budget=mo.Budget(k=k, scope=scope), loss="l2", bias=True)
    res = mo.solve(prob, method="exact", gap=0.0)
    best = optimum(prob, scope, k)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(best, rel=1e-8, abs=1e-9)
    assert res.bound <= best + 1e-6 * max(1.0, best)


# --- QCR bounds -----------------------------------------------------------------------------

def _row_data(seed: int, n: int, d: int):
    rng = np.random.default_rng(seed)
    X, w, c = rng.standard_normal((n, d)), rng.standard_normal(d), rng.standard_normal(n)
    R, a, s2 = gram_form(X, c[:, None])
    A = R * w
    return A, a[:, 0], float(s2[0]), lambda m: float(np.square(X @ (m * w) + c).sum())


@pytest.mark.parametrize("method", qcr.STRENGTHEN)
@pytest.mark.parametrize("seed", range(4))
def test_qcr_form_equals_the_loss_on_masks_and_its_relaxation_bounds_the_optimum(method, seed):
    d, k = 7, 3
    A, a, s2, f = _row_data(seed, 9, d)
    Q, q, gamma = A.T @ A, A.T @ a, float(a @ a + s2)
    conv = qcr.convexified(Q, q, k, method, A)
    assert np.linalg.eigvalsh(conv.L.T @ conv.L).min() >= -1e-9  # the MILP's quadratic part is convex
    values = []
    for kept in (c for j in range(k + 1) for c in itertools.combinations(range(d), j)):
        m = np.zeros(d)
        m[list(kept)] = 1.0
        ell = qcr.relaxation_value(conv, m, gamma)[0]
        assert ell == pytest.approx(f(m), rel=1e-7, abs=1e-7)  # ℓ_u = f on every mask
        values.append(f(m))
    bound, point = qcr.relaxation_bound(conv, gamma, k)
    assert bound <= min(values) + 1e-9
    assert point.min() >= 0 and point.max() <= 1 + 1e-12 and point.sum() <= k + 1e-9


def test_sdp_shift_is_at_least_as_strong_as_no_shift():
    """The Shor SDP's u maximises the relaxation bound over u, u = 0 included."""
    for seed in range(3):
        A, a, s2, _ = _row_data(seed, 9, 7)
        Q, q, gamma = A.T @ A, A.T @ a, float(a @ a + s2)
        plain = qcr.relaxation_bound(qcr.convexified(Q, q, 3, "none", A), gamma, 3, iters=3000)[0]
        sdp = qcr.relaxation_bound(qcr.convexified(Q, q, 3, "sdp", A), gamma, 3, iters=3000)[0]
        assert sdp >= plain - 1e-3 * abs(plain)


@pytest.mark.parametrize("strengthen", ["eig", "sdp"])
def test_strengthened_rows_equal_bruteforce(strengthen):
    prob = random_layerwise(7, n=8, d=6, p=2, budget=mo.Budget(k=2, scope="row"), loss="l2", bias=True)
    res = mo.solve(prob, method="exact", strengthen=strengthen, gap=0.0)
    best = optimum(prob, "row", 2)
    assert res.status == "optimal" and res.objective == pytest.approx(best, rel=1e-8)
    assert res.bound <= best + 1e-6 * best
    assert res.stats["formulation"].endswith(f"QCR ({strengthen})")
    assert all(r["root_bound"] <= r["objective"] + 1e-9 for r in res.stats["rows"])


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_stopped_rows_still_give_valid_bounds(loss):
    """Branch and bound stopped at the root in every row (node_limit=0): the rows' bounds
    (L2: the relaxation's, then the master's) stay below the optimum."""
    for seed in range(3):
        prob = random_layerwise(seed, n=12, d=10, p=2, budget=mo.Budget(k=3, scope="row"), loss=loss, bias=False)
        res = mo.solve(prob, method="exact", node_limit=0, gap=0.0, progress=False)
        best = optimum(prob, "row", 3)
        assert res.status == "node_limit" and {r["status"] for r in res.stats["rows"]} == {"node_limit"}
        assert res.bound <= best + 1e-6 * best and res.objective >= best - 1e-6 * best
        assert all(r["bound"] <= r["objective"] + 1e-9 for r in res.stats["rows"])
        if loss == "l2":
            assert res.bound > 0  # the relaxation's bound, not just "a loss is never negative"


# --- rows on executors ----------------------------------------------------------------------

def _rows_problem():
    return random_layerwise(11, n=30, d=7, p=6, budget=mo.Budget(k=3, scope="row"), loss="l2", bias=True)


def test_rows_have_their_own_status_bound_and_time():
    prob = _rows_problem()
    res = mo.solve(prob, method="exact", progress=False)
    rows = res.stats["rows"]
    assert [r["rows"] for r in rows] == [f"{o}-{o}" for o in range(6)]
    assert all(r["status"] == "optimal" and r["time"] >= 0 and r["bound"] <= r["objective"] + 1e-9 for r in rows)
    assert sum(r["bound"] for r in rows) == pytest.approx(res.stats["bound_raw"])
    assert res.stats["executor"] == "this process" and res.stats["workers"] == 1


@pytest.mark.parametrize("make", [lambda: None, lambda: ThreadPoolExecutor(2), lambda: ProcessPoolExecutor(2)],
                         ids=["local-pool", "threads", "processes"])
def test_executor_results_identical_to_serial(make):
    prob = _rows_problem()
    serial = mo.solve(prob, method="exact", progress=False)
    executor = make()
    try:
        par = mo.solve(prob, method="exact", workers=2, executor=executor, progress=False)
    finally:
        if executor is not None:
            executor.shutdown()
    assert torch.equal(par.masks["weight"], serial.masks["weight"])
    assert par.objective == serial.objective and par.status == serial.status == "optimal"
    assert par.stats["workers"] == 2
    assert par.stats["executor"] == ("local process pool" if executor is None else type(executor).__name__)


def test_dask_local_cluster_results_identical_to_serial():
    distributed = pytest.importorskip("distributed")
    prob = _rows_problem()
    serial = mo.solve(prob, method="exact", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        dask = mo.solve(prob, method="exact", workers=2, executor=client.get_executor(), progress=False)
    assert torch.equal(dask.masks["weight"], serial.masks["weight"])
    assert dask.objective == serial.objective and dask.bound == pytest.approx(serial.bound, rel=1e-12)
    assert dask.stats["executor"] == "ClientExecutor"


def test_decomposed_layer_budget_on_an_executor_identical_to_serial():
    prob = random_layerwise(12, n=12, d=5, p=4, budget=mo.Budget(k=6, scope="layer"), loss="l2", bias=True)
    serial = mo.solve(prob, method="exact", decompose=True, gap=0.0, progress=False)
    par = mo.solve(prob, method="exact", decompose=True, gap=0.0, workers=2, progress=False)
    assert torch.equal(par.masks["weight"], serial.masks["weight"]) and par.bound == serial.bound


def test_row_time_limit_stops_rows_with_valid_bounds():
    prob = random_layerwise(5, n=40, d=14, p=2, budget=mo.Budget(k=6, scope="row"), loss="l1", bias=True)
    res = mo.solve(prob, method="exact", row_time_limit=1e-3, gap=0.0, progress=False)
    assert res.status in ("time_limit", "optimal")
    assert {r["status"] for r in res.stats["rows"]} <= {"time_limit", "optimal"}
    assert res.stats["second_pass"] == 0  # a per-row limit gives no second pass
    assert problem_ok(prob, res)


def problem_ok(prob, res) -> bool:
    return prob.allocation.violations(res.masks) == [] and res.objective == mo.evaluate(prob, res.masks)


@pytest.mark.parametrize("opts,match", [
    ({"workers": 0}, "workers must be a positive integer"),
    ({"executor": object()}, "concurrent.futures.Executor"),
    ({"row_time_limit": -1.0}, "row_time_limit"),
    ({"strengthen": "shor"}, "strengthen must be one of"),
])
def test_bad_dispatch_options_are_refused(opts, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mo.solve(_rows_problem(), method="exact", **opts)


def test_options_that_do_not_apply_are_refused():
    rows = _rows_problem()
    with pytest.raises(ValueError, match="decompose=True takes a budget of one count"):
        mo.solve(rows, method="exact", decompose=True)
    l1 = random_layerwise(0, n=6, d=4, p=2, budget=mo.Budget(k=2, scope="row"), loss="l1", bias=False)
    with pytest.raises(ValueError, match="strengthen applies to L2"):
        mo.solve(l1, method="exact", strengthen="eig")
    layer = random_layerwise(0, n=6, d=4, p=2, budget=mo.Budget(k=2, scope="layer"), loss="l2", bias=False)
    with pytest.raises(ValueError, match="strengthen applies to L2"):
        mo.solve(layer, method="exact", strengthen="eig")
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    net = mo.DistillProblem(student, [student], torch.randn(4, 2), mo.Budget(k=3), loss="l1")
    with pytest.raises(ValueError, match="workers apply to the rows"):
        mo.solve(net, method="exact", workers=2)


# --- a layer budget decomposed over rows ----------------------------------------------------

@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("seed", range(4))
def test_decomposition_equals_bruteforce_and_its_bounds_are_valid(loss, seed):
    k = 5
    prob = random_layerwise(seed, n=7, d=4, p=3, budget=mo.Budget(k=k, scope="layer"), loss=loss, bias=True)
    res = mo.solve(prob, method="exact", decompose=True, gap=0.0, progress=False)
    best = optimum(prob, "global", k)
    tol = 1e-6 * max(1.0, best)
    assert res.bound <= best + tol and res.stats["lagrangian_bound"] <= res.bound + tol
    assert res.objective >= best - tol and problem_ok(prob, res)
    assert res.status in ("optimal", "gap_limit")
    if res.status == "optimal":
        assert res.objective == pytest.approx(best, rel=1e-6)
    assert sum(res.stats["row_counts"]) <= k


def test_decomposition_closes_the_gap_on_most_tiny_layers():
    closed = 0
    for seed in range(6):
        prob = random_layerwise(seed, n=8, d=4, p=3, budget=mo.Budget(k=5, scope="layer"), loss="l2", bias=True)
        res = mo.solve(prob, method="exact", decompose=True, gap=0.0, progress=False)
        closed += res.status == "optimal"
    assert closed >= 5  # measured: 6 of 6


def test_allocate_is_the_exact_minimum_over_all_choices():
    rng = np.random.default_rng(0)
    for _ in range(20):
        options = [[(int(k), float(c)) for k, c in zip(rng.integers(0, 5, 3), rng.random(3))] for _ in range(4)]
        K = int(rng.integers(0, 12))
        feasible = [sum(o[j][1] for o, j in zip(options, pick)) for pick in itertools.product(range(3), repeat=4)
                    if sum(o[j][0] for o, j in zip(options, pick)) <= K]
        total, chosen = decompose.allocate(options, K)
        if feasible:
            assert total == pytest.approx(min(feasible))
            assert sum(o[j][0] for o, j in zip(options, chosen)) <= K
        else:
            assert total == np.inf


def test_curve_steps_are_a_lower_bound_on_any_nonincreasing_curve():
    """β(k) ≤ v(k) for every k when each solved or relaxed count's bound is ≤ v there."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = 8
        v = np.sort(rng.random(n + 1))[::-1] * 10  # a nonincreasing value curve v(0..n)
        c = decompose.Curve(n, top=float(v[n]) * rng.random())
        for g in sorted(set(rng.integers(0, n + 1, 3).tolist()) | {0}):
            c.points[g] = (float(v[g]) * rng.random() if g else float(v[0]), float(v[g]), np.zeros(1))
        for g in rng.integers(0, n + 1, 2).tolist():  # bounds without a mask (a relaxation's)
            c.relaxed[int(g)] = float(v[g]) * rng.random()
        steps = c.steps()
        for i, (k, beta) in enumerate(steps):
            end = steps[i + 1][0] if i + 1 < len(steps) else n + 1
            assert all(beta <= v[j] + 1e-12 for j in range(k, end))
        lag, lam = decompose.lagrangian_bound([c, c], 6)
        alloc, _ = decompose.allocation_bound([c, c], 6)
        assert lam >= 0 and lag <= alloc + 1e-9
        assert alloc <= min(v[a] + v[b] for a in range(n + 1) for b in range(n + 1) if a + b <= 6) + 1e-9
