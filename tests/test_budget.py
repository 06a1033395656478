"""Tests for maskopt.budget: Budget validation, the rounding rule, allocation and projection."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskopt.budget import Allocation, Budget, count_for_density, module_of

SHAPES = {"a": (4, 3), "b": (2, 5), "c": (6,)}  # sizes 12, 10, 6; total 28


def _size(shape) -> int:
    return math.prod(shape)


def _random_shapes(
    rng: np.random.Generator, max_layers: int = 6, max_dim: int = 20, min_dim: int = 1
) -> dict[str, tuple[int, ...]]:
    n_layers = int(rng.integers(1, max_layers + 1))
    shapes = {}
    for i in range(n_layers):
        ndim = int(rng.integers(1, 4))
        shapes[f"p{i}"] = tuple(int(x) for x in rng.integers(min_dim, max_dim + 1, size=ndim))
    return shapes


def _erk_reference(density: float, shapes: dict[str, tuple[int, ...]], allocation: str):
    """Independent continuous solution by bisection: eps with sum_l min(1, eps*r_l)*n_l == K.

    Returns (K, eps, ratio) where ratio[l] = r_l (1 for uniform, sum(shape)/prod(shape) for ERK).
    """
    sizes = {n: _size(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    K = count_for_density(density, total)
    ratio = {n: 1.0 if allocation == "uniform" else sum(s) / _size(s) for n, s in shapes.items()}

    def kept(eps: float) -> float:
        return sum(min(1.0, eps * ratio[n]) * sizes[n] for n in shapes)

    lo, hi = 0.0, 1.0
    while kept(hi) < K:
        hi *= 2.0
        if hi > 1e12:
            break
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if kept(mid) < K:
            lo = mid
        else:
            hi = mid
    return K, hi, ratio


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


class TestBudgetValidation:
    def test_none_of_k_density_sparsity(self):
        with pytest.raises(ValueError, match="exactly one of k=, density=, sparsity= or nm="):
            Budget()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"k": 3, "density": 0.1},
            {"k": 3, "sparsity": 0.9},
            {"density": 0.1, "sparsity": 0.9},
            {"k": 3, "density": 0.1, "sparsity": 0.9},
        ],
    )
    def test_more_than_one_given(self, kwargs):
        with pytest.raises(ValueError, match="exactly one of k=, density=, sparsity= or nm="):
            Budget(**kwargs)

    @pytest.mark.parametrize("name", ["density", "sparsity"])
    @pytest.mark.parametrize("value", [-0.01, 1.01, -1, 2, float("inf"), float("nan")])
    def test_fraction_out_of_range(self, name, value):
        with pytest.raises(ValueError, match=rf"Budget {name} must lie in \[0, 1\]"):
            Budget(**{name: value})

    @pytest.mark.parametrize("name", ["density", "sparsity"])
    @pytest.mark.parametrize("value", [True, "0.5", [0.5]])
    def test_fraction_not_a_number(self, name, value):
        with pytest.raises(TypeError, match=f"Budget {name} must be a number"):
            Budget(**{name: value})

    @pytest.mark.parametrize("name", ["density", "sparsity"])
    @pytest.mark.parametrize("value", [0, 1, 0.0, 1.0, 0.5, np.float32(0.25)])
    def test_fraction_bounds_inclusive(self, name, value):
        b = Budget(**{name: value})
        stored = getattr(b, name)
        assert type(stored) is float
        assert stored == float(value)

    def test_negative_k(self):
        with pytest.raises(ValueError, match="k must be ≥ 0"):
            Budget(k=-1)

    @pytest.mark.parametrize("k", [3.0, 2.5, True, False, "3", np.float64(3.0)])
    def test_non_integer_k(self, k):
        with pytest.raises(TypeError, match="k must be an integer"):
            Budget(k=k)

    def test_numpy_integer_k_accepted_and_converted(self):
        b = Budget(k=np.int64(7))
        assert b.k == 7 and type(b.k) is int
        assert Budget(k=0).k == 0

    def test_unknown_scope(self):
        with pytest.raises(ValueError, match="scope must be one of .*'global'.*'layer'.*'row'.*'neuron'"):
            Budget(density=0.5, scope="neuron")

    def test_unknown_allocation(self):
        with pytest.raises(ValueError, match="allocation must be one of .*'uniform'.*'erk'.*'magic'"):
            Budget(density=0.5, scope="layer", allocation="magic")

    def test_erk_with_global_scope(self):
        with pytest.raises(ValueError, match="allocation='erk'.*needs.*scope='layer' or 'row'"):
            Budget(density=0.5, scope="global", allocation="erk")

    def test_erk_with_k(self):
        with pytest.raises(ValueError, match="allocation='erk'.*not k="):
            Budget(k=3, scope="layer", allocation="erk")

    @pytest.mark.parametrize("scope", ["layer", "row"])
    @pytest.mark.parametrize("kw", [{"density": 0.3}, {"sparsity": 0.7}])
    def test_erk_valid_combinations(self, scope, kw):
        b = Budget(scope=scope, allocation="erk", **kw)
        assert b.allocation == "erk" and b.scope == scope

    def test_target_density(self):
        assert Budget(density=0.3).target_density == 0.3
        assert Budget(sparsity=0.75).target_density == 0.25
        assert Budget(k=4).target_density is None

    def test_frozen(self):
        b = Budget(density=0.5)
        with pytest.raises(AttributeError):
            b.density = 0.2  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Rounding rule
# ---------------------------------------------------------------------------------------------


class TestRounding:
    @pytest.mark.parametrize(
        ("density", "n", "expected"),
        [
            (0.25, 10, 3),  # 2.5 -> 3 (half up)
            (0.5, 3, 2),  # 1.5 -> 2
            (0.5, 1, 1),  # 0.5 -> 1
            (0.5, 5, 3),  # 2.5 -> 3
            (0.1, 5, 1),  # 0.5 -> 1
            (0.1, 15, 2),  # 1.5 -> 2
            (0.1, 14, 1),  # 1.4 -> 1
            (0.1, 16, 2),  # 1.6 -> 2
            (0.3, 10, 3),  # 0.3*10 = 3.0000000000000004 in floats -> 3
            (0.0, 100, 0),
            (1.0, 100, 100),
            (0.999, 10, 10),  # 9.99 -> 10
            (0.001, 10, 0),  # 0.01 -> 0
            (0.5, 0, 0),
        ],
    )
    def test_hand_computed(self, density, n, expected):
        assert count_for_density(density, n) == expected

    def test_matches_formula_with_fractions(self):
        """Oracle with exact rational arithmetic for densities with short decimal expansions."""
        from fractions import Fraction

        for num in range(0, 101):
            d = num / 100
            for n in range(0, 60):
                exact = Fraction(num, 100) * n
                expected = math.floor(exact + Fraction(1, 2))
                assert count_for_density(d, n) == expected, (d, n)

    @pytest.mark.parametrize(("density", "sparsity"), [(0.1, 0.9), (0.3, 0.7), (0.05, 0.95), (0.7, 0.3), (0.01, 0.99)])
    def test_sparsity_and_density_agree_global(self, density, sparsity):
        for n in range(1, 200):
            a = Budget(density=density).allocate({"w": (n,)})
            b = Budget(sparsity=sparsity).allocate({"w": (n,)})
            assert a.total == b.total == count_for_density(density, n), n
            np.testing.assert_array_equal(a.caps["*"], b.caps["*"])

    def test_sparsity_and_density_agree_layer_and_row(self):
        rng = np.random.default_rng(1)
        for _ in range(100):
            shapes = _random_shapes(rng)
            for scope in ("layer", "row"):
                for allocation in ("uniform", "erk"):
                    a = Budget(density=0.1, scope=scope, allocation=allocation).allocate(shapes)
                    b = Budget(sparsity=0.9, scope=scope, allocation=allocation).allocate(shapes)
                    assert a.caps.keys() == b.caps.keys()
                    for name in a.caps:
                        np.testing.assert_array_equal(a.caps[name], b.caps[name])


# ---------------------------------------------------------------------------------------------
# allocate(): hand-computed caps
# ---------------------------------------------------------------------------------------------


def _caps(alloc: Allocation) -> dict[str, list[int]]:
    return {n: [int(x) for x in c] for n, c in alloc.caps.items()}


class TestAllocateHandComputed:
    def test_global_density(self):
        alloc = Budget(density=0.5).allocate(SHAPES)
        assert _caps(alloc) == {"*": [14]}
        assert alloc.total == 14
        assert alloc.size == 28
        assert alloc.scope == "global"
        assert alloc.units() == [(0, 28, 14)]

    def test_global_density_half_up(self):
        # 0.25 * 28 = 7 exactly; 0.125 * 28 = 3.5 -> 4
        assert Budget(density=0.25).allocate(SHAPES).total == 7
        assert Budget(density=0.125).allocate(SHAPES).total == 4
        assert Budget(sparsity=0.875).allocate(SHAPES).total == 4

    def test_global_k(self):
        alloc = Budget(k=5).allocate(SHAPES)
        assert _caps(alloc) == {"*": [5]}
        assert alloc.units() == [(0, 28, 5)]
        assert Budget(k=28).allocate(SHAPES).total == 28
        assert Budget(k=0).allocate(SHAPES).total == 0

    def test_global_k_too_large(self):
        with pytest.raises(ValueError, match="k=29 exceeds the 28 maskable weights"):
            Budget(k=29).allocate(SHAPES)

    def test_layer_k(self):
        alloc = Budget(k=6, scope="layer").allocate(SHAPES)
        assert _caps(alloc) == {"a": [6], "b": [6], "c": [6]}
        assert alloc.total == 18
        assert alloc.size == 28
        assert alloc.units() == [(0, 12, 6), (12, 22, 6), (22, 28, 6)]

    def test_layer_k_too_large(self):
        # "c" has only 6 weights
        with pytest.raises(ValueError, match=r"k=7 per layer exceeds the 6 weights of the parameter 'c'"):
            Budget(k=7, scope="layer").allocate(SHAPES)

    def test_row_k(self):
        alloc = Budget(k=1, scope="row").allocate(SHAPES)
        # a: 4 rows of 3, b: 2 rows of 5, c: 6 rows of 1
        assert _caps(alloc) == {"a": [1, 1, 1, 1], "b": [1, 1], "c": [1] * 6}
        assert alloc.total == 12
        assert alloc.units() == [
            (0, 3, 1),
            (3, 6, 1),
            (6, 9, 1),
            (9, 12, 1),
            (12, 17, 1),
            (17, 22, 1),
            *[(22 + i, 23 + i, 1) for i in range(6)],
        ]

    def test_row_k_too_large(self):
        # rows of "c" have 1 weight
        with pytest.raises(ValueError, match=r"k=2 per row exceeds the 1 weights of the row of 'c'"):
            Budget(k=2, scope="row").allocate(SHAPES)
        # rows of "a" have 3 weights (checked first)
        with pytest.raises(ValueError, match=r"k=4 per row exceeds the 3 weights of the row of 'a'"):
            Budget(k=4, scope="row").allocate(SHAPES)

    def test_layer_uniform_density(self):
        # density 0.5: 6, 5, 3 exactly
        assert _caps(Budget(density=0.5, scope="layer").allocate(SHAPES)) == {"a": [6], "b": [5], "c": [3]}
        # density 0.25: K = 7; continuous 3, 2.5, 1.5 -> floors 3, 2, 1 (sum 6); the one left goes to the
        # largest remainder, tie between b and c broken by order -> b.
        alloc = Budget(density=0.25, scope="layer").allocate(SHAPES)
        assert _caps(alloc) == {"a": [3], "b": [3], "c": [1]}
        assert alloc.total == 7

    def test_row_uniform_density(self):
        # density 0.5: per-layer counts 6, 5, 3 -> row densities 0.5 everywhere.
        # a rows of 3: 1.5 -> 2; b rows of 5: 2.5 -> 3; c rows of 1: 0.5 -> 1.
        alloc = Budget(density=0.5, scope="row").allocate(SHAPES)
        assert _caps(alloc) == {"a": [2, 2, 2, 2], "b": [3, 3], "c": [1] * 6}
        assert alloc.total == 20

    def test_erk_hand_computed(self):
        # r = sum/prod: small 8/16 = .5, mid 32/256 = .125, big 128/4096 = .03125; total 4368; K = 437.
        # First pass eps = 437/168 -> small saturates (eps*.5 > 1). Then eps = 421/160 = 2.63125:
        # mid 0.125*256*eps = 84.2, big 0.03125*4096*eps = 336.8 -> floors 84, 336, the one left goes to big.
        shapes = {"small": (4, 4), "mid": (16, 16), "big": (64, 64)}
        alloc = Budget(density=0.1, scope="layer", allocation="erk").allocate(shapes)
        assert _caps(alloc) == {"small": [16], "mid": [84], "big": [337]}
        assert alloc.total == count_for_density(0.1, 4368) == 437
        uniform = Budget(density=0.1, scope="layer").allocate(shapes)
        # uniform: density K/total = 437/4368 -> 1.6007, 25.612, 409.79 -> floors 1, 25, 409 (sum 435);
        # the 2 left go to the largest remainders: big (.79), then mid (.61)
        assert _caps(uniform) == {"small": [1], "mid": [26], "big": [410]}

    def test_empty_shapes(self):
        with pytest.raises(ValueError, match="no maskable parameters"):
            Budget(density=0.5).allocate({})

    def test_shapes_accept_torch_size(self):
        alloc = Budget(density=0.5, scope="layer").allocate({"a": torch.Size([4, 3])})
        assert alloc.shapes == {"a": (4, 3)}
        assert alloc.total == 6


class TestUnitsTiling:
    @pytest.mark.parametrize(
        "budget",
        [
            Budget(k=1, scope="row"),
            Budget(k=1, scope="layer"),
            Budget(density=0.3, scope="layer"),
            Budget(density=0.3, scope="row"),
            Budget(density=0.3, scope="layer", allocation="erk"),
            Budget(density=0.3, scope="row", allocation="erk"),
        ],
    )
    def test_units_tile_flat_range(self, budget):
        rng = np.random.default_rng(2)
        for _ in range(30):
            shapes = _random_shapes(rng, max_dim=6)
            alloc = budget.allocate(shapes)
            units = alloc.units()
            assert units[0][0] == 0
            assert units[-1][1] == alloc.size == sum(_size(s) for s in shapes.values())
            for (_, stop, _), (start, _, _) in pairwise(units):
                assert stop == start
            assert all(stop > start for start, stop, _ in units)
            assert sum(cap for _, _, cap in units) == alloc.total
            n_units = len(shapes) if budget.scope == "layer" else sum(s[0] for s in shapes.values())
            assert len(units) == n_units
            for start, stop, cap in units:
                assert 0 <= cap <= stop - start


# ---------------------------------------------------------------------------------------------
# Layer/row density allocations hit the global count exactly
# ---------------------------------------------------------------------------------------------


class TestLayerCounts:
    DENSITIES = [0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0]

    @pytest.mark.parametrize("allocation", ["uniform", "erk"])
    def test_sum_exact_seeded(self, allocation):
        rng = np.random.default_rng(1234)
        n_saturated_seen = 0
        for it in range(400):
            shapes = _random_shapes(rng)
            if it % 2:
                density = float(self.DENSITIES[it % len(self.DENSITIES)])
            else:
                density = float(rng.random())
            alloc = Budget(density=density, scope="layer", allocation=allocation).allocate(shapes)
            sizes = {n: _size(s) for n, s in shapes.items()}
            caps = {n: int(alloc.caps[n][0]) for n in shapes}
            K, eps, ratio = _erk_reference(density, shapes, allocation)
            assert sum(caps.values()) == K == alloc.total, (shapes, density)
            for n in shapes:
                assert alloc.caps[n].shape == (1,)
                assert 0 <= caps[n] <= sizes[n], (shapes, density, n)
                target = min(1.0, eps * ratio[n]) * sizes[n]
                if eps * ratio[n] > 1.0 + 1e-7:
                    n_saturated_seen += 1
                    assert caps[n] == sizes[n], ("saturated layer not dense", shapes, density, n)
                else:
                    # largest remainder: each count is floor or ceil of its continuous target
                    assert math.floor(target - 1e-6) <= caps[n] <= math.ceil(target + 1e-6), (shapes, density, n)
        if allocation == "erk":
            assert n_saturated_seen > 20  # the loop did exercise saturation

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(
        shapes=st.dictionaries(
            keys=st.sampled_from([f"l{i}" for i in range(8)]),
            values=st.lists(st.integers(1, 12), min_size=1, max_size=4).map(tuple),
            min_size=1,
            max_size=6,
        ),
        density=st.floats(0.0, 1.0, allow_nan=False),
        allocation=st.sampled_from(["uniform", "erk"]),
    )
    def test_sum_exact_hypothesis(self, shapes, density, allocation):
        alloc = Budget(density=density, scope="layer", allocation=allocation).allocate(shapes)
        total = sum(_size(s) for s in shapes.values())
        assert alloc.total == count_for_density(density, total)
        for n, s in shapes.items():
            assert 0 <= int(alloc.caps[n][0]) <= _size(s)

    def test_erk_saturation_near_one(self):
        # tiny layers have a huge ERK factor and saturate first
        shapes = {"tiny": (2,), "small": (3, 3), "big": (50, 40), "huge": (100, 100)}
        sizes = {n: _size(s) for n, s in shapes.items()}
        total = sum(sizes.values())
        for density in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
            alloc = Budget(density=density, scope="layer", allocation="erk").allocate(shapes)
            caps = {n: int(alloc.caps[n][0]) for n in shapes}
            assert sum(caps.values()) == count_for_density(density, total)
            assert caps["tiny"] == sizes["tiny"]
            assert caps["small"] == sizes["small"]
            assert all(caps[n] <= sizes[n] for n in shapes)
        full = Budget(density=1.0, scope="layer", allocation="erk").allocate(shapes)
        assert {n: int(full.caps[n][0]) for n in shapes} == sizes
        empty = Budget(density=0.0, scope="layer", allocation="erk").allocate(shapes)
        assert all(int(empty.caps[n][0]) == 0 for n in shapes)

    def test_erk_density_ordered_by_factor(self):
        # factors (sum/prod): a 8/16=.5, b 16/64=.25, c 40/400=.1, d 96/2304=.042
        shapes = {"d": (48, 48), "a": (4, 4), "c": (20, 20), "b": (8, 8)}
        factor = {n: sum(s) / _size(s) for n, s in shapes.items()}
        order = sorted(shapes, key=lambda n: -factor[n])
        assert order == ["a", "b", "c", "d"]
        for density in (0.02, 0.05, 0.1, 0.2, 0.3):
            alloc = Budget(density=density, scope="layer", allocation="erk").allocate(shapes)
            dens = {n: int(alloc.caps[n][0]) / _size(shapes[n]) for n in shapes}
            for hi, lo in pairwise(order):
                assert dens[hi] >= dens[lo], (density, dens)
            # the smallest-factor layer is strictly sparser than the largest-factor one
            assert dens["a"] > dens["d"], (density, dens)
            # and the uniform allocation is (nearly) flat instead
            uni = Budget(density=density, scope="layer").allocate(shapes)
            udens = [int(uni.caps[n][0]) / _size(shapes[n]) for n in shapes]
            assert max(udens) - min(udens) <= 1 / 16 + 1e-12

    def test_erk_row_scope_caps_within_rows(self):
        rng = np.random.default_rng(7)
        for _ in range(100):
            shapes = _random_shapes(rng)
            density = float(rng.random())
            alloc = Budget(density=density, scope="row", allocation="erk").allocate(shapes)
            for n, s in shapes.items():
                assert alloc.caps[n].shape == (s[0],)
                row = _size(s[1:])
                assert np.all(alloc.caps[n] >= 0) and np.all(alloc.caps[n] <= row)

    def test_row_uniform_uses_requested_density_per_row(self):
        # density 0.25: a row of 5 weights allows floor(1.25 + .5) = 1; the per-layer count of b is 3 of 10
        # (largest remainder), i.e. 0.3, and rows then get floor(1.5 + .5) = 2.
        alloc = Budget(density=0.25, scope="row").allocate(SHAPES)
        for n, s in SHAPES.items():
            expected = count_for_density(0.25, _size(s[1:]))
            assert [int(x) for x in alloc.caps[n]] == [expected] * s[0], n


# ---------------------------------------------------------------------------------------------
# project() and violations()
# ---------------------------------------------------------------------------------------------


def _reference_project(alloc: Allocation, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """numpy reference: stable argsort of -score (descending, ties -> lower flattened index) per unit."""
    flat = np.concatenate([np.asarray(scores[n], dtype=np.float64).reshape(-1) for n in alloc.shapes])
    keep = np.zeros(flat.size, dtype=bool)
    for start, stop, cap in alloc.units():
        idx = np.argsort(-flat[start:stop], kind="stable")[:cap]
        keep[start + idx] = True
    out, offset = {}, 0
    for n, s in alloc.shapes.items():
        out[n] = keep[offset : offset + _size(s)].reshape(s)
        offset += _size(s)
    return out


BUDGETS = [
    Budget(density=0.3),
    Budget(k=7),
    Budget(density=0.4, scope="layer"),
    Budget(k=2, scope="layer"),
    Budget(density=0.5, scope="layer", allocation="erk"),
    Budget(density=0.4, scope="row"),
    Budget(k=1, scope="row"),
    Budget(density=0.2, scope="row", allocation="erk"),
    Budget(density=0.4, scope="module"),
    Budget(k=2, scope="module"),
]


class TestProject:
    @pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: str(b.to_dict()))
    @pytest.mark.parametrize("ties", [False, True])
    def test_matches_numpy_reference(self, budget, ties):
        rng = np.random.default_rng(0)
        for _ in range(20):
            # min_dim=2: every layer has >= 2 weights (k=2 per layer); "x" makes k=7 globally feasible
            shapes = _random_shapes(rng, max_dim=7, min_dim=2)
            shapes["x"] = (3, 4)
            alloc = budget.allocate(shapes)
            if ties:
                scores_np = {n: rng.integers(0, 3, size=s).astype(np.float32) for n, s in shapes.items()}
            else:
                scores_np = {n: rng.standard_normal(size=s).astype(np.float32) for n, s in shapes.items()}
            scores = {n: torch.from_numpy(v) for n, v in scores_np.items()}
            masks = alloc.project(scores)
            expected = _reference_project(alloc, scores_np)
            assert list(masks) == list(shapes)
            for n in shapes:
                assert masks[n].dtype == torch.bool
                assert tuple(masks[n].shape) == shapes[n]
                np.testing.assert_array_equal(masks[n].numpy(), expected[n], err_msg=n)
            # exactly the cap of every unit
            flat = torch.cat([masks[n].reshape(-1) for n in shapes]).to(torch.int64)
            for start, stop, cap in alloc.units():
                assert int(flat[start:stop].sum()) == cap
            assert alloc.violations(masks) == []

    def test_keeps_highest_scores_global(self):
        alloc = Budget(k=3).allocate({"a": (2, 2), "b": (3,)})
        masks = alloc.project({"a": torch.tensor([[0.1, 5.0], [-3.0, 0.2]]), "b": torch.tensor([4.0, -1.0, 0.3])})
        assert masks["a"].tolist() == [[False, True], [False, False]]
        assert masks["b"].tolist() == [True, False, True]

    def test_keeps_highest_scores_row(self):
        alloc = Budget(k=2, scope="row").allocate({"w": (2, 4)})
        masks = alloc.project({"w": torch.tensor([[1.0, 4.0, 3.0, 2.0], [-1.0, -4.0, -3.0, -2.0]])})
        assert masks["w"].tolist() == [[False, True, True, False], [True, False, False, True]]

    @pytest.mark.parametrize(
        ("budget", "expected"),
        [
            # global: first 5 of the concatenation a (6) + b (4)
            (Budget(k=5), {"a": [[1, 1, 1], [1, 1, 0]], "b": [0, 0, 0, 0]}),
            # layer: first 2 of each layer
            (Budget(k=2, scope="layer"), {"a": [[1, 1, 0], [0, 0, 0]], "b": [1, 1, 0, 0]}),
            # row: first entry of every row ("b" rows have one entry)
            (Budget(k=1, scope="row"), {"a": [[1, 0, 0], [1, 0, 0]], "b": [1, 1, 1, 1]}),
        ],
    )
    def test_equal_scores_keep_first_entries(self, budget, expected):
        shapes = {"a": (2, 3), "b": (4,)}
        alloc = budget.allocate(shapes)
        masks = alloc.project({n: torch.zeros(s) for n, s in shapes.items()})
        for n in shapes:
            assert masks[n].to(torch.int64).tolist() == expected[n]

    def test_tie_at_the_cap_boundary(self):
        # scores 2, 1, 1, 1, 0 with k=2: keep the 2 and the first of the 1s
        alloc = Budget(k=2).allocate({"w": (5,)})
        masks = alloc.project({"w": torch.tensor([1.0, 2.0, 1.0, 0.0, 1.0])})
        assert masks["w"].tolist() == [True, True, False, False, False]

    def test_scores_with_grad_and_int_dtype(self):
        alloc = Budget(k=2, scope="layer").allocate({"w": (4,)})
        s = torch.tensor([0.5, 0.1, 0.9, 0.3], requires_grad=True)
        assert alloc.project({"w": s})["w"].tolist() == [True, False, True, False]
        assert alloc.project({"w": torch.tensor([3, 9, 1, 9])})["w"].tolist() == [False, True, False, True]

    def test_k_zero_and_full(self):
        shapes = {"w": (3, 2)}
        scores = {"w": torch.randn(3, 2, generator=torch.Generator().manual_seed(0))}
        assert not Budget(k=0, scope="row").allocate(shapes).project(scores)["w"].any()
        assert Budget(density=1.0, scope="layer").allocate(shapes).project(scores)["w"].all()

    @pytest.mark.parametrize("scope", ["global", "layer", "row"])
    def test_shape_mismatch(self, scope):
        alloc = Budget(density=0.5, scope=scope).allocate({"a": (2, 3), "b": (4,)})
        with pytest.raises(ValueError, match=r"Scores for 'a' must have shape \(2, 3\)"):
            alloc.project({"a": torch.zeros(3, 2), "b": torch.zeros(4)})
        with pytest.raises(ValueError, match=r"Scores for 'b' must have shape \(4,\)"):
            alloc.project({"a": torch.zeros(2, 3), "b": torch.zeros(1, 4)})
        with pytest.raises(ValueError, match=r"Scores for 'b'"):
            alloc.project({"a": torch.zeros(2, 3)})

    @pytest.mark.parametrize("scope", ["global", "layer", "row"])
    def test_float64_scores_keep_the_highest(self, scope):
        alloc = Budget(k=1, scope=scope).allocate({"w": (1, 2)})
        masks = alloc.project({"w": torch.tensor([[1.0, 1.0 + 1e-9]], dtype=torch.float64)})
        assert masks["w"].tolist() == [[False, True]]


    def test_nan_scores_are_refused(self):
        """NaN has no rank: np/torch selections put it above everything and a mask would keep
        fewer weights than the cap."""
        alloc = Budget(k=3).allocate({"w": (5,)})
        with pytest.raises(ValueError, match="Scores for 'w' contain NaN"):
            alloc.project({"w": torch.tensor([float("nan"), 1.0, 2.0, 3.0, 4.0])})
        keep = alloc.project({"w": torch.tensor([-float("inf"), 1.0, 2.0, 3.0, float("inf")])})["w"]
        assert keep.tolist() == [False, False, True, True, True]

class TestViolations:
    def test_projected_masks_have_no_violations(self):
        rng = np.random.default_rng(5)
        for budget in BUDGETS:
            shapes = _random_shapes(rng, max_dim=6, min_dim=2)
            shapes["x"] = (3, 4)
            alloc = budget.allocate(shapes)
            scores = {n: torch.from_numpy(rng.standard_normal(s)) for n, s in shapes.items()}
            assert alloc.violations(alloc.project(scores)) == []
            # fewer than the cap is fine too: the budget is an upper bound
            assert alloc.violations({n: torch.zeros(s, dtype=torch.bool) for n, s in shapes.items()}) == []

    def test_global_over_budget(self):
        alloc = Budget(k=3).allocate({"a": (2, 2), "b": (3,)})
        v = alloc.violations({"a": torch.ones(2, 2, dtype=torch.bool), "b": torch.tensor([True, False, False])})
        assert v == ["5 kept > cap 3 in weights [0, 7)"]

    def test_layer_one_entry_per_offending_unit(self):
        alloc = Budget(k=2, scope="layer").allocate({"a": (2, 3), "b": (4,), "c": (3,)})
        masks = {
            "a": torch.ones(2, 3, dtype=torch.bool),  # 6 > 2
            "b": torch.tensor([True, True, False, False]),  # ok
            "c": torch.tensor([1, 1, 1]),  # 3 > 2 (int masks are counted too)
        }
        v = alloc.violations(masks)
        assert v == ["6 kept > cap 2 in weights [0, 6)", "3 kept > cap 2 in weights [10, 13)"]

    def test_row_one_entry_per_offending_row(self):
        alloc = Budget(k=1, scope="row").allocate({"w": (3, 2)})
        masks = {"w": torch.tensor([[True, True], [True, False], [True, True]])}
        v = alloc.violations(masks)
        assert len(v) == 2
        assert v == ["2 kept > cap 1 in weights [0, 2)", "2 kept > cap 1 in weights [4, 6)"]


# ---------------------------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget",
    [
        Budget(k=5),
        Budget(k=0, scope="row"),
        Budget(density=0.1),
        Budget(sparsity=0.9, scope="layer"),
        Budget(sparsity=0.75, scope="row", allocation="erk"),
        Budget(density=1, scope="layer", allocation="erk"),
        Budget(nm=(2, 5)),
    ],
)
def test_to_dict_from_dict_round_trip(budget):
    d = budget.to_dict()
    assert set(d) == {"k", "density", "sparsity", "scope", "allocation", "nm"}
    back = Budget.from_dict(d)
    assert back == budget
    assert Budget.from_dict(json.loads(json.dumps(d))) == budget
    shapes = {"w": (3, 5), "v": (2, 5)}
    a, b = back.allocate(shapes), budget.allocate(shapes)
    assert a.caps.keys() == b.caps.keys()
    for n in a.caps:
        np.testing.assert_array_equal(a.caps[n], b.caps[n])


def test_to_dict_values():
    assert Budget(sparsity=0.9, scope="row").to_dict() == {
        "k": None,
        "density": None,
        "sparsity": 0.9,
        "scope": "row",
        "allocation": "uniform",
        "nm": None,
    }
    assert Budget(nm=(2, 4)).to_dict()["nm"] == [2, 4]
    # a budget written before N:M existed (no "nm" key) reads back the same
    assert Budget.from_dict({"k": None, "density": 0.1, "sparsity": None, "scope": "layer",
                             "allocation": "uniform"}) == Budget(density=0.1, scope="layer")


def test_from_dict_validates():
    with pytest.raises(ValueError, match="exactly one of"):
        Budget.from_dict({"k": 1, "density": 0.5})
    with pytest.raises(ValueError, match="scope must be one of"):
        Budget.from_dict({"density": 0.5, "scope": "bogus"})


def test_violations_checks_names_and_shapes():
    alloc = Budget(k=1).allocate({"w": (2, 3)})
    with pytest.raises(ValueError, match=r"Mask 'w' must have shape \(2, 3\); got \(3, 2\)"):
        alloc.violations({"w": torch.ones(3, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="got missing"):
        alloc.violations({"v": torch.ones(2, 3, dtype=torch.bool)})


# ---------------------------------------------------------------------------------------------
# "module" scope: a module's parameters (e.g. weight and bias) share one count
# ---------------------------------------------------------------------------------------------


class TestModuleScope:
    SHAPES = {"l1.weight": (4, 3), "l1.bias": (4,), "l2.weight": (2, 4), "l2.bias": (2,)}

    def test_hand_computed_caps_and_units(self):
        alloc = Budget(sparsity=0.5, scope="module").allocate(self.SHAPES)
        # 26 weights, global count floor(13 + 1/2) = 13 split 16:10 -> 8 and 5 (largest remainder)
        assert {m: int(c[0]) for m, c in alloc.caps.items()} == {"l1": 8, "l2": 5}
        assert alloc.units() == [(0, 16, 8), (16, 26, 5)]
        assert Budget(k=5, scope="module").allocate(self.SHAPES).units() == [(0, 16, 5), (16, 26, 5)]

    def test_weight_and_bias_compete_for_one_count(self):
        alloc = Budget(k=3, scope="module").allocate({"l.weight": (2, 2), "l.bias": (2,)})
        masks = alloc.project({"l.weight": torch.tensor([[1.0, 5.0], [2.0, 0.5]]), "l.bias": torch.tensor([9.0, 0.1])})
        assert masks["l.weight"].tolist() == [[False, True], [True, False]]
        assert masks["l.bias"].tolist() == [True, False]
        # the same scores under "layer" scope keep 3 of each tensor separately: not the same mask
        layer = Budget(k=2, scope="layer").allocate({"l.weight": (2, 2), "l.bias": (2,)})
        assert layer.units() == [(0, 4, 2), (4, 6, 2)]

    def test_global_count_exact_over_random_modules(self):
        rng = np.random.default_rng(5)
        for _ in range(30):
            shapes = {}
            for i in range(int(rng.integers(1, 5))):
                out_f, in_f = (int(x) for x in rng.integers(1, 9, size=2))
                shapes[f"m{i}.weight"] = (out_f, in_f)
                if rng.random() < 0.7:
                    shapes[f"m{i}.bias"] = (out_f,)
            density = float(rng.random())
            alloc = Budget(density=density, scope="module").allocate(shapes)
            total = sum(_size(s) for s in shapes.values())
            assert alloc.total == count_for_density(density, total)
            units = alloc.units()
            assert len(units) == len({n.split(".")[0] for n in shapes})
            assert units[0][0] == 0 and units[-1][1] == total
            assert all(a[1] == b[0] for a, b in pairwise(units))

    def test_errors_name_the_problem(self):
        with pytest.raises(ValueError, match="exceeds the 10 weights of module 'l2'"):
            Budget(k=11, scope="module").allocate(self.SHAPES)
        with pytest.raises(ValueError, match="not adjacent"):
            Budget(density=0.5, scope="module").allocate({"a.w": (2,), "b.w": (2,), "a.b": (2,)})
        with pytest.raises(ValueError, match="per parameter tensor"):
            Budget(density=0.5, scope="module", allocation="erk")

    def test_module_of(self):
        assert module_of("encoder.layer1.weight") == "encoder.layer1"
        assert module_of("weight") == module_of("bias") == ""  # the root module

    def test_a_root_modules_weight_and_bias_share_one_count(self):
        """A bare Linear's ``weight`` and ``bias`` are one module, as inside a Sequential."""
        bare = Budget(k=2, scope="module").allocate({"weight": (3, 4), "bias": (3,)})
        nested = Budget(k=2, scope="module").allocate({"0.weight": (3, 4), "0.bias": (3,)})
        assert bare.units() == nested.units() == [(0, 15, 2)]
        assert Budget(density=0.5, scope="module").allocate({"weight": (3, 4), "bias": (3,)}).units() == [(0, 15, 8)]



# ---------------------------------------------------------------- N:M


def test_nm_units_are_the_groups_of_m_along_every_row():
    alloc = Budget(nm=(2, 4)).allocate({"a": (2, 8), "conv": (3, 2, 2, 1)})  # conv rows: 2·2·1 = 4
    assert alloc.scope == "nm" and alloc.budget.target_density == 0.5
    assert alloc.units() == [(s, s + 4, 2) for s in range(0, 16 + 12, 4)]
    assert alloc.total == 2 * 7 and [len(c) for c in alloc.caps.values()] == [4, 3]


@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (0, 3), (3, 3), (1, 2)])
def test_nm_projection_equals_a_hand_written_top_n_per_group(nm):
    """Oracle: per group of M (row-major), the N largest scores, ties to the lower index."""
    n, m = nm
    gen = torch.Generator().manual_seed(sum(nm))
    scores = {"w": torch.randint(0, 4, (3, 4 * m), generator=gen).float()}  # many ties
    got = Budget(nm=nm).allocate({"w": (3, 4 * m)}).project(scores)["w"]
    want = torch.zeros(3, 4 * m, dtype=torch.bool)
    for r in range(3):
        for g in range(4):
            group = [(-float(scores["w"][r, g * m + j]), j) for j in range(m)]
            for _, j in sorted(group)[:n]:
                want[r, g * m + j] = True
    assert torch.equal(got, want)


def test_nm_hand_case_and_violations():
    alloc = Budget(nm=(2, 4)).allocate({"w": (1, 8)})
    mask = alloc.project({"w": torch.tensor([[0.1, 0.9, 0.5, 0.5, 3.0, 3.0, 3.0, -1.0]])})["w"]
    assert mask.tolist() == [[False, True, True, False, True, True, False, False]]
    bad = torch.tensor([[True, True, True, False, False, False, False, False]])
    assert alloc.violations({"w": bad}) == ["3 kept > cap 2 in weights [0, 4)"]


@pytest.mark.parametrize("kwargs,match", [
    ({"nm": (5, 4)}, "0 ≤ N ≤ M"),
    ({"nm": (2, 0)}, "0 ≤ N ≤ M"),
    ({"nm": (2.0, 4)}, "pair of integers"),
    ({"nm": (2, 4), "sparsity": 0.5}, "exactly one of"),
    ({"nm": (2, 4), "scope": "row"}, "its own scope"),
    ({"scope": "nm", "sparsity": 0.5}, "needs nm="),
])
def test_nm_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Budget(**kwargs)


def test_nm_refuses_rows_that_are_not_a_multiple_of_m():
    with pytest.raises(ValueError, match="rows of 6 weights, not a multiple of M=4"):
        Budget(nm=(2, 4)).allocate({"w": (3, 6)})
