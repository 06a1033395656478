"""The planted layer-wise generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import maskopt as mo


@pytest.mark.parametrize("scope", ["global", "row", "layer"])
def test_planted_mask_is_within_budget_and_exact_without_noise(scope):
    prob, planted = mo.data.planted_layerwise(n_samples=30, n_in=12, n_out=3, density=0.25, noise=0.0,
                                                  scope=scope, bias=True, seed=5)
    assert prob.allocation.violations(planted) == []
    assert planted["weight"].sum(dim=1).tolist() == [3, 3, 3]
    assert mo.evaluate(prob, planted) == pytest.approx(0.0, abs=1e-10)
    assert prob.budget == mo.Budget(density=0.25, scope=scope)


def test_planted_is_deterministic_and_seeded():
    a, ma = mo.data.planted_layerwise(seed=3)
    b, mb = mo.data.planted_layerwise(seed=3)
    c, _ = mo.data.planted_layerwise(seed=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.target, b.target) and ma == mb
    assert not torch.equal(a.inputs, c.inputs)


def test_planted_noise_level():
    prob, planted = mo.data.planted_layerwise(n_samples=4000, n_in=10, density=0.5, noise=0.2, seed=0)
    clean = prob.predict(planted["weight"])
    ratio = float((prob.target - clean).std() / clean.std())
    assert ratio == pytest.approx(0.2, rel=0.1)


def test_planted_errors():
    with pytest.raises(ValueError, match="positive"):
        mo.data.planted_layerwise(n_in=0)
    with pytest.raises(ValueError, match="noise must be"):
        mo.data.planted_layerwise(noise=-1.0)
    assert np.isfinite(mo.evaluate(*mo.data.planted_layerwise(noise=0.0)))
