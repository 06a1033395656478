"""Pruning baselines: exact budgets, nested IMP/SynFlow rounds, scores against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.baselines import (
    DissipatingOptions,
    ImpOptions,
    ImpRound,
    dissipating_scores,
    geometric_caps,
    grasp_scores,
    imp_caps,
    iterative_magnitude_pruning,
    problem_trainer,
    snip_scores,
    synflow_scores,
)

BASELINES = ["random", "magnitude", "snip", "grasp", "synflow", "imp", "kstarts", "dissipating", "kstarts_dissipating"]
FAST = {"imp": {"epochs": 1}, "kstarts": {"k": 3, "epochs": 1}, "dissipating": {"epochs": 1},
        "kstarts_dissipating": {"k": 2, "epochs": 1}, "synflow": {"iterations": 10}}


@pytest.fixture(scope="module")
def task():
    data, teacher = mo.data.planted_classification(n_train=96, n_test=32, n_in=8, hidden=12, num_classes=3, seed=1)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))
    return data, teacher, student


def kept_per_unit(alloc, masks):
    flat = alloc.flatten(masks).to(torch.int64)
    return [int(flat[a:b].sum()) for a, b, _ in alloc.units()]


@pytest.mark.parametrize("budget", [mo.Budget(sparsity=0.75), mo.Budget(sparsity=0.6, scope="layer"),
                                    mo.Budget(k=3, scope="row"), mo.Budget(density=0.3, scope="row", allocation="erk")],
                         ids=["global", "layer", "row-k", "row-erk"])
@pytest.mark.parametrize("method", BASELINES)
def test_every_baseline_keeps_exactly_the_cap_of_every_unit(task, method, budget):
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, budget, labels=data.y)
    res = mo.solve(prob, method=method, **FAST.get(method, {}))
    alloc = prob.allocation
    assert kept_per_unit(alloc, res.masks) == [c for _, _, c in alloc.units()]
    assert res.stats["gradient_samples"] >= 0
    assert res.objective == mo.evaluate(prob, res.masks)


@pytest.mark.parametrize("method", BASELINES)
def test_module_scope_counts_weight_and_bias_together(task, method):
    """Weights and biases masked, one count per Linear: every baseline keeps exactly each
    module's cap, and a module's count is shared (its bias may keep more than its share)."""
    data, teacher, student = task
    names = [n for n, _ in student.named_parameters()]
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.7, scope="module"),
                             labels=data.y, params=names)
    res = mo.solve(prob, method=method, **FAST.get(method, {}))
    alloc = prob.allocation
    assert [(a, b) for a, b, _ in alloc.units()] == [(0, 8 * 12 + 12), (8 * 12 + 12, alloc.size)]
    assert kept_per_unit(alloc, res.masks) == [c for _, _, c in alloc.units()]


@pytest.mark.parametrize("method", ["imp", "kstarts", "dissipating", "kstarts_dissipating", "snip", "synflow"])
def test_baselines_are_deterministic_and_leave_the_student_alone(task, method):
    data, teacher, student = task
    before = {k: v.clone() for k, v in student.state_dict().items()}
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.8), labels=data.y)
    a = mo.solve(prob, method=method, **FAST.get(method, {}))
    b = mo.solve(prob, method=method, **FAST.get(method, {}))
    assert a.masks == b.masks
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())


def test_imp_masks_are_nested_and_end_on_the_budget(task):
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.9, scope="layer"), labels=data.y)
    trainer = problem_trainer(prob, ImpOptions(epochs=1, train_on="labels"))
    rounds = [r for r in iterative_magnitude_pruning(trainer, prob.allocation, rate=0.2) if isinstance(r, ImpRound)]
    assert len(rounds) == len(imp_caps(prob.allocation, 0.2, None)) >= 10  # 0.8^10 ≈ 0.107 > 0.1
    for prev, cur in zip(rounds, rounds[1:]):
        for n in cur.masks:
            assert not (cur.masks[n] & ~prev.masks[n]).any()
        assert cur.density < prev.density
    assert kept_per_unit(prob.allocation, rounds[-1].masks) == [c for _, _, c in prob.allocation.units()]
    # each round removes 20 % of the remaining weights of each layer (up to rounding and the floor)
    first = kept_per_unit(prob.allocation, rounds[0].masks)
    assert first == [round(0.8 * 96), round(0.8 * 36)]
    params = dict(rounds[-1].result.model.named_parameters())  # the last round's trained ticket
    for n, m in rounds[-1].masks.items():
        assert torch.all(params[n][~m] == 0) and torch.all(params[n][m] != 0)


def test_imp_prunes_by_trained_magnitude_and_rewinds(task):
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.5), labels=data.y)
    trainer = problem_trainer(prob, ImpOptions(epochs=3, lr=0.05, train_on="labels"))
    init = trainer.state()
    it = iterative_magnitude_pruning(trainer, prob.allocation, schedule=(0.5,), rewind_step=2)
    dense = next(it)
    trained = {n: dense.model.state_dict()[n].clone() for n in prob.params}
    first = next(it)
    expected = prob.allocation.project({n: w.abs() for n, w in trained.items()})
    assert all(torch.equal(first.masks[n], expected[n]) for n in prob.params)
    assert first.result.steps == dense.steps - 2
    assert not torch.equal(init["0.weight"], trained["0.weight"])
    with pytest.raises(StopIteration):
        next(it)


def test_imp_rewinds_every_round_to_the_same_early_state(task):
    """With rewind_step and score_step, each round retrains from the dense run's state after
    rewind_step steps (checked against independent runs, up to float rounding), not a later round's."""
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.6), labels=data.y)
    opts = ImpOptions(epochs=6, lr=0.05, train_on="labels")  # 6 steps a run; retrains of 4
    trainer = problem_trainer(prob, opts)
    ref = problem_trainer(prob, opts)
    ref.run(None, trainer.state(), steps=2)
    early = ref.state()
    it = iterative_magnitude_pruning(trainer, prob.allocation, schedule=(0.2, 0.4, 0.6), rewind_step=2, score_step=3)
    dense = next(it)
    count = 0
    for item in it:
        ref.run(item.masks, early, steps=dense.steps - 2)
        assert all(torch.allclose(trainer.weights()[n], ref.weights()[n], atol=1e-6) for n in prob.params)
        count += 1
    assert count == 3


def test_imp_score_step_prunes_by_the_checkpoint_of_each_run(task):
    """score_step=k: every round's mask is the projection of |w| after k steps of the
    previous run, checked against independent k-step runs from the same states."""
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.6), labels=data.y)
    opts = ImpOptions(epochs=3, lr=0.05, train_on="labels")
    trainer = problem_trainer(prob, opts)
    init, k = trainer.state(), 2
    rounds = list(iterative_magnitude_pruning(trainer, prob.allocation, schedule=(0.3, 0.6), score_step=k))
    assert rounds[0].steps > k
    masks = None
    for item in rounds[1:]:
        ref = problem_trainer(prob, opts)
        ref.run(masks, init, steps=k)  # the previous run, stopped after k steps
        scores = {n: w.abs().double() if masks is None else torch.where(masks[n], w.abs().double(), -torch.inf)
                  for n, w in ref.weights().items()}
        caps = kept_per_unit(prob.allocation, item.masks)
        expected = prob.allocation.project(scores, caps)
        assert all(torch.equal(item.masks[n], expected[n]) for n in prob.params)
        masks = item.masks
    final = [r for r in iterative_magnitude_pruning(problem_trainer(prob, opts), prob.allocation, schedule=(0.3, 0.6))]
    assert any(not torch.equal(a.masks[n], b.masks[n]) for a, b in zip(rounds[1:], final[1:]) for n in prob.params)
    res = mo.solve(prob, method="imp", epochs=3, lr=0.05, train_on="labels", schedule=(0.3, 0.6), score_step=k)
    assert res.masks == rounds[-1].masks
    with pytest.raises(ValueError, match="score_step=1000 exceeds"):
        mo.solve(prob, method="imp", epochs=1, score_step=1000)
    with pytest.raises(ValueError, match="score_step must be"):
        ImpOptions(score_step=0)


def test_imp_caps_follow_a_schedule_and_refuse_growth():
    alloc = mo.Budget(sparsity=0.9, scope="layer").allocate({"a": (10, 10), "b": (5, 4)})
    assert imp_caps(alloc, 0.2, (0.5, 0.8)) == [[50, 10], [20, 4], [10, 2]]
    with pytest.raises(ValueError, match="must not increase"):
        imp_caps(alloc, 0.2, (0.8, 0.5))
    assert geometric_caps(alloc, 0.0) == [100, 20] and geometric_caps(alloc, 1.0) == [10, 2]
    assert geometric_caps(alloc, 0.5) == [round(100 * 0.1**0.5), round(20 * 0.1**0.5)]


@pytest.mark.parametrize("budget,shapes", [
    (mo.Budget(k=1), {"a": (3, 4)}),
    (mo.Budget(density=0.25, scope="row"), {"a": (3, 4)}),
    (mo.Budget(sparsity=0.99, scope="row"), {"a": (2, 40)}),
    (mo.Budget(density=0.01, scope="layer"), {"a": (8, 8)}),
])
@pytest.mark.parametrize("rate", [0.2, 0.1])
def test_imp_caps_reach_small_caps(budget, shapes, rate):
    """Counts where k·rate < 1/2 still lose a weight each round, so the rounds always end."""
    alloc = budget.allocate(shapes)
    caps = imp_caps(alloc, rate, None)
    final = [c for _, _, c in alloc.units()]
    assert caps[-1] == final
    sizes = [stop - start for start, stop, _ in alloc.units()]
    for before, after in zip([sizes, *caps], caps):
        assert all(b > a or a == c for b, a, c in zip(before, after, final))  # each unit shrinks until its cap
        assert all(a >= min(round(b * (1 - rate)), b - 1) for b, a in zip(before, after))  # by at most the rate


def test_imp_rounds_give_a_geometric_schedule_per_unit(task):
    alloc = mo.Budget(sparsity=0.9, scope="layer").allocate({"a": (10, 10), "b": (5, 4)})
    assert imp_caps(alloc, 0.2, None, rounds=2) == [[round(100 * 0.1**0.5), round(20 * 0.1**0.5)], [10, 2]]
    assert imp_caps(alloc, 0.2, None, rounds=1) == [[10, 2]]
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.9, scope="layer"), labels=data.y)
    res = mo.solve(prob, method="imp", rounds=3, epochs=1, train_on="labels")
    assert [h["round"] for h in res.history] == [1, 2, 3] and res.stats["rounds"] == 3
    assert kept_per_unit(prob.allocation, res.masks) == [c for _, _, c in prob.allocation.units()]
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="rounds must be an integer"):
            mo.solve(prob, method="imp", rounds=bad)
    with pytest.raises(ValueError, match="not both"):
        mo.solve(prob, method="imp", rounds=3, schedule=(0.5, 0.9))


def tiny(w1: list[list[float]], w2: list[float]) -> nn.Module:
    net = nn.Sequential(nn.Linear(len(w1[0]), len(w1), bias=False), nn.ReLU(), nn.Linear(len(w1), 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1))
        net[2].weight.copy_(torch.tensor([w2]))
    return net


class Constant(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 1), self.value, dtype=x.dtype)


def test_snip_and_grasp_match_hand_computed_derivatives():
    # s = w2 · relu(W1 x), L = (s − t)², one sample x = (1, 2), t = 0.5
    W1, w2, x, t = [[0.5, -0.25], [1.0, 0.5]], [2.0, -1.0], torch.tensor([[1.0, 2.0]]), 0.5
    prob = mo.DistillProblem(tiny(W1, w2), [Constant(t)], x, mo.Budget(k=2), loss="l2")
    h = [max(0.0, W1[j][0] * 1 + W1[j][1] * 2) for j in range(2)]  # (0, 2): unit 0 is inactive
    s = w2[0] * h[0] + w2[1] * h[1]
    u = s - t  # −2.5
    g1 = [[2 * u * w2[j] * (h[j] > 0) * xk for xk in (1.0, 2.0)] for j in range(2)]
    g2 = [2 * u * h[j] for j in range(2)]
    snip = snip_scores(prob)
    assert torch.allclose(snip["0.weight"], torch.tensor(W1, dtype=torch.float64).abs() * torch.tensor(g1).abs())
    assert torch.allclose(snip["2.weight"], (torch.tensor([w2]) * torch.tensor([g2])).abs().double())
    # Hessian of L in (W1[1,0], W1[1,1], w2[1]) (unit 0 is dead: its rows and columns vanish)
    # L = (w2_1 (a + 2b) − t)², with a, b = W1[1]; ∂L/∂a = 2u w2_1, ∂L/∂b = 4u w2_1, ∂L/∂w2_1 = 2u h1
    a, b, c = 1.0, 0.5, -1.0
    hess = torch.tensor([[2 * c * c, 4 * c * c, 2 * (c * (a + 2 * b) + u)],
                         [4 * c * c, 8 * c * c, 4 * (c * (a + 2 * b) + u)],
                         [2 * (c * (a + 2 * b) + u), 4 * (c * (a + 2 * b) + u), 2 * (a + 2 * b) ** 2]],
                        dtype=torch.float64)
    g = torch.tensor([2 * u * c, 4 * u * c, 2 * u * (a + 2 * b)], dtype=torch.float64)
    hg = hess @ g
    grasp = grasp_scores(prob)
    assert torch.allclose(grasp["0.weight"][1], torch.tensor([a, b], dtype=torch.float64) * hg[:2])
    assert grasp["2.weight"][0, 1].item() == pytest.approx(c * hg[2].item())
    assert torch.all(grasp["0.weight"][0] == 0) and grasp["2.weight"][0, 0] == 0  # w2_0 multiplies h0 = 0


def test_synflow_matches_the_path_norm_derivative():
    # R = Σ_j |w2_j| Σ_k |W1_jk| (all-ones input, absolute weights): score = |w| ∂R/∂|w|
    W1, w2 = [[0.5, -0.25], [1.0, 0.5]], [2.0, -1.0]
    prob = mo.DistillProblem(tiny(W1, w2), [Constant(0.0)], torch.ones(1, 2), mo.Budget(k=2))
    sf = synflow_scores(prob)
    a1, a2 = torch.tensor(W1).abs().double(), torch.tensor(w2).abs().double()
    assert torch.allclose(sf["0.weight"], a1 * a2[:, None])
    assert torch.allclose(sf["2.weight"][0], a2 * a1.sum(dim=1))
    masked = synflow_scores(prob, {"0.weight": torch.tensor([[True, False], [True, True]]),
                                   "2.weight": torch.tensor([[True, True]])})
    assert masked["2.weight"][0, 0].item() == pytest.approx(2.0 * 0.5)


def test_training_baselines_refuse_layerwise_problems_and_bad_options(task):
    prob, _ = mo.data.planted_layerwise(seed=0)
    with pytest.raises(ValueError, match="'imp' does not take a LayerwiseProblem"):
        mo.solve(prob, method="imp")
    assert mo.solve(prob, method="snip").masks.density == pytest.approx(0.25)
    data, teacher, student = task
    dprob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.5))
    with pytest.raises(ValueError, match="train_on='labels' needs"):
        mo.solve(dprob, method="imp", train_on="labels")
    with pytest.raises(ValueError, match="rate must lie"):
        mo.solve(dprob, method="imp", rate=1.5)
    with pytest.raises(ValueError, match="fitness must be"):
        mo.solve(dprob, method="kstarts", fitness="luck")


def test_dissipating_scores_of_weights_that_never_move(task):
    """Zero weights reading an always-zero input never move: their score is 0 (not NaN, which
    would cost the mask one kept weight each); every budget is still met exactly."""
    data, teacher, _ = task
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))
    with torch.no_grad():
        student[0].weight[:, :2] = 0.0
    x = data.x.clone()
    x[:, :2] = 0.0
    for budget in (mo.Budget(density=0.5), mo.Budget(density=0.9, scope="row")):
        prob = mo.DistillProblem(student, [teacher], x, budget, loss="l2")
        trainer = problem_trainer(prob, DissipatingOptions(epochs=1, batch_size=16))
        scores, _ = dissipating_scores(trainer, trainer.state())
        assert torch.equal(scores["0.weight"][:, :2], torch.zeros(12, 2, dtype=torch.float64))
        assert not any(bool(s.isnan().any()) for s in scores.values())
        res = mo.solve(prob, method="dissipating", epochs=1, batch_size=16)
        assert kept_per_unit(prob.allocation, res.masks) == [c for _, _, c in prob.allocation.units()]


TRAINING = ["imp", "kstarts", "dissipating", "kstarts_dissipating"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method,extra", [(m, {}) for m in BASELINES] + [(m, {"train_on": "labels"}) for m in TRAINING],
                         ids=[*BASELINES, *(f"{m}-labels" for m in TRAINING)])
def test_baselines_run_on_cuda(task, method, extra):
    """Every baseline on CUDA (the training ones on the problem's objective and on its labels:
    their step hooks keep buffers beside the parameters, their batch indices move with the
    batches): exactly the cap of every unit, CPU masks, the run recorded on CUDA."""
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=0.5, scope="layer"), labels=data.y)
    res = mo.solve(prob, method=method, device="cuda", **FAST.get(method, {}), **extra)
    assert kept_per_unit(prob.allocation, res.masks) == [c for _, _, c in prob.allocation.units()]
    assert res.stats["device"] == "cuda" and all(m.device.type == "cpu" for m in res.masks.values())


def test_training_baselines_take_a_dataloader(task):
    data, teacher, student = task
    prob = mo.DistillProblem(student, [teacher], data.x[:16], mo.Budget(sparsity=0.5))
    loader, _ = data.loaders(batch_size=32)
    res = mo.solve(prob, method="dissipating", loader=loader, epochs=1)
    assert res.stats["gradient_samples"] == 96
