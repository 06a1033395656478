"""Tests for maskopt.masks: the MaskSet container, its safetensors file, and masking PyTorch modules.

Modelled on PyTorch's test/nn/test_pruning.py (no-op all-ones mask, parameter identity, state_dict
round trips, zero gradients of pruned weights) and open_lth's pruning/mask.py (validated 0/1 masks
keyed by state_dict names, with sparsity and density).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from torch.nn.utils import parametrize

import maskopt
from maskopt.budget import Budget
from maskopt.masks import MaskSet, apply_masks, masks_of, remove_masks

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def _mask(shape, seed: int, density: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) < density
    m.view(-1)[0] = False  # at least one pruned
    m.view(-1)[-1] = True  # at least one kept
    return m


def _inputs(seed: int = 1, n: int = 8) -> torch.Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))


def _reference_forward(x, w0, b0, w2, b2):
    return F.linear(F.relu(F.linear(x, w0, b0)), w2, b2)


# ---------------------------------------------------------------------------------------------
# MaskSet validation
# ---------------------------------------------------------------------------------------------


class TestMaskSetValidation:
    def test_accepts_bool_tensor(self):
        m = torch.tensor([[True, False], [False, True]])
        ms = MaskSet({"w": m})
        assert ms["w"].dtype == torch.bool
        assert torch.equal(ms["w"], m)

    def test_accepts_numpy_bool(self):
        a = np.array([True, False, True])
        ms = MaskSet({"w": a})
        assert ms["w"].dtype == torch.bool
        assert ms["w"].tolist() == [True, False, True]

    @pytest.mark.parametrize(
        "value",
        [
            torch.tensor([0, 1, 1, 0]),
            torch.tensor([0.0, 1.0, 1.0, 0.0]),
            torch.tensor([0, 1, 1, 0], dtype=torch.uint8),
            torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64),
            np.array([0, 1, 1, 0]),
            np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32),
            [0, 1, 1, 0],
        ],
    )
    def test_zero_one_numbers_converted_to_bool(self, value):
        ms = MaskSet({"w": value})
        assert ms["w"].dtype == torch.bool
        assert ms["w"].tolist() == [False, True, True, False]

    @pytest.mark.parametrize(
        "value",
        [
            torch.tensor([0.0, 0.5, 1.0]),
            torch.tensor([0, 2, 1]),
            torch.tensor([-1, 0, 1]),
            np.array([0.0, 1.0, 1.0 + 1e-7]),
            torch.tensor([0.0, float("nan")]),
            torch.tensor([0.0, float("inf")]),
        ],
    )
    def test_rejects_other_values(self, value):
        with pytest.raises(ValueError, match="Mask 'w' must be bool or contain only 0 and 1"):
            MaskSet({"w": value})

    @pytest.mark.parametrize("name", [0, None, ("a", "b"), b"w", ""])
    def test_rejects_bad_names(self, name):
        with pytest.raises(TypeError, match="Mask names must be non-empty state_dict keys"):
            MaskSet({name: torch.ones(2, dtype=torch.bool)})

    def test_masks_are_on_cpu(self):
        ms = MaskSet({"a": torch.ones(2, 2), "b": np.zeros(3, dtype=bool), "c": torch.ones(1, dtype=torch.bool)})
        assert all(ms[n].device == torch.device("cpu") for n in ms)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_masks_moved_to_cpu(self):
        ms = MaskSet({"a": torch.ones(2, 2, device="cuda", dtype=torch.bool)})
        assert ms["a"].device == torch.device("cpu")

    def test_bool_tensor_is_copied(self):
        m = torch.tensor([True, False, True])
        ms = MaskSet({"w": m})
        m[0] = False
        m[1] = True
        assert ms["w"].tolist() == [True, False, True]

    def test_numpy_bool_is_copied(self):
        a = np.array([True, False, True])
        ms = MaskSet({"w": a})
        a[:] = [False, True, False]
        assert ms["w"].tolist() == [True, False, True]

    @pytest.mark.parametrize("make", [lambda: torch.tensor([1.0, 0.0]), lambda: np.array([1, 0])])
    def test_numeric_input_is_copied(self, make):
        v = make()
        ms = MaskSet({"w": v})
        v[0] = 0
        v[1] = 1
        assert ms["w"].tolist() == [True, False]

    def test_mapping_interface(self):
        ms = MaskSet({"b": torch.ones(2), "a": torch.zeros(3)})
        assert list(ms) == ["b", "a"]  # insertion order kept
        assert len(ms) == 2
        assert "a" in ms and "c" not in ms
        assert dict(ms.items()).keys() == {"a", "b"}
        with pytest.raises(KeyError):
            ms["c"]

    def test_metadata_attributes(self):
        b = Budget(sparsity=0.9)
        ms = MaskSet({"w": torch.ones(2)}, method="magnitude", budget=b, metadata={"seed": "3"})
        assert ms.method == "magnitude"
        assert ms.budget == b
        assert ms.metadata == {"seed": "3"}
        assert ms.saved_with is None
        assert "density=1.0000" in repr(ms) and "magnitude" in repr(ms)

    @pytest.mark.parametrize("key", ["maskopt_version", "method", "budget"])
    def test_reserved_metadata_keys_rejected(self, key):
        with pytest.raises(ValueError, match=f"'{key}'.*reserved"):
            MaskSet({"w": torch.ones(2)}, metadata={key: "x"})

    def test_non_str_metadata_values_rejected(self):
        with pytest.raises(ValueError, match="'seed'.*not str"):
            MaskSet({"w": torch.ones(2)}, metadata={"seed": 3})


# ---------------------------------------------------------------------------------------------
# counts and reports
# ---------------------------------------------------------------------------------------------


class TestCounts:
    @pytest.fixture
    def ms(self):
        # kept: a 3 of 6, b 1 of 4, c 2 of 2 -> 6 of 12
        return MaskSet(
            {
                "layer.a": torch.tensor([[1, 0, 1], [0, 0, 1]]),
                "layer.b": torch.tensor([False, False, True, False]),
                "c": np.ones(2, dtype=bool),
            }
        )

    def test_kept_size_density_sparsity(self, ms):
        assert ms.kept == 6
        assert ms.size == 12
        assert ms.density == 0.5
        assert ms.sparsity == 0.5
        ms2 = MaskSet({"w": torch.tensor([1, 0, 0, 0, 0, 0, 0, 0])})
        assert (ms2.kept, ms2.size) == (1, 8)
        assert ms2.density == 0.125
        assert ms2.sparsity == 0.875
        assert ms2.sparsity == 1 - ms2.density

    def test_empty(self):
        ms = MaskSet({})
        assert (ms.kept, ms.size, ms.density, ms.sparsity) == (0, 0, 1.0, 0.0)

    def test_report_rows(self, ms):
        rows = ms.report()
        assert rows == [
            {"name": "layer.a", "shape": (2, 3), "kept": 3, "size": 6, "density": 0.5},
            {"name": "layer.b", "shape": (4,), "kept": 1, "size": 4, "density": 0.25},
            {"name": "c", "shape": (2,), "kept": 2, "size": 2, "density": 1.0},
        ]

    def test_report_table(self, ms):
        table = ms.report_table()
        lines = [ln for ln in table.splitlines() if ln.strip()]
        assert lines[0].split() == ["name", "shape", "kept", "size", "density"]
        by_name = {ln.split()[0]: ln for ln in lines[1:]}
        for row in ms.report():
            line = by_name[row["name"]]
            assert str(row["shape"]) in line
            tokens = line.replace(str(row["shape"]), " ").split()
            assert tokens[1:3] == [str(row["kept"]), str(row["size"])]
            assert float(tokens[3]) == pytest.approx(row["density"], abs=1e-4)
        total = by_name["total"].split()
        assert total[1:3] == ["6", "12"] and float(total[3]) == pytest.approx(0.5)
        # aligned columns: the "kept" values of every row start under the header
        col = lines[0].index("kept")
        assert by_name["layer.a"][col:].split()[0] == "3"
        assert by_name["total"][col:].split()[0] == "6"

    def test_check_shapes_ok(self, ms):
        ms.check_shapes({"layer.a": (2, 3), "layer.b": (4,), "c": torch.Size([2])})

    def test_check_shapes_missing(self, ms):
        with pytest.raises(ValueError, match=r"missing \['d'\], unexpected \[\]"):
            ms.check_shapes({"layer.a": (2, 3), "layer.b": (4,), "c": (2,), "d": (1,)})

    def test_check_shapes_extra(self, ms):
        with pytest.raises(ValueError, match=r"missing \[\], unexpected \['c'\]"):
            ms.check_shapes({"layer.a": (2, 3), "layer.b": (4,)})

    def test_check_shapes_wrong_shape(self, ms):
        with pytest.raises(ValueError, match=r"Mask 'layer.a' has shape \(2, 3\); expected \(3, 2\)"):
            ms.check_shapes({"layer.a": (3, 2), "layer.b": (4,), "c": (2,)})


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------


class TestSaveLoad:
    def _example(self) -> MaskSet:
        g = torch.Generator().manual_seed(3)
        return MaskSet(
            {
                "0.weight": torch.rand(4, 5, generator=g) > 0.5,
                "2.weight": (torch.rand(5, 3, generator=g) > 0.3).T,  # non-contiguous
                "2.bias": torch.tensor([1, 0, 1]),
                "scalar": torch.tensor(True),
            },
            method="magnitude",
            budget=Budget(sparsity=0.9, scope="row", allocation="erk"),
            metadata={"seed": "3", "note": "ünïcode ok"},
        )

    def test_round_trip(self, tmp_path):
        ms = self._example()
        path = tmp_path / "masks.safetensors"
        ms.save(path)
        back = MaskSet.load(path)
        assert sorted(back) == sorted(ms)
        for n in ms:
            assert back[n].dtype == torch.bool
            assert back[n].shape == ms[n].shape
            assert torch.equal(back[n], ms[n])
        assert back.method == "magnitude"
        assert back.budget == ms.budget
        assert isinstance(back.budget, Budget)
        assert back.metadata == {"seed": "3", "note": "ünïcode ok"}
        assert back.saved_with == maskopt.__version__
        assert ms.saved_with is None

    def test_str_path_and_defaults(self, tmp_path):
        ms = MaskSet({"w": torch.tensor([True, False])})
        path = str(tmp_path / "m.safetensors")
        ms.save(path)
        back = MaskSet.load(path)
        assert back.method is None and back.budget is None and back.metadata == {}
        assert back["w"].tolist() == [True, False]
        assert back.saved_with == maskopt.__version__

    def test_file_format(self, tmp_path):
        ms = self._example()
        path = tmp_path / "masks.safetensors"
        ms.save(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            assert set(f.keys()) == set(ms)
            for n in ms:
                t = f.get_tensor(n)
                assert t.dtype == torch.bool
                assert torch.equal(t, ms[n])
        assert meta["maskopt_version"] == maskopt.__version__
        assert meta["method"] == "magnitude"
        assert json.loads(meta["budget"]) == ms.budget.to_dict()
        assert meta["seed"] == "3"

    def test_overwrite(self, tmp_path):
        path = tmp_path / "m.safetensors"
        MaskSet({"a": torch.ones(3)}).save(path)
        MaskSet({"b": torch.zeros(2)}, method="x").save(path)
        back = MaskSet.load(path)
        assert list(back) == ["b"] and back.method == "x"
        assert os.listdir(tmp_path) == ["m.safetensors"]

    @pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
    def test_atomic_write(self, tmp_path, monkeypatch, exc):
        import safetensors.torch

        path = tmp_path / "masks.safetensors"
        original = self._example()
        original.save(path)
        before = path.read_bytes()
        seen = []

        def broken_save_file(tensors, filename, metadata=None):
            seen.append(str(filename))
            with open(filename, "wb") as f:
                f.write(b"\x00garbage, half a file")
            raise exc

        monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
        other = MaskSet({"other": torch.zeros(7, dtype=torch.bool)}, method="random")
        with pytest.raises(type(exc)):
            other.save(path)
        monkeypatch.undo()

        assert len(seen) == 1
        assert os.path.abspath(seen[0]) != os.path.abspath(path)  # wrote a temp file ...
        assert os.path.dirname(os.path.abspath(seen[0])) == str(tmp_path)  # ... in the same directory
        assert os.listdir(tmp_path) == ["masks.safetensors"]  # no temporary file left
        assert path.read_bytes() == before
        back = MaskSet.load(path)
        assert sorted(back) == sorted(original)
        assert all(torch.equal(back[n], original[n]) for n in original)
        assert back.method == original.method and back.budget == original.budget

    def test_failed_first_save_leaves_nothing(self, tmp_path, monkeypatch):
        import safetensors.torch

        def broken_save_file(tensors, filename, metadata=None):
            with open(filename, "wb") as f:
                f.write(b"garbage")
            raise OSError("interrupted")

        monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
        with pytest.raises(OSError, match="interrupted"):
            MaskSet({"w": torch.ones(2)}).save(tmp_path / "new.safetensors")
        assert os.listdir(tmp_path) == []

    def test_permissions_like_a_plain_write(self, tmp_path):
        """A new file gets the umask's permissions (as ``open`` would give it, not mkstemp's
        0o600); an overwritten one keeps its own."""
        import stat

        from maskopt.report import write_json

        old = os.umask(0o022)
        try:
            MaskSet({"w": torch.ones(2)}).save(tmp_path / "new.safetensors")
            write_json(tmp_path / "new.json", {"a": 1})
            kept = tmp_path / "kept.safetensors"
            kept.write_bytes(b"old")
            os.chmod(kept, 0o640)
            MaskSet({"w": torch.ones(2)}).save(kept)
        finally:
            os.umask(old)

        def mode(name):
            return stat.S_IMODE(os.stat(tmp_path / name).st_mode)

        assert mode("new.safetensors") == 0o644 and mode("new.json") == 0o644
        assert mode("kept.safetensors") == 0o640
        assert MaskSet.load(kept)["w"].all()


# ---------------------------------------------------------------------------------------------
# apply_masks / remove_masks / masks_of
# ---------------------------------------------------------------------------------------------


class TestApplyMasks:
    def test_all_ones_is_noop(self):
        model = _model()
        x = _inputs()
        before = model(x)
        ones = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
        apply_masks(model, ones)
        for name in ("weight", "bias"):
            assert parametrize.is_parametrized(model[0], name)
            assert parametrize.is_parametrized(model[2], name)
        assert torch.equal(model(x), before)

    def test_returns_model_and_accepts_maskset(self):
        model = _model()
        ms = MaskSet({"0.weight": _mask((4, 5), 0)})
        assert apply_masks(model, ms) is model
        assert torch.equal(model[0].weight, model[0].parametrizations.weight.original * ms["0.weight"])

    def test_parameter_identity(self):
        model = _model()
        w0 = model[0].weight
        values = w0.detach().clone()
        apply_masks(model, {"0.weight": _mask((4, 5), 0)})
        original = model[0].parametrizations.weight.original
        assert original is w0
        assert isinstance(original, nn.Parameter)
        assert torch.equal(original.detach(), values)  # original values untouched
        # the optimizer sees exactly the same parameter objects as before
        assert {id(p) for p in model.parameters()} >= {id(w0)}
        assert not isinstance(model[0].weight, nn.Parameter)  # now a computed tensor

    def test_exact_zeros_where_pruned(self):
        model = _model()
        w = model[0].weight.detach().clone()
        b = model[0].bias.detach().clone()
        m = _mask((4, 5), 1)
        apply_masks(model, {"0.weight": m})
        masked = model[0].weight
        assert bool((masked[~m] == 0).all())
        assert torch.equal(masked[m], w[m])
        assert torch.equal(model[0].bias, b)  # biases are not masked unless asked
        x = _inputs()
        expected = _reference_forward(x, w * m, b, model[2].weight, model[2].bias)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)

    def test_gradients_zero_at_pruned(self):
        model = _model()
        m = _mask((4, 5), 2)
        apply_masks(model, {"0.weight": m})
        x = _inputs()
        model(x).square().sum().backward()
        g = model[0].parametrizations.weight.original.grad
        assert g is not None
        assert bool((g[~m] == 0).all())
        assert bool((g[m] != 0).any())  # the kept weights do receive gradient

    @pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
    @pytest.mark.parametrize("when", ["before", "after"])
    def test_pruned_stay_zero_through_optimizer(self, opt_name, when):
        model = _model(seed=4)
        m0, m2 = _mask((4, 5), 5), _mask((3, 4), 6)

        def make_opt():
            if opt_name == "sgd":
                return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
            return torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)

        if when == "before":
            opt = make_opt()
        apply_masks(model, {"0.weight": m0, "2.weight": m2})
        if when == "after":
            opt = make_opt()
        orig0 = model[0].parametrizations.weight.original
        kept_before = orig0.detach()[m0].clone()
        g = torch.Generator().manual_seed(7)
        for _ in range(6):
            x = torch.randn(16, 5, generator=g)
            y = torch.randn(16, 3, generator=g)
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            assert bool((orig0.grad[~m0] == 0).all())
            assert bool((model[2].parametrizations.weight.original.grad[~m2] == 0).all())
            opt.step()
            assert bool((model[0].weight[~m0] == 0).all())
            assert bool((model[2].weight[~m2] == 0).all())
        assert not torch.equal(orig0.detach()[m0], kept_before)  # training did move kept weights
        # the optimizer updates the very tensor the model uses
        assert any(p is orig0 for group in opt.param_groups for p in group["params"])

    def test_state_dict_round_trip(self):
        src = _model(seed=0)
        masks = {"0.weight": _mask((4, 5), 8), "2.weight": _mask((3, 4), 9), "2.bias": torch.tensor([1, 0, 1])}
        apply_masks(src, masks)
        sd = src.state_dict()
        assert "0.parametrizations.weight.0.mask" in sd
        assert "2.parametrizations.bias.0.mask" in sd
        assert torch.equal(sd["0.parametrizations.weight.0.mask"], masks["0.weight"])
        assert "0.parametrizations.weight.original" in sd

        dst = _model(seed=123)
        apply_masks(dst, {n: torch.ones_like(torch.as_tensor(v), dtype=torch.bool) for n, v in masks.items()})
        x = _inputs()
        assert not torch.equal(dst(x), src(x))
        dst.load_state_dict(sd)
        assert torch.equal(dst(x), src(x))
        got = masks_of(dst)
        assert set(got) == set(masks)
        for n, v in masks.items():
            assert torch.equal(got[n], torch.as_tensor(v).bool())

    def test_masks_of(self):
        model = _model()
        assert len(masks_of(model)) == 0
        masks = {"0.weight": _mask((4, 5), 10), "2.bias": torch.tensor([True, False, True])}
        apply_masks(model, masks)
        got = masks_of(model)
        assert isinstance(got, MaskSet)
        assert set(got) == {"0.weight", "2.bias"}
        for n in masks:
            assert torch.equal(got[n], masks[n])

    def test_masks_of_root_parameter(self):
        lin = nn.Linear(3, 2)
        m = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.bool)
        apply_masks(lin, {"weight": m})
        assert list(masks_of(lin)) == ["weight"]
        assert torch.equal(masks_of(lin)["weight"], m)
        assert bool((lin.weight[~m] == 0).all())

    def test_nested_names(self):
        model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 1))
        m = torch.tensor([[True, False], [False, True]])
        apply_masks(model, {"0.0.weight": m})
        assert list(masks_of(model)) == ["0.0.weight"]
        assert bool((model[0][0].weight[~m] == 0).all())

    def test_apply_again_replaces_mask(self):
        model = _model()
        w = model[0].weight.detach().clone()
        m1, m2 = _mask((4, 5), 11), _mask((4, 5), 12)
        assert not torch.equal(m1, m2)
        apply_masks(model, {"0.weight": m1})
        p_orig = model[0].parametrizations.weight.original
        apply_masks(model, {"0.weight": m2})
        assert len(model[0].parametrizations.weight) == 1  # not stacked
        assert model[0].parametrizations.weight.original is p_orig
        assert torch.equal(masks_of(model)["0.weight"], m2)
        # the new mask alone applies (not m1 & m2)
        assert torch.equal(model[0].weight, w * m2)
        # a mask can also revive weights: original values were never changed
        apply_masks(model, {"0.weight": torch.ones(4, 5, dtype=torch.bool)})
        assert torch.equal(model[0].weight, w)

    def test_a_tied_weight_is_masked_at_every_use(self):
        """Two Linear modules sharing one weight: the mask (named once, as named_parameters names
        it) acts in both, as in a functional_call with the masked tensor; ties survive re-apply,
        training and removal."""
        first, second = nn.Linear(4, 4), nn.Linear(4, 4)
        second.weight = first.weight
        model = nn.Sequential(first, nn.ReLU(), second)
        x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
        w = first.weight.detach().clone()
        for m in (_mask((4, 4), 3), _mask((4, 4), 4)):  # apply, then apply again
            apply_masks(model, {"0.weight": m})
            masked = {"0.weight": w * m, "0.bias": first.bias, "2.bias": second.bias}
            expected = torch.func.functional_call(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)),
                                                  {**masked, "2.weight": w * m}, (x,))
            assert torch.equal(model[0].weight, w * m) and torch.equal(model[2].weight, w * m)
            assert torch.allclose(model(x), expected)
            assert list(masks_of(model)) == ["0.weight"] and torch.equal(masks_of(model)["0.weight"], m)
        assert model[0].parametrizations.weight.original is model[2].parametrizations.weight.original
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model(x).sum().backward()
        opt.step()
        assert torch.equal(model[2].weight[~m], torch.zeros(int((~m).sum())))
        remove_masks(model)
        assert model[0].weight is model[2].weight
        assert torch.equal(model[2].weight[~m], torch.zeros(int((~m).sum())))

    @pytest.mark.parametrize("name", ["5.weight", "0.nope.weight", "foo.weight", "nope"])
    def test_unknown_submodule_or_parameter(self, name):
        model = _model()
        with pytest.raises(ValueError, match=f"Mask '{name}'"):
            apply_masks(model, {name: torch.ones(4, 5, dtype=torch.bool)})
        assert not parametrize.is_parametrized(model[0])

    def test_module_without_that_parameter(self):
        model = _model()
        with pytest.raises(ValueError, match="has no parameter 'weight'"):
            apply_masks(model, {"1.weight": torch.ones(4, 5, dtype=torch.bool)})
        with pytest.raises(ValueError, match="has no parameter 'wieght'"):
            apply_masks(model, {"0.wieght": torch.ones(4, 5, dtype=torch.bool)})

    def test_wrong_shape(self):
        model = _model()
        with pytest.raises(ValueError, match=r"Mask '0.weight' has shape \(5, 4\); parameter has \(4, 5\)"):
            apply_masks(model, {"0.weight": torch.ones(5, 4, dtype=torch.bool)})
        # validated before anything is registered: a good mask next to a bad one is not applied either
        with pytest.raises(ValueError, match="Mask '2.weight'"):
            apply_masks(model, {"0.weight": _mask((4, 5), 0), "2.weight": torch.ones(3, dtype=torch.bool)})
        assert not parametrize.is_parametrized(model[0])
        assert not parametrize.is_parametrized(model[2])

    def test_wrong_shape_when_already_masked(self):
        model = _model()
        m = _mask((4, 5), 0)
        apply_masks(model, {"0.weight": m})
        with pytest.raises(ValueError, match="has shape"):
            apply_masks(model, {"0.weight": torch.ones(2, 10, dtype=torch.bool)})
        assert torch.equal(masks_of(model)["0.weight"], m)

    def test_invalid_mask_values(self):
        model = _model()
        with pytest.raises(ValueError, match="only 0 and 1"):
            apply_masks(model, {"0.weight": torch.full((4, 5), 0.5)})
        assert not parametrize.is_parametrized(model[0])


class TestRemoveMasks:
    def test_bake_true(self):
        model = _model()
        w0 = model[0].weight
        values = w0.detach().clone()
        m = _mask((4, 5), 13)
        apply_masks(model, {"0.weight": m, "2.bias": torch.tensor([0, 1, 1])})
        x = _inputs()
        masked_out = model(x)
        assert remove_masks(model) is model
        assert not parametrize.is_parametrized(model[0])
        assert not parametrize.is_parametrized(model[2])
        assert model[0].weight is w0
        assert isinstance(model[0].weight, nn.Parameter)
        assert isinstance(model[2].bias, nn.Parameter)
        assert torch.equal(model[0].weight.detach(), values * m)
        assert bool((model[0].weight[~m] == 0).all())
        assert model[2].bias[0].item() == 0.0
        assert torch.equal(model(x), masked_out)
        assert len(masks_of(model)) == 0
        assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}

    def test_bake_false(self):
        model = _model()
        w0 = model[0].weight
        values = w0.detach().clone()
        x = _inputs()
        before = model(x)
        apply_masks(model, {"0.weight": _mask((4, 5), 14)})
        assert not torch.equal(model(x), before)
        remove_masks(model, bake=False)
        assert not parametrize.is_parametrized(model[0])
        assert model[0].weight is w0
        assert torch.equal(model[0].weight.detach(), values)
        assert torch.equal(model(x), before)

    def test_bake_after_training_keeps_zeros(self):
        model = _model(seed=2)
        m = _mask((4, 5), 15)
        apply_masks(model, {"0.weight": m})
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(4, 5, generator=g)).sum().backward()
            opt.step()
        x = _inputs()
        out = model(x)
        remove_masks(model, bake=True)
        assert bool((model[0].weight[~m] == 0).all())
        assert torch.equal(model(x), out)

    def test_noop_on_unmasked_model(self):
        model = _model()
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        remove_masks(model)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())

    def test_foreign_parametrization_left_alone(self):
        class Double(nn.Module):
            def forward(self, x):
                return 2 * x

        model = _model()
        parametrize.register_parametrization(model[2], "weight", Double())
        apply_masks(model, {"0.weight": _mask((4, 5), 0)})
        remove_masks(model)
        assert not parametrize.is_parametrized(model[0])
        assert parametrize.is_parametrized(model[2], "weight")  # not ours: untouched

    def test_stacked_with_other_parametrization_raises(self):
        class Double(nn.Module):
            def forward(self, x):
                return 2 * x

        model = _model()
        apply_masks(model, {"0.weight": _mask((4, 5), 0)})
        parametrize.register_parametrization(model[0], "weight", Double())
        with pytest.raises(ValueError, match="other parametrizations besides the mask"):
            remove_masks(model)


def test_load_refuses_a_file_that_is_not_a_mask_file(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "junk").write_bytes(b"\xff" * 64)
    save_file({"a": torch.ones(2, dtype=torch.bool)}, str(tmp_path / "names"), metadata={"names": '["a", "x"]'})
    save_file({"a": torch.ones(2, dtype=torch.bool)}, str(tmp_path / "budget"), metadata={"budget": "{not json"})
    for name in ("junk", "names", "budget"):
        with pytest.raises(ValueError, match=f"{name} is not a readable maskopt mask file"):
            MaskSet.load(tmp_path / name)


def test_load_keeps_the_saved_name_order(tmp_path):
    masks = MaskSet({"z.weight": torch.ones(2, dtype=torch.bool), "a.weight": torch.zeros(3, dtype=torch.bool)})
    masks.save(tmp_path / "m.safetensors")
    assert list(MaskSet.load(tmp_path / "m.safetensors")) == ["z.weight", "a.weight"]


def test_maskset_equality():
    a = MaskSet({"w": torch.tensor([True, False])}, method="x")
    assert a == MaskSet({"w": torch.tensor([1, 0])}, method="y")
    assert a == {"w": torch.tensor([True, False])}
    assert a != MaskSet({"w": torch.tensor([True, True])})
    assert a != MaskSet({"v": torch.tensor([True, False])})
    assert a != MaskSet({"w": torch.tensor([True, False]), "v": torch.tensor([True])})


# ---------------------------------------------------------------------------------------------
# DistributedDataParallel
# ---------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    """One rank: a different mask per rank, DDP, three SGD steps; saves its masks and weights."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    apply_masks(model, {"0.weight": _mask((8, 6), 100 + rank), "2.weight": _mask((3, 8), 200 + rank)})
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(rank))  # each rank its own batch
    for _ in range(3):
        opt.zero_grad()
        ddp(x).sum().backward()
        opt.step()
    torch.save({"masks": dict(masks_of(model)), "weights": {"0.weight": model[0].weight.detach(),
                                                           "2.weight": model[2].weight.detach()}},
               f"{folder}/{rank}.pt")
    dist.barrier()  # both ranks have saved their results
    # gloo's teardown (destroy_process_group, or the interpreter's exit) aborted a rank with
    # "terminate called without an active exception" in about 1 of 25 runs, even after a
    # barrier; nothing under test happens after this point, so the rank leaves without it
    os._exit(0)


def test_ddp_gives_every_rank_rank_0s_mask(tmp_path):
    """The mask is a buffer, so DDP broadcasts rank 0's to every rank; training keeps the ranks
    identical and the pruned weights zero."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    expected = {"0.weight": _mask((8, 6), 100), "2.weight": _mask((3, 8), 200)}  # rank 0's
    for rank in ranks:
        for name, mask in expected.items():
            assert torch.equal(rank["masks"][name], mask)
            assert torch.equal(rank["weights"][name], ranks[0]["weights"][name])
            assert bool((rank["weights"][name][~mask] == 0).all())
