"""The relaxation methods: the budget multiplier and its gradient, recovery of planted masks,
quality against the exact optimum, exact budgets, determinism, devices, and a CNN student."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.parallel import Ranks
from maskopt.relax import SigmoidOptions, _distill_closure
from maskopt.solvers.relax import (
    STAGES,
    Anneal,
    Checks,
    Segments,
    Sigmoid,
    Ste,
    TopK,
    Workspace,
    masked_product,
    run_stage,
)

RELAX = ("sigmoid", "anneal", "ste", "hierarchy")
QUIET = {"verbose": False}


# ---------------------------------------------------------------- the expected-budget multiplier


UNITS = [(0, 5, 2), (5, 12, 3), (12, 15, 0), (15, 18, 3), (18, 26, 7)]


@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
def test_multiplier_meets_the_expected_budget_of_every_unit(tau):
    seg = Segments(UNITS, 26)
    s = torch.randn(26, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    m = seg.soft(s, tau, seg.threshold(s, tau, tol=1e-12)[0])
    np.testing.assert_allclose(seg.sums(m).numpy(), [2, 3, 0, 3, 7], atol=1e-9)
    assert m[12:18].tolist() == [0, 0, 0, 1, 1, 1]  # units with no choice are constant


def test_multiplier_recovers_from_a_bad_warm_start():
    seg = Segments(UNITS, 26)
    s = torch.randn(26, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for tau in (0.01, 1.0):
        theta, sig, _ = seg.threshold(s, tau, theta=torch.tensor([1e6, -1e6, 0.0, 5.0, 1e300], dtype=torch.float64))
        np.testing.assert_allclose(seg.sums(seg.soft(s, tau, theta, sig)).numpy(), [2, 3, 0, 3, 7], atol=1e-4)


def test_multiplier_gradient_is_the_implicit_derivative():
    """Oracle: central finite differences of s ↦ σ((s − θ(s))/τ) with θ solved to 1e-13."""
    seg, tau = Segments(UNITS, 26), 0.7
    s = torch.randn(26, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    c = torch.randn(26, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (seg.soft(s, tau, *seg.threshold(s, tau, tol=1e-13)[:2]) * c).sum().backward()

    def f(v):
        return float((seg.soft(v, tau, *seg.threshold(v, tau, tol=1e-13)[:2]) * c).sum())

    eps = 1e-6
    fd = [(f(s.detach() + eps * e) - f(s.detach() - eps * e)) / (2 * eps) for e in torch.eye(26, dtype=torch.float64)]
    np.testing.assert_allclose(s.grad.numpy(), fd, atol=1e-7)


@pytest.mark.parametrize("hard", [False, True])
def test_masked_product_matches_autograd_of_the_mask_times_the_weights(hard):
    """Oracle: torch autograd through (soft or straight-through mask) * w, split by sizes;
    the fused product with and without a reused workspace gives the same pieces and score
    gradients (two steps through one workspace: buffers are overwritten safely; there the
    gradient is written into ``work.grad``)."""
    seg, tau, sizes = Segments(UNITS, 26), 0.7, [10, 6, 10]
    gen = torch.Generator().manual_seed(8)
    w = torch.randn(26, dtype=torch.float64, generator=gen)
    work = Workspace.like(w)
    for _ in range(2):
        s = torch.randn(26, dtype=torch.float64, generator=gen)
        c = [torch.randn(n, dtype=torch.float64, generator=gen) for n in sizes]
        if not hard:
            theta, sig, _ = seg.threshold(s, tau, tol=1e-13)
        s_ref, s_fused, s_work = (s.clone().requires_grad_(True) for _ in range(3))
        if hard:
            ref_m = seg.hard_ste(s_ref)
        else:
            ref_m = seg.soft(s_ref, tau, theta, sig)
        sum(((p * ci).sum() for p, ci in zip((ref_m * w).split(sizes), c))).backward()
        for scores, ws in ((s_fused, None), (s_work, work)):
            mask = seg.project(s).to(w.dtype) if hard else seg.fix(sig)
            pieces = masked_product(scores, mask, seg, None if hard else sig, tau, w, sizes, ws)
            for p, q in zip(pieces, (ref_m * w).detach().split(sizes)):
                torch.testing.assert_close(p.detach(), q)
            sum(((p * ci).sum() for p, ci in zip(pieces, c))).backward()
            if ws is not None:  # with a workspace the gradient lands in work.grad, not in .grad
                assert scores.grad is None
            torch.testing.assert_close(scores.grad if ws is None else ws.grad, s_ref.grad, rtol=1e-12, atol=1e-12)


def test_ste_mask_is_the_projection_with_identity_gradient():
    seg = Segments(UNITS, 26)
    s = torch.randn(26, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    m = seg.hard_ste(s)
    assert torch.equal(m.detach().bool(), seg.project(s))
    (m * torch.arange(26.0)).sum().backward()
    assert torch.equal(s.grad, torch.arange(26.0))

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_keeps_the_top_cap_of_each_unit_ties_to_lower_index(dtype):
    """Oracle: a stable descending argsort per unit (equal scores keep index order)."""
    units = [(0, 6, 2), (6, 12, 2), (12, 18, 2), (18, 25, 7), (25, 30, 0), (30, 40, 4)]
    gen = torch.Generator().manual_seed(6)
    for trial in range(20):
        s = torch.randint(0, 4 if trial % 2 else 1000, (40,), generator=gen).to(dtype)  # many ties when 0..3
        expect = torch.zeros(40, dtype=torch.bool)
        for a, b, cap in units:
            order = torch.sort(-s[a:b], stable=True).indices[:cap]
            expect[a + order] = True
        assert torch.equal(Segments(units, 40).project(s), expect)


def test_topk_tracker_gives_the_projection_along_a_trajectory():
    """TopK (band search near the previous cut) = Segments.project at every step: smooth
    drifts, jumps, ties at the cut and all-equal scores; global, layer and row-like units."""
    gen = torch.Generator().manual_seed(3)
    for units, size in (([(0, 500, 37)], 500), ([(0, 300, 40), (300, 500, 0), (500, 520, 20), (520, 600, 7)], 600),
                        ([(i * 10, i * 10 + 10, 3) for i in range(8)], 80)):
        seg = Segments(units, size)
        topk = TopK(seg)
        s = torch.randn(size, generator=gen)
        for step in range(60):
            if step % 15 == 7:
                s = torch.randn(size, generator=gen) * 10  # a jump: the band misses, full selection
            elif step % 15 == 11:
                s = torch.round(s)  # many ties at the cut
            elif step == 40:
                s = torch.zeros(size)
            else:
                s = s + 0.01 * torch.randn(size, generator=gen)
            assert torch.equal(topk(s), seg.project(s)), (units, step)



def test_anneal_schedule_is_geometric_from_beta0_to_beta1():
    st = Anneal(beta0=2.0, beta1=200.0)
    assert st.tau(0, 5) == pytest.approx(1 / 2) and st.tau(4, 5) == pytest.approx(1 / 200)
    assert st.tau(2, 5) == pytest.approx(1 / 20)
    lin = Anneal(beta0=2.0, beta1=202.0, schedule="linear")
    assert lin.tau(2, 5) == pytest.approx(1 / 102)


def test_stages_are_registered_by_name_and_validate_their_settings():
    assert STAGES == {"sigmoid": Sigmoid, "anneal": Anneal, "ste": Ste}
    assert Sigmoid(0.5).tau(3, 10) == 0.5 and np.isnan(Ste().tau(0, 1))
    with pytest.raises(ValueError, match="temperature must be"):
        Sigmoid(0.0)
    with pytest.raises(ValueError, match="beta0 <= beta1"):
        Anneal(beta0=5.0, beta1=1.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        Anneal(schedule="cosine")


# ---------------------------------------------------------------- quality


@pytest.mark.parametrize("method", RELAX)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_free_planted_mask_is_recovered(method, seed):
    prob, planted = mo.data.planted_layerwise(n_samples=100, n_in=64, density=0.25, noise=0.0, seed=seed)
    res = mo.solve(prob, method=method, **QUIET)
    assert mo.evaluate(prob, planted) < 1e-9
    assert res.objective < 1e-6


@pytest.fixture(scope="module")
def noisy_instances():
    """Small noisy layer-wise L1 instances with their proven optima."""
    out = []
    for seed in range(4):
        prob, _ = mo.data.planted_layerwise(n_samples=40, n_in=32, n_out=2, density=0.25, noise=0.5, seed=seed)
        exact = mo.solve(prob, method="exact", gap=0.0)
        assert exact.status == "optimal"
        out.append((prob, exact.objective))
    return out


# stated tolerances on the relative gap to the exact optimum over seeds 0-3
TOLERANCE = {"sigmoid": 0.25, "anneal": 0.15, "ste": 0.25, "hierarchy": 0.05}


def test_relaxations_are_close_to_the_exact_optimum(noisy_instances):
    gaps = {m: [] for m in RELAX}
    for prob, best in noisy_instances:
        for m in RELAX:
            res = mo.solve(prob, method=m, **QUIET)
            assert res.objective >= best - 1e-9 * max(1.0, best)  # nothing beats the proven optimum
            gaps[m].append((res.objective - best) / best)
    for m in RELAX:
        assert max(gaps[m]) <= TOLERANCE[m], (m, gaps[m])
    assert all(h <= s + 1e-12 for h, s in zip(gaps["hierarchy"], gaps["sigmoid"]))


def test_polish_reaches_the_exact_optimum_within_one_and_a_half_percent(noisy_instances):
    for prob, best in noisy_instances:
        res = mo.solve(prob, method="hierarchy", polish=True, **QUIET)
        assert res.objective <= best * 1.015
        assert res.stats["polish"]["objective_after"] == pytest.approx(res.objective)
        unpolished = mo.solve(prob, method="hierarchy", **QUIET)  # the same run (deterministic), no polish
        assert res.stats["polish"]["objective_before"] == pytest.approx(unpolished.objective)
        assert res.stats["polish"]["objective_after"] <= res.stats["polish"]["objective_before"]


# ---------------------------------------------------------------- budgets, determinism, no side effects


def mlp(sizes, seed):
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        mods += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*mods)


def distill(budget, loss="l1", n=32, **kw):
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))
    return mo.DistillProblem(mlp((6, 10, 8, 3), 0), [mlp((6, 12, 3), 1), mlp((6, 5, 3), 2)], x, budget, loss=loss, **kw)


BUDGETS = [mo.Budget(density=0.2), mo.Budget(sparsity=0.7, scope="layer"), mo.Budget(density=0.3, scope="row"),
           mo.Budget(density=0.25, scope="layer", allocation="erk"), mo.Budget(k=2, scope="row")]


@pytest.mark.parametrize("method", RELAX)
@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: f"{b.scope}-{b.allocation}")
def test_masks_meet_the_budget_exactly_in_every_unit(method, budget):
    prob = distill(budget)
    res = mo.solve(prob, method=method, steps=20, **QUIET)
    flat = prob.allocation.flatten(res.masks).to(torch.int64)
    for start, stop, cap in prob.allocation.units():
        assert int(flat[start:stop].sum()) == cap


@pytest.mark.parametrize("method", RELAX)
def test_module_scope_with_biases_meets_every_module_cap(method):
    student = mlp((6, 10, 8, 3), 0)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    prob = mo.DistillProblem(student, [mlp((6, 12, 3), 1)], x, mo.Budget(sparsity=0.7, scope="module"),
                             params=[n for n, _ in student.named_parameters()])
    res = mo.solve(prob, method=method, steps=20, **QUIET)
    flat = prob.allocation.flatten(res.masks).to(torch.int64)
    assert len(prob.allocation.units()) == 3
    for start, stop, cap in prob.allocation.units():
        assert int(flat[start:stop].sum()) == cap


@pytest.mark.parametrize("loss", ["l1", "linf", "l2", "kl"])
def test_same_seed_same_mask_and_the_student_is_never_modified(loss):
    prob = distill(mo.Budget(density=0.3), loss=loss, labels=torch.arange(32) % 3, alpha=0.2)
    before = {k: v.clone() for k, v in prob.student.state_dict().items()}
    a = mo.solve(prob, method="hierarchy", steps=15, batch_size=8, seed=3, **QUIET)
    b = mo.solve(prob, method="hierarchy", steps=15, batch_size=8, seed=3, **QUIET)
    assert a.masks == b.masks and a.objective == b.objective
    assert all(torch.equal(v, prob.student.state_dict()[k]) for k, v in before.items())


def test_history_records_loss_density_and_temperature_per_step():
    prob = distill(mo.Budget(density=0.25))
    res = mo.solve(prob, method="hierarchy", steps=10, **QUIET)
    assert [h["stage"] for h in res.history] == ["sigmoid"] * 10 + ["anneal"] * 10 + ["ste"] * 10
    assert [h["step"] for h in res.history] == list(range(30))
    budget = prob.allocation.total / prob.allocation.size
    # the multiplier keeps the expected density at the budget (to 1e-6) in every soft step
    assert all(h["density"] == pytest.approx(budget, abs=1e-6) for h in res.history if h["stage"] != "ste")
    assert all(h["density"] == pytest.approx(budget, rel=1e-12) for h in res.history if h["stage"] == "ste")
    assert res.history[0]["temperature"] == 1.0 and res.history[19]["temperature"] == pytest.approx(1 / 200)
    assert all(np.isfinite(h["loss"]) for h in res.history)


def test_relaxation_mask_warm_starts_the_exact_solver_and_is_certified():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    prob = mo.DistillProblem(mlp((3, 3, 2), 0), [mlp((3, 4, 2), 1)], x, mo.Budget(k=4))
    relaxed = mo.solve(prob, method="hierarchy", steps=30, **QUIET)
    exact = mo.solve(prob, method="exact", warm_start=relaxed.masks, gap=0.0)
    assert exact.stats["warm_start_objective"] == pytest.approx(relaxed.objective)
    assert exact.objective <= relaxed.objective + 1e-9
    cert = mo.certify(prob, relaxed.masks)
    assert cert.bound <= relaxed.objective + 1e-9 and cert.gap >= 0


def test_warm_start_and_given_scores_set_the_initial_mask():
    prob = distill(mo.Budget(density=0.2))
    warm = mo.solve(prob, method="random", seed=5).masks
    res = mo.solve(prob, method="ste", warm_start=warm, steps=0, **QUIET)
    assert res.masks == warm
    scores = {n: torch.from_numpy(np.random.default_rng(0).standard_normal(s)) for n, s in prob.mask_shapes().items()}
    res = mo.solve(prob, method="ste", scores=scores, steps=0, **QUIET)
    assert res.masks == mo.MaskSet(prob.allocation.project(scores))


def test_layerwise_mini_batches_and_float64():
    prob, planted = mo.data.planted_layerwise(n_samples=64, n_in=16, density=0.25, noise=0.0, seed=0)
    res = mo.solve(prob, method="anneal", batch_size=16, epochs=40, dtype="float64", **QUIET)
    assert res.stats["steps"] == 40 * 4 and res.stats["dtype"] == "float64"
    assert res.objective < 1e-9


# ---------------------------------------------------------------- architectures, data loaders, devices


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def cnn_student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), Block(4),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))


def teachers():
    torch.manual_seed(1)
    mlp_t = nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 5))
    cnn_t = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    return [mlp_t, cnn_t]


def test_conv_batchnorm_residual_student_distils_two_heterogeneous_teachers_with_kl():
    x = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(24) % 5
    prob = mo.DistillProblem(cnn_student(), teachers(), x, mo.Budget(sparsity=0.6, scope="layer"), loss="kl",
                             temperature=2.0, labels=labels, alpha=0.3)
    assert set(prob.params) == {"0.weight", "3.conv1.weight", "3.conv2.weight", "6.weight"}
    start = mo.solve(prob, method="magnitude").objective
    res = mo.solve(prob, method="hierarchy", steps=40, batch_size=8, **QUIET)
    assert prob.allocation.violations(res.masks) == []
    assert np.isfinite(res.objective) and res.objective < start
    model = cnn_student()
    mo.apply_masks(model, res.masks)
    assert torch.isfinite(model.eval()(x)).all()


def test_data_loader_of_inputs_and_labels():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 3
    prob = mo.DistillProblem(mlp((6, 10, 3), 0), [mlp((6, 12, 3), 1)], x[:8], mo.Budget(density=0.3), loss="kl",
                             labels=y[:8], alpha=0.5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10, shuffle=False)
    res = mo.solve(prob, method="sigmoid", loader=loader, epochs=3, **QUIET)
    assert res.stats["steps"] == 3 * 4
    inputs_only = torch.utils.data.DataLoader(x, batch_size=20)
    with pytest.raises(ValueError, match="labels"):
        mo.solve(prob, method="sigmoid", loader=inputs_only, epochs=1, **QUIET)


def sgd_lookahead_loss(prob, masks, k, lr, batches):
    """Oracle: Σ over ``batches`` (index tensors) of the per-sample objective after k plain SGD steps
    (torch.optim.SGD) of the masked student's kept weights on that batch, times the batch size."""
    total = 0.0
    for idx in batches:
        model = copy.deepcopy(prob.student).requires_grad_(False)
        mo.apply_masks(model, masks)
        weights = [model.get_parameter(f"{name.rsplit('.', 1)[0]}.parametrizations.{name.rsplit('.', 1)[1]}.original")
                   for name in prob.params]
        for w in weights:
            w.requires_grad_(True)
        opt = torch.optim.SGD(weights, lr=lr)
        x, t, p = prob.inputs[idx], prob.target[idx], prob.target_probs[idx]
        y = None if prob.labels is None else prob.labels[idx]

        def loss(model=model, x=x, t=t, p=p, y=y):
            return prob.criterion(model(x), t, p, y) / len(x)

        for _ in range(k):
            opt.zero_grad()
            loss().backward()
            opt.step()
        with torch.no_grad():
            total += float(loss()) * len(idx)
    return total


@pytest.mark.parametrize("batch_size", [None, 10])
def test_lookahead_checkpoints_are_scored_by_sgd_on_the_kept_weights(batch_size):
    prob = distill(mo.Budget(density=0.3), loss="kl", n=30, labels=torch.arange(30) % 3, alpha=0.3)
    res = mo.solve(prob, method="sigmoid", steps=12, eval_every=4, lookahead=3, lookahead_lr=0.5,
                   batch_size=batch_size, dtype="float64", **QUIET)
    chunks = [torch.arange(30)] if batch_size is None else list(torch.arange(30).split(batch_size))
    assert res.stats["training_objective"] == pytest.approx(sgd_lookahead_loss(prob, res.masks, 3, 0.5, chunks),
                                                            rel=1e-9)
    assert res.objective == pytest.approx(mo.evaluate(prob, res.masks))  # the problem's own objective
    assert prob.allocation.violations(res.masks) == []
    assert res.stats["gradient_samples"] == 12 * (batch_size or 30) * 7


def test_lookahead_gradient_is_the_derivative_through_the_inner_steps():
    prob = distill(mo.Budget(density=0.3), loss="l2", n=8)
    alloc = prob.allocation

    def closure_of(**options):
        opts = SigmoidOptions(dtype="float64", verbose=False, **options)
        return _distill_closure(prob, opts, torch.device("cpu"), torch.float64, alloc.offsets, Ranks(False))

    base, closure = closure_of(), closure_of(lookahead=2, lookahead_lr=0.05)
    m = torch.rand(alloc.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: closure.loss((closure.weight * m).split(closure.sizes), None), (m,))
    # inner steps of size → 0 leave the plain loss
    tiny = closure_of(lookahead=2, lookahead_lr=1e-12)
    pieces = (closure.weight * m).split(closure.sizes)
    plain = base.loss(pieces, None).detach().item()
    assert tiny.loss(pieces, None).detach().item() == pytest.approx(plain, rel=1e-9)


@pytest.mark.parametrize("method", ["sigmoid", "ste"])
def test_lookahead_with_an_initial_weight_of_zero(method):
    """A weight that starts at exactly 0 counts as pruned, and every score's gradient stays
    finite (m = v / w is never 0/0)."""
    student = mlp((6, 10, 8, 3), 0)
    with torch.no_grad():
        student[0].weight[0, 0] = 0.0
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    prob = mo.DistillProblem(student, [mlp((6, 12, 3), 1)], x, mo.Budget(density=0.3), loss="l2")
    opts = SigmoidOptions(dtype="float64", verbose=False, lookahead=2, lookahead_lr=0.05)
    closure = _distill_closure(prob, opts, torch.device("cpu"), torch.float64, prob.allocation.offsets, Ranks(False))
    m = torch.full((prob.allocation.size,), 0.5, dtype=torch.float64, requires_grad=True)
    closure.loss((closure.weight * m).split(closure.sizes), None).backward()
    assert bool(torch.isfinite(m.grad).all())
    res = mo.solve(prob, method=method, steps=10, lookahead=2, lookahead_lr=0.05, **QUIET)
    assert prob.allocation.violations(res.masks) == []


def test_linf_with_cross_entropy_checkpoints_score_the_objective():
    """Chunked checkpoint scoring of (1 − α)·max|s − t| + α·CE is the problem's objective
    (every chunk's cross-entropy counts, not only the chunk holding the maximum)."""
    prob = distill(mo.Budget(density=0.3), loss="linf", n=40, labels=torch.arange(40) % 3, alpha=0.4)
    opts = SigmoidOptions(batch_size=10, verbose=False)
    closure = _distill_closure(prob, opts, torch.device("cpu"), torch.float64, prob.allocation.offsets, Ranks(False))
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        masks = prob.allocation.project({n: torch.rand(s, generator=gen) for n, s in prob.mask_shapes().items()})
        flat = prob.allocation.flatten(masks)
        assert closure.evaluate(flat, [None]) == pytest.approx(mo.evaluate(prob, masks), rel=1e-9)
        chunks = list(torch.arange(40).split(10))
        assert closure.evaluate(flat, chunks) == pytest.approx(mo.evaluate(prob, masks), rel=1e-9)
    with pytest.raises(ValueError, match="maximum and a sum do not combine"):
        mo.solve(prob, method="sigmoid", batch_size=10, lookahead=2, **QUIET)


@pytest.mark.parametrize("n,batch_size,epochs,lookahead,expected", [
    (10, 4, 3, 0, 30), (32, 10, 2, 2, 2 * 32 * 5), (30, 10, 2, 0, 60), (30, None, 2, 0, 60),
])
def test_gradient_samples_count_the_samples_drawn(n, batch_size, epochs, lookahead, expected):
    """Every pass over the n samples ends with a smaller batch when batch_size does not divide n."""
    prob = distill(mo.Budget(density=0.3), loss="l2", n=n)
    res = mo.solve(prob, method="sigmoid", batch_size=batch_size, epochs=epochs, lookahead=lookahead, **QUIET)
    assert res.stats["gradient_samples"] == expected


def test_cpu_autocast_runs():
    res = mo.solve(distill(mo.Budget(density=0.3)), method="hierarchy", steps=5, autocast=True, device="cpu", **QUIET)
    assert np.isfinite(res.objective)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("autocast", [False, True])
def test_cuda_matches_the_budget_and_runs(autocast):
    prob = distill(mo.Budget(density=0.3, scope="row"))
    res = mo.solve(prob, method="hierarchy", steps=20, device="cuda", autocast=autocast, **QUIET)
    assert res.stats["device"].startswith("cuda")
    assert prob.allocation.violations(res.masks) == [] and np.isfinite(res.objective)


def test_progress_bar_can_be_silenced(capsys):
    mo.solve(distill(mo.Budget(density=0.3)), method="sigmoid", steps=5, **QUIET)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    mo.solve(distill(mo.Budget(density=0.3)), method="sigmoid", steps=5, verbose=True)
    assert "sigmoid" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("options,match", [
    ({"device": "tpu"}, "device"),
    ({"compile": "fast"}, "compile"),
    ({"eval_samples": 0}, "eval_samples"),
    ({"finalists": 0}, "finalists"),
    ({"lr": 0.0}, "lr"),
    ({"steps": -1}, "steps"),
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"init": "ones"}, "init"),
    ({"dtype": "float16"}, "dtype"),
    ({"autocast": True, "dtype": "float64"}, "autocast"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("inf")}, "finite"),
    ({"lookahead": -1}, "lookahead"),
    ({"lookahead": 2, "lookahead_lr": 0.0}, "lookahead_lr"),
    ({"lookahead": 1, "loader": [torch.zeros(2, 6)]}, "loader"),
])
def test_bad_options_say_what_is_wrong(options, match):
    with pytest.raises(ValueError, match=match):
        mo.solve(distill(mo.Budget(density=0.3)), method="sigmoid", **options)


def test_bad_combinations_are_refused():
    prob = distill(mo.Budget(density=0.3))
    warm = mo.solve(prob, method="magnitude").masks
    with pytest.raises(ValueError, match="either"):
        mo.solve(prob, method="ste", warm_start=warm, scores={n: w.abs() for n, w in prob.weights().items()})
    over = mo.MaskSet({n: torch.ones(s, dtype=torch.bool) for n, s in prob.mask_shapes().items()})
    with pytest.raises(ValueError, match="over the budget"):
        mo.solve(prob, method="ste", warm_start=over, **QUIET)
    with pytest.raises(ValueError, match="scores must map exactly"):
        mo.solve(prob, method="ste", scores={"0.weight": torch.zeros(3)}, **QUIET)
    lw, _ = mo.data.planted_layerwise()
    with pytest.raises(ValueError, match="DistillProblem"):
        mo.solve(lw, method="sigmoid", loader=[torch.zeros(2, 20)], **QUIET)
    with pytest.raises(ValueError, match="lookahead .*DistillProblem"):
        mo.solve(lw, method="hierarchy", lookahead=2, **QUIET)
    with pytest.raises(ValueError, match="autocast applies to a DistillProblem"):
        mo.solve(lw, method="sigmoid", autocast=True, **QUIET)
    with pytest.raises(TypeError, match="beta1"):
        mo.solve(prob, method="ste", beta1=10.0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            mo.solve(prob, method="sigmoid", device="cuda")


# ---------------------------------------------------------------- the keep-best checks


@pytest.mark.parametrize("finalists", [1, 3])
def test_keep_best_screens_the_checks_and_rescores_the_finalists(finalists):
    """Oracle: the rule of ``run_stage`` replayed by hand from the masks it screened (lowest
    screening values among distinct masks → their full values → the lowest)."""
    seg = Segments([(0, 12, 4)], 12)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(12, generator=gen, dtype=torch.float64), torch.randn(12, generator=gen, dtype=torch.float64)
    screened, rescored = [], []

    def screen(mask):
        screened.append(mask.clone())
        return float(mask.double() @ a)

    def full(mask):
        rescored.append(mask.clone())
        return float(mask.double() @ b)

    def batches():  # random directions move the scores, so the hard mask changes now and then
        g = torch.Generator().manual_seed(1)
        while True:
            yield torch.randn(12, generator=g, dtype=torch.float64)

    checks = Checks(full=full, screen=screen, every=3, finalists=finalists)
    res = run_stage(lambda pieces, d: -(pieces[0] * d).sum(), torch.zeros(12, dtype=torch.float64), seg,
                    Sigmoid(0.5), 60, batches(), lambda p: torch.optim.SGD(p, lr=0.3), checks, verbose=False)
    assert res.checks["screened"] == len(screened) and res.checks["screened"] + res.checks["unchanged"] == 20
    assert all(not torch.equal(x, y) for x, y in zip(screened, screened[1:]))  # unchanged masks are not rescored
    distinct = []
    for i, m in enumerate(screened):
        if not any(torch.equal(m, d) for _, _, d in distinct):
            distinct.append((float(m.double() @ a), i, m))
    assert len(distinct) > finalists  # the instance exercises the shortlist
    chosen = sorted(distinct, key=lambda c: (c[0], c[1]))[:finalists]
    assert res.checks["rescored"] == len(rescored) == finalists
    best = min(chosen, key=lambda c: (float(c[2].double() @ b), c[1]))
    assert torch.equal(res.mask, best[2]) and res.value == float(best[2].double() @ b)


def test_screening_on_all_samples_is_the_plain_rule():
    """eval_samples ≥ N scores every check on all samples: the same answer as eval_samples=None."""
    prob = distill(mo.Budget(density=0.3), n=40)
    kw = {"steps": 40, "batch_size": 10, "dtype": "float64", "eval_every": 4, **QUIET}
    a = mo.solve(prob, method="sigmoid", eval_samples=None, **kw)
    b = mo.solve(prob, method="sigmoid", eval_samples=40, **kw)
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks) and a.stats["stages"] == b.stats["stages"]
    assert a.stats["stages"][0]["checks"]["rescored"] == 0


def test_screened_answer_is_valued_on_all_samples():
    """With a screening subset the answer's recorded value is its objective on all inputs."""
    prob = distill(mo.Budget(density=0.3), n=60)
    res = mo.solve(prob, method="hierarchy", steps=30, batch_size=10, eval_samples=15, eval_every=3, dtype="float64",
                   **QUIET)
    assert res.stats["training_objective"] == pytest.approx(res.objective, rel=1e-12)
    for stage in res.stats["stages"]:
        assert 1 <= stage["checks"]["rescored"] <= 3 and stage["checks"]["screened"] >= stage["checks"]["rescored"]


def test_compiled_loss_finds_the_same_mask():
    prob = distill(mo.Budget(density=0.3), n=16)
    kw = {"steps": 15, "dtype": "float64", **QUIET}
    eager, compiled = mo.solve(prob, method="sigmoid", **kw), mo.solve(prob, method="sigmoid", compile=True, **kw)
    assert all(torch.equal(eager.masks[n], compiled.masks[n]) for n in eager.masks)
    assert [h["loss"] for h in compiled.history] == pytest.approx([h["loss"] for h in eager.history], rel=1e-9)
