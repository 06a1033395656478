"""The one loss definition (maskopt.Loss): values against hand formulas, its declared
exact encodings against the builders that implement them, and unknown losses refused at
construction of every problem type."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.solvers.exact import layerwise, network
from maskopt.solvers.losses import KINDS, Loss


def test_residual_losses_match_hand_formulas_on_numpy_and_torch():
    s = np.array([[1.0, -2.0], [0.5, 3.0]])
    t = np.array([[0.0, 0.0], [1.0, 1.0]])
    d = s - t
    assert Loss("l1")(s, t) == pytest.approx(np.abs(d).sum())
    assert Loss("l2")(s, t) == pytest.approx((d**2).sum())
    assert Loss("linf")(s, t) == pytest.approx(np.abs(d).max())
    batch = torch.stack([torch.tensor(s), torch.tensor(t)])  # (B=2, N, K) -> (2,)
    assert Loss("l1")(batch, torch.tensor(t)).tolist() == pytest.approx([np.abs(d).sum(), 0.0])
    assert Loss("linf")(batch, torch.tensor(t)).tolist() == pytest.approx([np.abs(d).max(), 0.0])


def test_kl_and_cross_entropy_terms_match_hand_formulas():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    teacher = torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    T = 2.0
    q = torch.softmax(teacher / T, -1)
    logp = torch.log_softmax(s / T, -1)
    kl = T**2 * float((q * (q.log() - logp)).sum())
    assert float(Loss("kl", temperature=T)(s, teacher, q)) == pytest.approx(kl)
    y = torch.tensor([0, 2])
    ce = float(-torch.log_softmax(s, -1)[torch.arange(2), y].sum())
    value = Loss("kl", temperature=T, alpha=0.25)(s, teacher, q, y)
    assert float(value) == pytest.approx(0.75 * kl + 0.25 * ce)
    with pytest.raises(ValueError, match="needs labels"):
        Loss("l1", alpha=0.5)(s, teacher)


def test_batches_combine_as_the_loss_says():
    assert Loss("l1").batch_value(10.0, 4) == 2.5 and Loss("linf").batch_value(10.0, 4) == 10.0
    assert Loss("l2").full_value([1.0, 2.0]) == 3.0 and Loss("linf").full_value([1.0, 2.0]) == 2.0
    assert Loss("linf").combines_by_batch and not Loss("linf", alpha=0.5).combines_by_batch


def test_settings_and_names_are_validated():
    with pytest.raises(ValueError, match=r"Unknown loss 'huber'; valid losses: l1 .*l2 .*linf .*kl"):
        Loss("huber")
    with pytest.raises(ValueError, match="temperature must be"):
        Loss("kl", temperature=0.0)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        Loss("kl", alpha=1.5)
    with pytest.raises(ValueError, match="inside the Loss"):
        mo.DistillProblem(nn.Linear(2, 2), [nn.Linear(2, 2)], np.ones((3, 2)), mo.Budget(k=1), loss=Loss("kl"),
                          temperature=2.0)


def test_unknown_loss_raises_at_construction_of_every_problem():
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        mo.LayerwiseProblem(np.ones((3, 2)), np.ones((1, 2)), np.ones((3, 1)), mo.Budget(k=1), loss="hinge")
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        mo.DistillProblem(nn.Linear(2, 2), [nn.Linear(2, 2)], np.ones((3, 2)), mo.Budget(k=1), loss="hinge")
    with pytest.raises(ValueError, match=r"layerwise problems take losses \['l1', 'l2'\]"):
        mo.LayerwiseProblem(np.ones((3, 2)), np.ones((1, 2)), np.ones((3, 1)), mo.Budget(k=1), loss="kl")


def test_a_loss_object_is_the_problems_definition():
    torch.manual_seed(0)
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    x = torch.randn(5, 3)
    loss = Loss("kl", temperature=3.0)
    prob = mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.5), loss=loss)
    assert prob.criterion is loss and prob.loss == "kl" and prob.temperature == 3.0 and prob.alpha == 0.0
    masks = {"weight": torch.ones(2, 3, dtype=torch.bool)}
    with torch.no_grad():
        s = student.double()(x.double())
    assert mo.evaluate(prob, masks) == pytest.approx(float(loss(s, prob.target, prob.target_probs)), rel=1e-12)


def test_declared_encodings_have_builders_and_nothing_else_does():
    assert set(network.NET_LOSSES) == {"l1", "linf"} and set(layerwise.LAYER_LOSSES) == {"l1", "l2"}
    for name in network.NET_LOSSES:
        assert hasattr(network._Encoding, f"_add_{name}")
    assert {KINDS[n].encodings["layerwise"] for n in layerwise.LAYER_LOSSES} <= set(layerwise._BUILDERS)
    with pytest.raises(ValueError, match="encodes losses"):
        layerwise.solve_layerwise(np.ones((2, 2)), np.ones((1, 2)), np.ones((2, 1)), None, [(0, 2, 1)], "kl",
                                  None)


@pytest.mark.parametrize("loss", ["l1", "l2", "linf", "kl"])
def test_exact_encoding_is_declared_per_problem_kind(loss):
    declared = Loss(loss).encoding("distill"), Loss(loss).encoding("layerwise")
    expected = {"l1": ("milp", "milp"), "l2": (None, "oa"), "linf": ("milp", None), "kl": (None, None)}[loss]
    assert declared == expected
    assert Loss(loss, alpha=0.5).encoding("distill") is None  # a cross-entropy term has no MILP
    assert math.isfinite(Loss(loss).temperature)
