"""Sparse training (GMP, AC/DC, CrAM, RigL, SET) and sparse transfer: schedules against
hand-computed values, exact budgets and zero pruned weights at every optimizer step, RigL's
drop/regrow against an independent per-unit computation, CrAM's step against a hand-written
two-pass reference, one-shot masks at every sparsity of the set, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.data import Dataset
from maskopt.sparse_training import (
    ACDC,
    GMP,
    SET,
    CrAM,
    RigL,
    acdc_phases,
    cosine_fraction,
    drop_and_grow,
    gmp_sparsity,
    gmp_steps,
    one_shot,
    recalibrate_batchnorm,
    sparse_train,
)
from maskopt.transfer import class_subset, transfer


def tiny_data(n: int = 96, d: int = 8, classes: int = 3, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, d, generator=gen)
    y = (x[:, :classes] * torch.arange(1, classes + 1)).argmax(1)
    return Dataset("tiny", x[:n], y[:n], x[n:], y[n:], classes)


def tiny_model(d: int = 8, classes: int = 3, seed: int = 0) -> nn.Module:
    return mo.models.create("mlp", in_features=d, hidden=[16, 12], num_classes=classes, seed=seed)


# ---------------------------------------------------------------- schedules


def test_gmp_cubic_schedule_hand_values():
    assert [gmp_sparsity(k, 4, 0.0, 0.9) for k in range(5)] == pytest.approx(
        [0.0, 0.9 - 0.9 * 0.75**3, 0.9 - 0.9 * 0.125, 0.9 - 0.9 / 64, 0.9])
    assert gmp_sparsity(1, 4, 0.0, 0.9) == pytest.approx(0.5203125)
    assert gmp_sparsity(2, 4, 0.5, 0.9) == pytest.approx(0.9 - 0.4 * 0.125)
    assert gmp_steps(100, 0.1, 0.5, 4) == [10, 20, 30, 40, 50]
    assert gmp_steps(10, 0.0, 0.5, 2) == [0, 2, 5]  # 2.5 rounds half to even


def test_rigl_cosine_drop_fraction_hand_values():
    assert cosine_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert cosine_fraction(25, 0.3, 100) == pytest.approx(0.15 * (1 + math.sqrt(0.5)))
    assert cosine_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert cosine_fraction(100, 0.3, 100) == 0.0 and cosine_fraction(120, 0.3, 100) == 0.0


def test_acdc_phase_boundaries_hand_values():
    assert acdc_phases(100, 0.1, 0.1, 0.2) == [(0, 10, False), (10, 20, True), (20, 30, False), (30, 40, True),
                                              (40, 50, False), (50, 60, True), (60, 70, False), (70, 100, True)]
    assert acdc_phases(100, 0.1, 0.2, 0.2) == [(0, 10, False), (10, 30, True), (30, 50, False), (50, 70, True),
                                              (70, 80, False), (80, 100, True)]
    assert acdc_phases(10, 0.0, 0.5, 1.0) == [(0, 10, True)]


# ---------------------------------------------------------------- drop and grow


def test_drop_and_grow_hand_case():
    alloc = mo.Budget(k=2, scope="row").allocate({"w": (2, 4)})
    masks = {"w": torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)}
    weights = {"w": torch.tensor([[0.5, -0.1, 0.0, 0.0], [0.0, 0.3, -0.8, 0.0]])}
    grads = {"w": torch.tensor([[9.0, 0.2, 0.7, 0.3], [0.6, 0.1, 5.0, 0.4]])}
    new, moved = drop_and_grow(alloc, masks, weights, grads, 0.5)
    # row 0 drops w01 (|−0.1|), grows w02 (largest |g| outside the kept w00);
    # row 1 drops w11 (|0.3|), grows w10 (|g| 0.6 beats 0.4 and the dropped w11's 0.1)
    assert new["w"].int().tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]] and moved == 2


@pytest.mark.parametrize("budget", [mo.Budget(sparsity=0.7), mo.Budget(sparsity=0.7, scope="layer"),
                                    mo.Budget(sparsity=0.6, scope="row"), mo.Budget(sparsity=0.7, scope="module"),
                                    mo.Budget(sparsity=0.8, scope="layer", allocation="erk")])
def test_drop_and_grow_matches_a_per_unit_sort(budget):
    shapes = {"a.weight": (6, 5), "a.bias": (6,), "b.weight": (3, 6)}
    gen = torch.Generator().manual_seed(1)
    alloc = budget.allocate(shapes)
    masks = alloc.project({n: torch.rand(s, generator=gen) for n, s in shapes.items()})
    weights = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    grads = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    new, moved = drop_and_grow(alloc, masks, weights, {n: g.abs() for n, g in grads.items()}, 0.5)
    m, w, g = (alloc.flatten(t).numpy() for t in (masks, weights, grads))
    expect, total = np.zeros_like(m), 0
    for start, stop, _ in alloc.units():
        idx = np.arange(start, stop)
        on = [i for i in idx if m[i]]
        d = math.floor(0.5 * len(on))
        keep = sorted(on, key=lambda i: (abs(w[i]), -i))[d:]  # drop the d smallest |w|, the later index first
        rest = sorted((i for i in idx if i not in keep), key=lambda i: (-abs(g[i]), i))[:d]
        expect[keep + rest] = True
        total += d
    assert np.array_equal(alloc.flatten(new).numpy(), expect) and moved == total > 0
    assert alloc.violations(new) == [] and int(alloc.flatten(new).sum()) == int(alloc.flatten(masks).sum())


# ---------------------------------------------------------------- the training loop


def _watch(model, alloc, seen):
    params = dict(model.named_parameters())

    def on_step(step, masks):
        if masks is None:
            seen.append((step, None))
            return
        for n, m in masks.items():
            assert not bool((params[n].detach() * ~m).any()), f"pruned weights of {n} moved at step {step}"
        seen.append((step, {n: m.clone() for n, m in masks.items()}))

    return on_step


@pytest.mark.parametrize("optimizer,kw", [("sgd", {"momentum": 0.9, "weight_decay": 0.05}),
                                          ("adam", {"weight_decay": 0.05}), ("adamw", {"weight_decay": 0.5})])
@pytest.mark.parametrize("method", [GMP(begin=0.1, end=0.5, updates=4), ACDC(warmup=0.1, phase=0.15, final=0.25),
                                    RigL(alpha=0.5, every=5, end=0.8), SET(alpha=0.5, every=5, end=0.8)],
                         ids=["gmp", "acdc", "rigl", "set"])
def test_pruned_weights_zero_and_budget_exact_at_every_step(method, optimizer, kw):
    model, data = tiny_model(), tiny_data()
    budget = mo.Budget(sparsity=0.8, scope="layer")
    alloc = budget.allocate({n: tuple(p.shape) for n, p in model.named_parameters() if p.ndim == 2})
    seen = []
    res = sparse_train(model, data, budget, method, steps=40, batch_size=16, lr=0.05, optimizer=optimizer,
                       on_step=_watch(model, alloc, seen), verbose=False, **kw)
    assert len(seen) == 40
    exact = [s for s, m in seen if m is not None and int(alloc.flatten(m).sum()) == alloc.total
             and not alloc.violations(m)]
    if isinstance(method, RigL):  # from the first step, every step
        assert exact == list(range(1, 41))
        assert res.history[-1]["within_budget"]
        changed = [t for (_, a), (t, b) in zip(seen, seen[1:]) if not torch.equal(alloc.flatten(a), alloc.flatten(b))]
        # updates in steps 5, 10, ..., 30 (< 0.8 · 40, 0-based; seen after the step); the last ones may move nothing
        assert set(changed) <= {6, 11, 16, 21, 26, 31} and len(changed) >= 4
    elif isinstance(method, GMP):  # from the last pruning event (step 20) on, masks nested before
        assert exact == list(range(21, 41))
        for (_, a), (_, b) in zip(seen, seen[1:]):
            if a is not None:
                assert not bool((alloc.flatten(b) & ~alloc.flatten(a)).any())
    else:  # AC/DC: exactly the sparse phases
        sparse = [t + 1 for a, b, s in acdc_phases(40, 0.1, 0.15, 0.25) if s for t in range(a, b)]
        assert exact == sparse and [s for s, m in seen if m is None] == sorted(set(range(1, 41)) - set(sparse))
        assert res.dense is not None and sum(int((p != 0).sum()) for p in res.dense.parameters()) > \
            sum(int((p != 0).sum()) for p in res.model.parameters())
    assert alloc.violations(res.masks) == [] and res.gradient_samples == 40 * 16


def test_rigl_regrows_by_gradient_magnitude_in_training():
    model, data = tiny_model(), tiny_data()
    budget = mo.Budget(sparsity=0.75, scope="row")
    params = dict(model.named_parameters())
    alloc = budget.allocate({n: tuple(p.shape) for n, p in params.items() if p.ndim == 2})
    before: dict = {}

    def on_step(step, masks):
        before[step] = {n: m.clone() for n, m in masks.items()}

    # record the weights and dense gradients the update at step 5 (0-based) sees
    seen = {}
    orig = RigL.after_backward

    def spy(self, run, t):
        if t == 5:
            seen["w"] = {n: w.clone() for n, w in run.weights().items()}
            seen["g"] = {n: run.params[n].grad.clone() for n in run.alloc.shapes}
        orig(self, run, t)

    RigL.after_backward = spy
    try:
        sparse_train(model, data, budget, RigL(alpha=0.8, every=5, end=1.0), steps=20, batch_size=32, lr=0.01,
                     on_step=on_step, verbose=False)
    finally:
        RigL.after_backward = orig
    expect, _ = drop_and_grow(alloc, before[5], seen["w"], {n: g.abs() for n, g in seen["g"].items()},
                              cosine_fraction(5, 0.8, 20))
    assert all(torch.equal(expect[n], before[6][n]) for n in expect)
    assert not all(torch.equal(before[5][n], before[6][n]) for n in expect)


def test_cram_step_equals_a_two_pass_reference():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    data = Dataset("t", x, y, x, y, 2)
    rho, lr, budget = 0.3, 0.1, mo.Budget(k=6)
    for plus in (False, True):
        ref = [p.detach().clone() for p in model.parameters()]
        # the reference: gradient at θ, ascent, keep the 6 largest |θ̃| of the two weights, gradient there
        theta = [p.clone().requires_grad_(True) for p in ref]

        def loss_at(ps):
            h = torch.relu(x @ ps[0].T + ps[1])
            return nn.functional.cross_entropy(h @ ps[2].T + ps[3], y)

        g1 = torch.autograd.grad(loss_at(theta), theta)
        tilde = [t.detach() + rho * g for t, g in zip(theta, g1)]
        flat = torch.cat([tilde[0].abs().reshape(-1), tilde[2].abs().reshape(-1)])
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(6).indices] = True
        compressed = [tilde[0] * keep[:12].reshape(3, 4), tilde[1], tilde[2] * keep[12:].reshape(2, 3), tilde[3]]
        compressed = [c.clone().requires_grad_(True) for c in compressed]
        g2 = torch.autograd.grad(loss_at(compressed), compressed)
        expect = [t - lr * (b + (a if plus else 0)) for t, a, b in zip(ref, g1, g2)]
        work = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        work.load_state_dict(model.state_dict())
        after = {}

        def record(step, masks, work=work, after=after):
            after.update({n: p.detach().clone() for n, p in work.named_parameters()})

        res = sparse_train(work, data, budget, CrAM(rho=rho, dense_gradient=plus), steps=1, batch_size=8, lr=lr,
                           optimizer="sgd", momentum=0.0, shuffle=False, on_step=record, verbose=False)
        for got, want in zip(after.values(), expect):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        assert res.gradient_samples == 16 and res.dense is not None
        # the answer: the trained dense weights pruned by magnitude to the budget
        dense = torch.cat([res.dense[0].weight.abs().reshape(-1), res.dense[2].weight.abs().reshape(-1)])
        kept = torch.cat([res.masks["0.weight"].reshape(-1), res.masks["2.weight"].reshape(-1)])
        assert torch.equal(kept.nonzero().reshape(-1).sort().values, dense.topk(6).indices.sort().values)


def test_cram_one_shot_masks_meet_every_sparsity_of_the_set():
    data = tiny_data()
    student = tiny_model()
    for budget in (mo.Budget(sparsity=0.9, scope="layer"), mo.Budget(sparsity=0.9, scope="row"),
                   mo.Budget(sparsity=0.9, scope="layer", allocation="erk")):
        prob = mo.DistillProblem(student, [student], data.x, budget, loss="kl", labels=data.y, alpha=1.0)
        res = mo.solve(prob, method="cram", sparsities=[0.5, 0.7, 0.9], epochs=2, batch_size=32, lr=0.01,
                       train_on="labels")
        assert sorted(res.stats["one_shot"]) == [0.5, 0.7, 0.9]
        for s, masks in res.stats["one_shot"].items():
            alloc = mo.Budget(sparsity=s, scope=budget.scope, allocation=budget.allocation).allocate(
                prob.mask_shapes())
            assert alloc.violations(masks) == [] and int(alloc.flatten(masks).sum()) == alloc.total
        assert all(torch.equal(res.stats["one_shot"][0.9][n], res.masks[n]) for n in res.masks)
    for budget in (mo.Budget(k=10), mo.Budget(nm=(2, 4))):
        with pytest.raises(ValueError, match="count or N:M budget"):
            mo.solve(mo.DistillProblem(student, [student], data.x, budget, loss="kl", labels=data.y, alpha=1.0),
                     method="cram", sparsities=[0.5], epochs=1, train_on="labels")


def test_one_shot_recalibrates_batch_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 2))
    model.train()
    for _ in range(3):
        model(torch.randn(16, 5) * 3 + 1)  # running statistics of the dense model
    x = torch.randn(40, 5)
    with pytest.raises(ValueError, match="calibration"):
        one_shot(model, mo.Budget(sparsity=0.5), names=["0.weight", "3.weight"])
    pruned, masks = one_shot(model, mo.Budget(sparsity=0.5), names=["0.weight", "3.weight"],
                             calibration=[x[:20], x[20:]])
    pre = x @ (model[0].weight * masks["0.weight"]).T.detach() + model[0].bias.detach()
    # the cumulative average of the two batches' statistics (torch's momentum=None), of the pruned layer
    torch.testing.assert_close(pruned[1].running_mean, pre.mean(0))
    torch.testing.assert_close(pruned[1].running_var, (pre[:20].var(0) + pre[20:].var(0)) / 2, rtol=1e-4, atol=1e-5)
    assert not pruned.training and model[1].running_mean.abs().sum() > 0  # the original is untouched
    assert recalibrate_batchnorm(tiny_model(), [x]) is False


# ---------------------------------------------------------------- registered methods


@pytest.mark.parametrize("budget", [mo.Budget(sparsity=0.8), mo.Budget(sparsity=0.8, scope="layer"),
                                    mo.Budget(sparsity=0.8, scope="module"), mo.Budget(sparsity=0.8, scope="row"),
                                    mo.Budget(sparsity=0.8, scope="layer", allocation="erk"), mo.Budget(k=40),
                                    mo.Budget(nm=(1, 4))])
def test_every_method_under_every_scope(budget):
    data = tiny_data()
    student = tiny_model()
    names = [n for n, p in student.named_parameters() if budget.nm is None or p.ndim == 2]  # N:M: rows of weights
    prob = mo.DistillProblem(student, [tiny_model(seed=1)], data.x, budget, loss="kl", params=names)
    for method in ("gmp", "acdc", "cram", "rigl", "set"):
        assert mo.method_spec(method).family == "training"
        res = mo.solve(prob, method=method, epochs=1, batch_size=32)  # the problem's distillation loss
        model = res.stats["model"]
        params = dict(model.named_parameters())
        assert all(not bool((params[n] * ~res.masks[n]).any()) for n in names)
        assert res.stats["gradient_samples"] == (2 if method == "cram" else 1) * 96


def test_determinism_given_a_seed():
    data = tiny_data()
    student = tiny_model()
    prob = mo.DistillProblem(student, [student], data.x, mo.Budget(sparsity=0.8, scope="layer"), loss="kl",
                             labels=data.y, alpha=1.0)
    for method, extra in (("set", {"every": 2}), ("rigl", {"every": 2}), ("cram", {"sparsities": (0.5, 0.8)})):
        runs = [mo.solve(prob, method=method, epochs=1, batch_size=16, train_on="labels", seed=s, **extra)
                for s in (3, 3, 4)]
        same = [all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks) and
                all(torch.equal(p, q) for p, q in zip(a.stats["model"].parameters(), b.stats["model"].parameters()))
                for a, b in ((runs[0], runs[1]), (runs[0], runs[2]))]
        assert same == [True, False], method


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="begin ≤ end"):
        GMP(begin=0.6, end=0.5)
    with pytest.raises(ValueError, match="warmup"):
        ACDC(warmup=0.9, final=0.2)
    with pytest.raises(ValueError, match="sparsities"):
        CrAM(sparsities=(1.0,))
    with pytest.raises(ValueError, match="alpha"):
        RigL(alpha=1.5)
    with pytest.raises(TypeError, match="SparseMethod"):
        sparse_train(tiny_model(), tiny_data(), mo.Budget(sparsity=0.5), "rigl", steps=1)
    with pytest.raises(ValueError, match="not parameters"):
        sparse_train(tiny_model(), tiny_data(), mo.Budget(sparsity=0.5), RigL(), steps=1, names=["nope"])


# ---------------------------------------------------------------- transfer


def test_class_subset_relabels():
    data = tiny_data(classes=3)
    sub = class_subset(data, [2, 0])
    assert sub.num_classes == 2 and set(sub.y.tolist()) <= {0, 1}
    assert torch.equal(sub.x[sub.y == 0], data.x[data.y == 2]) and torch.equal(sub.x[sub.y == 1], data.x[data.y == 0])
    with pytest.raises(ValueError, match="distinct labels"):
        class_subset(data, [0, 0])


def test_transfer_linear_keeps_features_and_full_keeps_the_mask():
    data = tiny_data(classes=3)
    task_a, task_b = class_subset(data, [0, 1]), class_subset(data, [1, 2])
    res = sparse_train(tiny_model(classes=2), task_a, mo.Budget(sparsity=0.7, scope="layer"), RigL(every=3),
                       steps=12, batch_size=16, verbose=False)
    backbone = {n: p.clone() for n, p in res.model.named_parameters() if not n.startswith("5.")}
    lin = transfer(res.model, task_b, "linear", masks=res.masks, steps=10, batch_size=16, lr=0.05, verbose=False)
    params = dict(lin.model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in backbone.items())
    assert params["5.weight"].shape == (2, 12) and not torch.equal(params["5.weight"], res.model[5].weight)
    assert lin.history[-1]["test_acc"] is not None
    full = transfer(res.model, task_b, "full", masks=res.masks, steps=10, batch_size=16, lr=0.05,
                    optimizer="sgd", weight_decay=0.1, verbose=False)
    params = dict(full.model.named_parameters())
    assert all(not bool((params[n] * ~m).any()) for n, m in res.masks.items() if not n.startswith("5."))
    assert not torch.equal(params["1.weight"], res.model[1].weight)  # the backbone trained
    assert bool((params["5.weight"] != 0).all())  # the new head is dense
    dense = tiny_model(classes=2)
    with pytest.raises(ValueError, match="non-zero weights"):
        transfer(dense, task_b, "linear", masks=res.masks, steps=1)
    with pytest.raises(ValueError, match="mode"):
        transfer(res.model, task_b, "probe", steps=1)
