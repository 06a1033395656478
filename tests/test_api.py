"""Registry, solve(), evaluate(), LayerwiseProblem validation and the simple baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import maskopt as mo

from oracles import numpy_loss, random_layerwise


def test_methods_registered():
    assert {"exact", "bruteforce", "magnitude", "random"} <= set(mo.methods())
    assert mo.methods() == sorted(mo.methods())


def test_unknown_method_lists_methods():
    prob, _ = mo.data.planted_layerwise()
    expected = r"Unknown method 'nope'. Registered methods: " + ", ".join(mo.methods())
    assert {"snip", "grasp", "synflow", "imp", "kstarts", "dissipating", "kstarts_dissipating"} <= set(mo.methods())
    with pytest.raises(ValueError, match=expected):
        mo.solve(prob, method="nope")


def test_unknown_option_lists_valid_options():
    prob, _ = mo.data.planted_layerwise()
    common = r"and the common options \['device', 'seed', 'verbose'\]"
    with pytest.raises(TypeError, match=r"\['colour'\].*'magnitude'.*valid options: none " + common):
        mo.solve(prob, method="magnitude", colour="red")
    with pytest.raises(TypeError, match=r"valid options: \['max_candidates'\] " + common):
        mo.solve(prob, method="bruteforce", chunk=3)


@pytest.mark.parametrize("method,option,value,match", [
    ("sigmoid", "polish", "no", "must be True or False"),  # a string would read as true
    ("exact", "verbose", 1, "must be True or False"),
    ("exact", "warm_start", "masks.safetensors", "must map parameter names to tensors"),
    ("sigmoid", "scores", [1.0, 2.0], "must map parameter names to tensors"),
    ("sigmoid", "loader", "batches", "must be a sequence or a loader of batches, not a str"),
    ("imp", "schedule", "0.5", "not a str"),
])
def test_options_of_the_wrong_kind_are_refused(method, option, value, match):
    prob = mo.DistillProblem(torch.nn.Linear(4, 2), [torch.nn.Linear(4, 2)], torch.randn(6, 4), mo.Budget(k=2))
    with pytest.raises(TypeError, match=f"Option '{option}' of method '{method}' .*{match}"):
        mo.solve(prob, method=method, **{option: value})


def test_numpy_bools_are_bools():
    prob, _ = mo.data.planted_layerwise()
    assert mo.solve(prob, method="sigmoid", steps=2, verbose=np.bool_(False)).masks.kept > 0


def test_method_refuses_other_problem_types():
    class Other(mo.Problem):
        budget = mo.Budget(k=1)

        def mask_shapes(self):
            return {"w": (2,)}

        def weights(self):
            return {"w": torch.tensor([1.0, -2.0])}

        def objective_tensor(self, masks, weights=None):
            return masks["w"].sum().double()

    with pytest.raises(ValueError, match=r"'exact' does not take a Other; it takes LayerwiseProblem.*magnitude"):
        mo.solve(Other(), method="exact")
    res = mo.solve(Other(), method="magnitude")  # magnitude takes any Problem
    assert res.masks["w"].tolist() == [False, True]
    assert res.objective == 1.0 and res.bound is None and res.gap is None and res.status == "feasible"


def test_evaluate_matches_numpy_and_checks_names():
    rng = np.random.default_rng(1)
    for loss in ("l1", "l2"):
        prob = random_layerwise(0, n=7, d=5, p=3, budget=mo.Budget(density=0.5), loss=loss, bias=True)
        mask = rng.random((3, 5)) < 0.5
        assert mo.evaluate(prob, {"weight": mask}) == pytest.approx(numpy_loss(prob, mask), rel=1e-12)
    with pytest.raises(ValueError, match="missing \\['weight'\\]"):
        mo.evaluate(prob, {"w": torch.ones(3, 5)})
    with pytest.raises(ValueError, match="has shape"):
        mo.evaluate(prob, {"weight": torch.ones(5, 3)})


def test_relative_gap():
    assert mo.relative_gap(10.0, None) is None
    assert mo.relative_gap(10.0, 9.0) == pytest.approx(0.1)
    assert mo.relative_gap(0.0, 0.0) == 0.0
    assert mo.relative_gap(2.0, 2.0 + 1e-15) == 0.0


@pytest.mark.parametrize("scope", ["global", "row", "layer"])
def test_magnitude_keeps_largest_weights_within_budget(scope):
    prob = random_layerwise(2, n=6, d=8, p=3, budget=mo.Budget(sparsity=0.75, scope=scope), loss="l1", bias=False)
    res = mo.solve(prob, method="magnitude")
    absw = prob.weight.abs().numpy()
    mask = res.masks["weight"].numpy()
    if scope == "row":
        for o in range(3):
            assert mask[o].sum() == 2
            assert absw[o][mask[o]].min() >= absw[o][~mask[o]].max()
    else:
        assert mask.sum() == 6
        assert absw[mask].min() >= absw[~mask].max()


def test_random_is_seeded():
    prob = random_layerwise(3, n=6, d=10, p=2, budget=mo.Budget(k=3, scope="row"), loss="l1", bias=False)
    a, b, c = (mo.solve(prob, method="random", seed=s) for s in (1, 1, 2))
    assert torch.equal(a.masks["weight"], b.masks["weight"])
    assert not torch.equal(a.masks["weight"], c.masks["weight"])
    assert a.masks["weight"].sum(dim=1).tolist() == [3, 3]


def test_result_masks_carry_method_and_budget():
    prob, _ = mo.data.planted_layerwise()
    res = mo.solve(prob, method="magnitude")
    assert res.masks.method == "magnitude" and res.masks.budget == prob.budget
    assert res.summary()["density"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"weight": np.ones((2, 4))}, ValueError, r"inputs have 3 features.*\(out, 3\)"),
        ({"target": np.ones((5, 3))}, ValueError, r"target must have shape \(N, out\) = \(5, 2\)"),
        ({"target": np.ones(5)}, ValueError, "target must be 2-D"),
        ({"bias": np.ones(3)}, ValueError, r"bias must have shape \(out,\) = \(2,\)"),
        ({"inputs": np.ones((5, 3), dtype=complex)}, TypeError, "inputs must hold real numbers"),
        ({"inputs": torch.ones(5, 3, dtype=torch.bool)}, TypeError, "inputs must hold real numbers"),
        ({"inputs": [[1.0, 2.0, 3.0]]}, TypeError, "numpy array or torch tensor"),
        ({"inputs": np.full((5, 3), np.nan)}, ValueError, "NaN or infinite"),
        ({"loss": "huber"}, ValueError, r"Unknown loss 'huber'; valid losses: l1 .*, l2 .*, linf .*, kl"),
        ({"loss": "linf"}, ValueError, r"layerwise problems take losses \['l1', 'l2'\]; got 'linf'"),
        ({"budget": 0.5}, TypeError, "budget must be a maskopt.Budget"),
    ],
)
def test_layerwise_problem_errors(kwargs, exc, match):
    args = {"inputs": np.ones((5, 3)), "weight": np.ones((2, 3)), "target": np.ones((5, 2)),
            "budget": mo.Budget(k=1), "loss": "l1", "bias": None}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        mo.LayerwiseProblem(**args)


def test_budget_larger_than_layer_is_an_error():
    prob = random_layerwise(0, n=4, d=3, p=2, budget=mo.Budget(k=7), loss="l1", bias=False)
    with pytest.raises(ValueError, match=r"k=7 exceeds the 6 maskable weights"):
        mo.solve(prob, method="magnitude")


def test_problem_inputs_are_copied_not_aliased():
    x = torch.randn(6, 4)
    w = torch.randn(2, 4, requires_grad=True)
    prob = mo.LayerwiseProblem(x, w, torch.zeros(6, 2), mo.Budget(k=1))
    before = mo.evaluate(prob, {"weight": torch.ones(2, 4)})
    with torch.no_grad():
        w.mul_(2.0)
    assert mo.evaluate(prob, {"weight": torch.ones(2, 4)}) == before


def test_every_method_declares_its_family_and_capabilities():
    families = {name: mo.method_spec(name).family for name in mo.methods()}
    assert families["exact"] == families["bruteforce"] == "exact"
    assert {n for n, f in families.items() if f == "relaxation"} == {"sigmoid", "anneal", "ste", "hierarchy"}
    assert {"magnitude", "random", "snip", "grasp", "synflow"} <= {n for n, f in families.items() if f == "one-shot"}
    assert {"imp", "kstarts", "dissipating"} <= {n for n, f in families.items() if f == "training"}
    assert mo.methods(family="relaxation") == ["anneal", "hierarchy", "sigmoid", "ste"]
    assert all(mo.method_spec(n).devices == ("cpu",) for n in ("exact", "bruteforce", "obs", "swap"))
    assert all(mo.method_spec(n).devices == ("cpu", "cuda") for n in (
        "sigmoid", "anneal", "ste", "hierarchy", "magnitude", "random", "snip", "grasp", "synflow", "wanda", "imp",
        "kstarts", "dissipating", "kstarts_dissipating"))
    with pytest.raises(ValueError, match="family must be one of"):
        mo.methods(family="greedy")


def test_accepts_answers_what_solve_would_refuse():
    small = random_layerwise(0, n=6, d=4, p=2, budget=mo.Budget(k=3), loss="l1", bias=False)
    big = random_layerwise(0, n=400, d=200, p=60, budget=mo.Budget(sparsity=0.5), loss="l1", bias=False)
    exact = mo.method_spec("exact")
    assert exact.accepts(small) and "max_size" in exact.refusal(big)
    with pytest.raises(mo.ProblemTooLargeError, match="max_size"):
        mo.solve(big, method="exact")
    assert "synflow" not in mo.methods(problem=small) and "exact" in mo.methods(problem=small)
    assert "exact" not in mo.methods(problem=big) and "magnitude" in mo.methods(problem=big)
    torch.manual_seed(0)
    kl = mo.DistillProblem(torch.nn.Linear(3, 2), [torch.nn.Linear(3, 2)], torch.randn(4, 3), mo.Budget(k=2),
                           loss="kl")
    assert "got loss='kl'" in exact.refusal(kl) and not exact.accepts(kl)
    with pytest.raises(mo.UnsupportedProblemError):
        mo.solve(kl, method="exact")
    assert mo.method_spec("bruteforce").accepts(kl)
