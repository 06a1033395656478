"""DistillProblem and the exact network MILP: encoding = network, exact = brute force,
bounds never cut off the optimum, certificates, refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.exact import network_layers
from maskopt.solvers.exact import network
from maskopt.solvers.exact.highs import MipSettings


def mlp(sizes, seed, bias=True):
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        mods.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def tiny_problem(seed, loss="l1", scope="global", n_teachers=2, sizes=(3, 3, 2), density=0.5, n=6, params=None):
    student = mlp(sizes, seed)
    teachers = [mlp((sizes[0], 5, sizes[-1]), 100 + seed + t) for t in range(n_teachers)]
    x = torch.randn(n, sizes[0], generator=torch.Generator().manual_seed(seed))
    return mo.DistillProblem(student, teachers, x, mo.Budget(density=density, scope=scope), loss=loss, params=params)


# ---------------------------------------------------------------- DistillProblem


def test_objective_matches_a_hand_written_torch_computation():
    student = mlp((4, 5, 3), 0)
    teachers = [mlp((4, 6, 3), 1), mlp((4, 2, 3), 2)]
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    masks = {"0.weight": torch.rand(5, 4) < 0.5, "2.weight": torch.rand(3, 5) < 0.5}
    ref = mlp((4, 5, 3), 0).double()
    with torch.no_grad():
        ref[0].weight.mul_(masks["0.weight"])
        ref[2].weight.mul_(masks["2.weight"])
        s = ref(x.double())
        tl = [t.double()(x.double()) for t in teachers]
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    t = w[0] * tl[0] + w[1] * tl[1]
    T = 2.0
    q = w[0] * torch.softmax(tl[0] / T, -1) + w[1] * torch.softmax(tl[1] / T, -1)
    kl = T**2 * (q * (q.log() - torch.log_softmax(s / T, -1))).sum()
    ce = nn.functional.cross_entropy(s, labels, reduction="sum")
    expected = {"l1": (s - t).abs().sum(), "linf": (s - t).abs().max(), "l2": ((s - t) ** 2).sum(), "kl": kl}
    for loss, value in expected.items():
        prob = mo.DistillProblem(student, teachers, x, mo.Budget(k=3), loss=loss, temperature=T,
                                 teacher_weights=[1.0, 3.0], labels=labels, alpha=0.3)
        assert mo.evaluate(prob, masks) == pytest.approx(float(0.7 * value + 0.3 * ce), rel=1e-10)
        batch = prob.objective_batch({n: torch.stack([m, torch.ones_like(m)]) for n, m in masks.items()})
        assert float(batch[0]) == pytest.approx(mo.evaluate(prob, masks), rel=1e-10)


def test_default_params_and_student_untouched():
    student = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    prob = mo.DistillProblem(student, [nn.Sequential(nn.Flatten(), nn.Linear(6, 2))], torch.randn(5, 1, 6),
                             mo.Budget(sparsity=0.5))
    assert list(prob.mask_shapes()) == ["0.weight", "2.weight"]
    mo.solve(prob, method="magnitude")
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert next(student.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss": "huber"}, "Unknown loss 'huber'; valid losses: l1"),
        ({"alpha": 0.5}, "needs labels"),
        ({"alpha": 1.5, "labels": torch.zeros(6, dtype=torch.long)}, r"alpha must lie in \[0, 1\]"),
        ({"temperature": 0.0}, "temperature must be a finite number > 0"),
        ({"temperature": float("inf")}, "temperature must be a finite number > 0"),
        ({"params": ["nope.weight"]}, r"params \['nope.weight'\] are not parameters"),
        ({"teacher_weights": [1.0]}, "teacher_weights must be 2"),
        ({"labels": torch.full((6,), 7)}, r"labels must lie in \[0, 2\)"),
    ],
)
def test_distill_problem_errors(kwargs, match):
    student, teachers = mlp((3, 3, 2), 0), [mlp((3, 4, 2), 1), mlp((3, 4, 2), 2)]
    with pytest.raises(ValueError, match=match):
        mo.DistillProblem(student, teachers, torch.randn(6, 3), mo.Budget(k=2), **kwargs)


def test_teacher_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"teacher 0 outputs shape \(6, 4\); the student outputs \(6, 2\)"):
        mo.DistillProblem(mlp((3, 3, 2), 0), [mlp((3, 3, 4), 1)], torch.randn(6, 3), mo.Budget(k=2))


# ---------------------------------------------------------------- the encoding


def deep_student():
    """Maskable biases, and two Linear layers without a ReLU between them."""
    torch.manual_seed(4)
    student = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    return student, ["0.weight", "0.bias", "2.weight", "3.weight", "5.weight", "5.bias"]


def relu_output_student():
    """A ReLU on the logits themselves."""
    torch.manual_seed(8)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU()), None


@pytest.mark.parametrize("make", [deep_student, relu_output_student])
@pytest.mark.parametrize("bounds", network.BOUNDS)
@pytest.mark.parametrize("loss", network.NET_LOSSES)
def test_fixed_mask_milp_value_equals_evaluate(make, bounds, loss):
    """With the mask fixed, the MILP's optimum is the torch objective: the encoding is the network."""
    student, params = make()
    prob = mo.DistillProblem(student, [mlp((3, 4, 2), 9)], torch.randn(5, 3), mo.Budget(density=1.0), loss=loss,
                             params=params)
    x, layers = network_layers(prob)
    shapes = prob.mask_shapes()
    rng = np.random.default_rng(0)
    for _ in range(3):
        masks = {n: torch.from_numpy(rng.random(s) < 0.6) for n, s in shapes.items()}
        flat = prob.allocation.flatten(masks).numpy()
        res = network.solve_network(x, layers, prob.target.numpy(), prob.allocation.units(), len(flat), loss,
                                    MipSettings(gap=0.0), bounds=bounds, fixed=flat)
        assert res.stats["milp_objective"] == pytest.approx(mo.evaluate(prob, masks), rel=1e-7, abs=1e-7)


def test_variable_and_constraint_counts_of_a_tiny_model():
    """1-2-1 ReLU net, one sample x = 1, hidden pre-activations in [-1, 1] and [-1, 2] (both unstable).
    Variables: 4 mask binaries + 2 h + 2 δ + 2 products q + u, v = 12.
    Constraints: 1 budget row + 3 per unstable ReLU (h ≥ z, h ≤ z − L(1 − δ), h ≤ Uδ) + 4 per product
    (McCormick) + 1 output equality = 1 + 6 + 8 + 1 = 16."""
    student = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        student[0].weight.copy_(torch.tensor([[2.0], [3.0]]))
        student[0].bias.copy_(torch.tensor([-1.0, -1.0]))
        student[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
        student[2].bias.zero_()
    prob = mo.DistillProblem(student, [nn.Linear(1, 1)], torch.ones(1, 1), mo.Budget(k=2))
    x, layers = network_layers(prob)
    lo, hi = network.interval_bounds(x, layers)[0]
    assert lo.tolist() == [[-1.0, -1.0]] and hi.tolist() == [[1.0, 2.0]]
    res = mo.solve(prob, method="exact", bounds="interval")
    assert res.stats["variables"] == 12
    assert res.stats["constraints"] == 16
    assert res.stats["relu_binaries"] == 2 and res.stats["products"] == 2


# ---------------------------------------------------------------- exact vs brute force

CASES = [(seed, loss, scope, n_t) for seed, (loss, scope, n_t) in
         enumerate(itertools.product(network.NET_LOSSES, ("global", "layer", "row"), (1, 3)))]


@pytest.mark.parametrize("seed,loss,scope,n_teachers", CASES)
def test_exact_equals_bruteforce(seed, loss, scope, n_teachers):
    assert_exact_is_the_bruteforce_optimum(tiny_problem(seed, loss=loss, scope=scope, n_teachers=n_teachers))


def assert_exact_is_the_bruteforce_optimum(prob):
    """``exact`` (gap 0) proves the brute-force optimum: same objective, a valid bound, within budget."""
    exact = mo.solve(prob, method="exact", gap=0.0)
    brute = mo.solve(prob, method="bruteforce")
    tol = 1e-6 * max(1.0, brute.objective)
    assert exact.status == "optimal"
    assert abs(exact.objective - brute.objective) <= tol
    assert exact.bound <= brute.objective + tol
    assert prob.allocation.violations(exact.masks) == []
    return exact


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_tightening_never_cuts_off_the_optimum(seed):
    prob = tiny_problem(seed, sizes=(3, 3, 2), density=0.4, n=5, params=["0.weight", "0.bias", "2.weight"])
    brute = mo.solve(prob, method="bruteforce")
    for bounds in network.BOUNDS:
        res = mo.solve(prob, method="exact", gap=0.0, bounds=bounds)
        assert res.objective == pytest.approx(brute.objective, rel=1e-6, abs=1e-9), bounds
        assert res.bound <= brute.objective + 1e-6


def preactivation_ranges(x, layers, units, n_mask):
    """Oracle: per layer, the elementwise (min, max) of the pre-activations (N, out) over every
    mask within the budget ``units``, enumerated and computed with numpy."""
    lows, highs = [None] * len(layers), [None] * len(layers)
    for keep in itertools.product((0, 1), repeat=n_mask):
        mask = np.array(keep, dtype=bool)
        if any(mask[a:b].sum() > c for a, b, c in units):
            continue
        h = x
        for li, layer in enumerate(layers):
            z = h @ (layer.weight * network._layer_mask(layer, mask, "weight")).T + layer.bias
            lows[li] = z if lows[li] is None else np.minimum(lows[li], z)
            highs[li] = z if highs[li] is None else np.maximum(highs[li], z)
            h = np.maximum(z, 0.0) if layer.relu else z
    return lows, highs


@pytest.mark.parametrize("scope,density", [("row", 0.34), ("layer", 0.2), ("global", 0.15)])
def test_budget_aware_interval_bounds_contain_every_mask_and_are_tight_on_layer_one(scope, density):
    """Oracle: every mask within the budget (enumerated), its pre-activations computed with
    numpy. The bounds contain them all; on layer 1 the budget-aware bound is attained (the
    top-c contributions of a row are a feasible mask), and it is tighter than the plain one."""
    prob = tiny_problem(4, sizes=(3, 3, 2), density=density, scope=scope, n=3)
    x, layers = network_layers(prob)
    units, n_mask = prob.allocation.units(), prob.allocation.size
    aware = network.interval_bounds(x, layers, units)
    plain = network.interval_bounds(x, layers)
    seen = preactivation_ranges(x, layers, units, n_mask)
    for li, (lo, hi) in enumerate(aware):
        assert (lo <= seen[0][li] + 1e-12).all() and (hi >= seen[1][li] - 1e-12).all()
        assert (lo >= plain[li][0] - 1e-12).all() and (hi <= plain[li][1] + 1e-12).all()
    np.testing.assert_allclose(aware[0][0], seen[0][0], atol=1e-12)
    np.testing.assert_allclose(aware[0][1], seen[1][0], atol=1e-12)
    assert any((lo > p[0] + 1e-9).any() or (hi < p[1] - 1e-9).any() for (lo, hi), p in zip(aware, plain))


def test_milp_bounds_are_the_exact_range_over_all_masks_on_layer_two():
    """Oracle: every mask within the budget enumerated; layer-2 pre-activations computed with
    numpy. MILP bounds (solved to optimality on this size) contain them and are attained."""
    prob = tiny_problem(6, sizes=(2, 3, 2, 2), density=0.3, n=2)
    x, layers = network_layers(prob)
    units, n_mask = prob.allocation.units(), prob.allocation.size
    milp = network.compute_bounds(x, layers, units, n_mask, "milp", MipSettings())
    lp = network.compute_bounds(x, layers, units, n_mask, "lp", MipSettings())
    lows, highs = preactivation_ranges(x, layers, units, n_mask)
    lo_seen, hi_seen = lows[1], highs[1]
    lo, hi = milp[1]
    tol = 1e-4 * (1 + np.abs(hi_seen) + np.abs(lo_seen))
    assert (lo <= lo_seen + 1e-9).all() and (hi >= hi_seen - 1e-9).all()
    assert (lo >= lo_seen - tol).all() and (hi <= hi_seen + tol).all()
    assert (lo >= lp[1][0] - 1e-9).all() and (hi <= lp[1][1] + 1e-9).all()


def test_lp_bounds_are_inside_interval_bounds():
    """LP tightening stays inside the interval bounds and, on this instance (layer budgets couple
    the first layer's masks with the second layer's activations), tightens some."""
    prob = tiny_problem(3, sizes=(4, 5, 5, 2), density=0.2, scope="layer", n=4)
    x, layers = network_layers(prob)
    units, n_mask = prob.allocation.units(), prob.allocation.size
    iv = network.compute_bounds(x, layers, units, n_mask, "interval", MipSettings())
    lp = network.compute_bounds(x, layers, units, n_mask, "lp", MipSettings())
    for (a, b), (c, d) in zip(iv[:-1], lp[:-1]):
        assert (c >= a - 1e-12).all() and (d <= b + 1e-12).all() and (c <= d).all()
    assert any((c > a + 1e-9).any() or (d < b - 1e-9).any() for (a, b), (c, d) in zip(iv, lp))


# ---------------------------------------------------------------- certificates, limits, refusals


def test_certify_a_magnitude_mask():
    prob = tiny_problem(5, sizes=(3, 4, 2), density=0.4)
    mag = mo.solve(prob, method="magnitude")
    opt = mo.solve(prob, method="bruteforce").objective
    cert = mo.certify(prob, mag.masks, time_limit=30)
    assert cert.objective == pytest.approx(mag.objective)
    assert cert.bound <= opt + 1e-6 * max(1.0, opt)
    assert cert.gap == mo.relative_gap(cert.objective, cert.bound)
    assert cert.gap >= (mag.objective - opt) / mag.objective - 1e-6
    assert cert.best.objective <= mag.objective + 1e-12
    assert cert.status == "optimal"


def test_time_limit_returns_incumbent_and_bound():
    prob = tiny_problem(6, sizes=(8, 12, 12, 3), density=0.3, n=40)
    res = mo.solve(prob, method="exact", time_limit=1.0)
    assert res.status == "time_limit"
    assert res.bound <= res.objective and prob.allocation.violations(res.masks) == []


def test_warm_start_for_networks():
    prob = tiny_problem(7, sizes=(3, 4, 2), density=0.4)
    best = mo.solve(prob, method="bruteforce")
    res = mo.solve(prob, method="exact", warm_start=best.masks)
    assert res.stats["warm_start_objective"] == pytest.approx(best.objective)
    assert res.stats["start_objective"] == pytest.approx(best.objective, rel=1e-12)  # the start handed over
    assert res.stats["mip_starts_accepted"] == 1  # HiGHS's first incumbent was that start
    assert res.objective <= best.objective + 1e-9


@pytest.mark.parametrize(
    "student,loss,match",
    [
        (nn.Sequential(nn.Conv1d(1, 1, 2), nn.Flatten(), nn.Linear(2, 2)), "l1", "got Conv1d at 0"),
        (nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)), "l1", "got Tanh at 1"),
        (mlp((3, 3, 2), 0), "kl", "loss 'l1' or 'linf'"),
        (mlp((3, 3, 2), 0), "l2", "not MIQPs"),
    ],
)
def test_exact_refuses_what_it_cannot_encode(student, loss, match):
    x = torch.randn(4, 1, 3) if isinstance(student[0], nn.Conv1d) else torch.randn(4, 3)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    prob = mo.DistillProblem(student, [teacher], x, mo.Budget(k=2), loss=loss)
    with pytest.raises(mo.UnsupportedProblemError, match=match):
        mo.solve(prob, method="exact")


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def _hooked():
    student = mlp((3, 3, 2), 0)
    student[0].register_forward_hook(lambda mod, inp, out: 2 * out)
    return student


@pytest.mark.parametrize(
    "student,match",
    [
        (nn.Sequential(nn.Linear(3, 3), _Residual(nn.Linear(3, 3), nn.ReLU()), nn.Linear(3, 2)),
         "_Residual at 1 overrides the forward of Sequential"),
        (_hooked(), "Linear at 0 has forward hooks"),
    ],
)
def test_exact_refuses_a_forward_it_does_not_encode(student, match):
    prob = mo.DistillProblem(student, [mlp((3, 3, 2), 1)], torch.randn(5, 3), mo.Budget(k=4))
    with pytest.raises(mo.UnsupportedProblemError, match=match):
        mo.solve(prob, method="exact")


def test_the_encoding_is_checked_against_torchs_forward_pass():
    from maskopt.exact import _check_encoding

    prob = tiny_problem(0)
    x, layers = network_layers(prob)
    masks = [np.ones(prob.allocation.size, dtype=bool), np.arange(prob.allocation.size) % 3 == 0]
    _check_encoding(prob, x, layers, masks)  # the true chain passes
    layers[0].relu = False  # a chain that computes something else is refused
    with pytest.raises(mo.UnsupportedProblemError, match="differs from the Linear/ReLU chain"):
        _check_encoding(prob, x, layers, masks)


def _reused(tied: bool):
    """A student that applies one 3x3 Linear twice (``tied=False``: the same module object twice;
    ``tied=True``: two modules sharing one weight tensor, their biases separate)."""
    torch.manual_seed(5)
    first, head = nn.Linear(3, 3), nn.Linear(3, 2)
    second = nn.Linear(3, 3) if tied else first
    if tied:
        second.weight = first.weight
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), head)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("loss", network.NET_LOSSES)
def test_a_layer_used_twice_is_encoded_at_each_use(tied, loss):
    """The shared weight has one mask (named once by named_parameters) that acts at both uses."""
    student = _reused(tied)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    prob = mo.DistillProblem(student, [mlp((3, 4, 2), 7), mlp((3, 5, 2), 8)], x, mo.Budget(k=5), loss=loss)
    assert prob.params == ["0.weight", "4.weight"]
    assert_exact_is_the_bruteforce_optimum(prob)


def _dead_layer_problem():
    """A student whose second hidden layer is dead on every sample, with maskable biases: here
    HiGHS 1.16, given the magnitude MIP start, proves the optimum yet returns the start."""
    torch.manual_seed(10)
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5), nn.ReLU(), nn.Identity(),
                            nn.Sequential(nn.Linear(3, 2), nn.ReLU()), nn.Linear(2, 2))
    teachers = [nn.Sequential(nn.Flatten(), nn.Linear(4, 2)) for _ in range(3)]
    x = torch.randn(3, 2, 2)
    return mo.DistillProblem(student, teachers, x, mo.Budget(k=3), loss="l1",
                             params=["1.bias", "5.0.weight", "6.bias"], teacher_weights=[1, 2, 3])


def test_a_mip_start_returned_as_the_solution_is_not_called_optimal():
    exact = assert_exact_is_the_bruteforce_optimum(_dead_layer_problem())
    assert exact.stats["milp_objective"] == pytest.approx(exact.objective, rel=1e-9)


def test_without_time_to_solve_again_the_returned_solution_is_reported_as_it_is(monkeypatch):
    """When HiGHS's solution does not attain the objective it reports and no time is left, the
    session reports the solution's own objective and does not claim optimality."""
    from maskopt.solvers.exact.highs import HighsSession

    monkeypatch.setattr(HighsSession, "_solution_attains", lambda self, objective: False)
    prob = _dead_layer_problem()
    x, layers = network_layers(prob)
    start = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    res = network.solve_network(x, layers, prob.target.numpy(), prob.allocation.units(), prob.allocation.size,
                                "l1", MipSettings(time_limit=1e-9, gap=0.0), candidates=[start])
    assert res.status == "time_limit"
    assert res.bound <= mo.solve(prob, method="bruteforce").objective + 1e-9
    masks = prob.allocation.unflatten(torch.from_numpy(res.mask))
    assert res.objective == pytest.approx(mo.evaluate(prob, masks), rel=1e-9)


def test_exact_refuses_cross_entropy_mix_and_oversize():
    prob = mo.DistillProblem(mlp((3, 3, 2), 0), [mlp((3, 3, 2), 1)], torch.randn(4, 3), mo.Budget(k=2),
                             labels=torch.zeros(4, dtype=torch.long), alpha=0.5)
    with pytest.raises(mo.UnsupportedProblemError, match="alpha=0.5"):
        mo.solve(prob, method="exact")
    prob = tiny_problem(0, sizes=(3, 4, 2))
    with pytest.raises(mo.ProblemTooLargeError, match="max_size=100"):
        mo.solve(prob, method="exact", max_size=100)
    with pytest.raises(ValueError, match="bounds= applies"):
        mo.solve(mo.data.planted_layerwise()[0], method="exact", bounds="lp")
