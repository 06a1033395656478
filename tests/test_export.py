"""mo.export: the compressed state dict round-trips to identical outputs and is smaller on
disk; the semi-structured path is tested where CUDA with compute capability ≥ 8.0 exists."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import maskopt as mo
from maskopt.export import is_two_four, semi_structured_support


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.BatchNorm1d(128), nn.Linear(128, 10))


def masks_for(model: nn.Module, budget: mo.Budget) -> mo.MaskSet:
    weights = {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2}
    return mo.MaskSet(budget.allocate({n: tuple(w.shape) for n, w in weights.items()})
                      .project({n: w.abs() for n, w in weights.items()}))


@pytest.mark.parametrize("budget", [mo.Budget(nm=(2, 4)), mo.Budget(sparsity=0.9), mo.Budget(sparsity=0.99)])
def test_compressed_round_trip_gives_identical_outputs_and_a_smaller_file(tmp_path, budget):
    model = net().eval()
    masks = masks_for(model, budget)
    reference = mo.apply_masks(net().eval(), masks)  # the masked dense model
    x = torch.randn(16, 64)
    state = mo.export(model, masks, format="compressed")
    state.save(tmp_path / "c.safetensors")
    loaded = mo.CompressedState.load(tmp_path / "c.safetensors")
    back = loaded.load_into(net().eval())
    assert torch.equal(back(x), reference(x))  # bit for bit: the same weights, the same kernels
    for name, mask in masks.items():
        w = dict(back.named_parameters())[name]
        assert bool((w[~mask] == 0).all()) and torch.equal(w[mask], dict(model.named_parameters())[name][mask])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "dense.safetensors")
    compressed, dense = os.path.getsize(tmp_path / "c.safetensors"), os.path.getsize(tmp_path / "dense.safetensors")
    # masked entries: 4 bytes per kept value + 1 bit per weight (the docstring's count), exactly
    stored = sum(state.values[n].numel() * 4 + state.bits[n].numel() for n in masks)
    assert stored == 4 * masks.kept + sum((m.numel() + 7) // 8 for m in masks.values())
    assert loaded.nbytes == state.nbytes
    # the rest (dense entries + header, whose JSON also lists the shapes) within 1 KiB of the dense file's
    assert compressed < dense and compressed - stored <= dense - 4 * masks.size + 1024


def test_export_refuses_bad_input(tmp_path):
    model = net()
    with pytest.raises(ValueError, match="format must be one of"):
        mo.export(model, {}, format="csr")
    with pytest.raises(ValueError, match="names no parameter"):
        mo.export(model, {"9.weight": torch.ones(1, 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="has shape"):
        mo.export(model, {"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a readable maskopt compressed state"):
        mo.CompressedState.load(tmp_path / "x.safetensors")
    if semi_structured_support() is not None:
        with pytest.raises(ValueError, match="CUDA"):
            mo.export(model, masks_for(model, mo.Budget(nm=(2, 4))), format="semi_structured")


def test_two_four_check():
    assert is_two_four(torch.tensor([[1, 1, 0, 0, 0, 1, 0, 1]], dtype=torch.bool))
    assert not is_two_four(torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool))
    assert not is_two_four(torch.ones(2, 6, dtype=torch.bool))


@pytest.mark.skipif(semi_structured_support() is not None, reason="needs CUDA with compute capability ≥ 8.0")
def test_semi_structured_matches_the_masked_dense_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 128)).cuda().half().eval()
    masks = masks_for(model, mo.Budget(nm=(2, 4)))
    reference = mo.apply_masks(copy_of(model), masks)
    fast = mo.export(model, masks, format="semi_structured")
    assert all(type(m.weight).__name__.startswith("SparseSemiStructured") for m in fast if isinstance(m, nn.Linear))
    x = torch.randn(64, 256, device="cuda", dtype=torch.half)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), reference(x), rtol=2e-2, atol=2e-2)


def copy_of(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)
