"""Devices and the common options: every registered method (read from the registry, so a new
one is covered) takes ``device``, ``seed`` and ``verbose``; it solves a tiny problem on each
device it declares and returns CPU bool masks within the budget; a CPU-only method refuses
CUDA with a reason (on any machine); ``compare`` runs on a device and says where each method
ran. CUDA cases are skipped without a GPU."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.api import COMMON_OPTIONS, CommonOptions, register
from maskopt.baselines import grasp_scores, snip_scores, synflow_scores

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")

# few steps/epochs; keyed by method name (a method missing here runs at its defaults)
FAST = {"sigmoid": {"steps": 6}, "anneal": {"steps": 6}, "ste": {"steps": 6}, "hierarchy": {"steps": 3},
        "imp": {"epochs": 1, "rounds": 2}, "kstarts": {"k": 2, "epochs": 1}, "dissipating": {"epochs": 1},
        "kstarts_dissipating": {"k": 2, "epochs": 1}, "synflow": {"iterations": 5}}


def fast(method: str) -> dict:
    return {**FAST.get(method, {}), "verbose": False}


@pytest.fixture(scope="module")
def problems() -> list[mo.Problem]:
    """A tiny LayerwiseProblem (tried first: every layer-wise method takes it) and a tiny
    DistillProblem (Linear–ReLU–Linear student, one teacher, labels, l1)."""
    layer, _ = mo.data.planted_layerwise(n_samples=12, n_in=5, n_out=2, density=0.4, noise=0.1, seed=3)
    torch.manual_seed(0)
    student, teacher = (nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(2))
    x = torch.randn(24, 6)
    net = mo.DistillProblem(student, [teacher], x, mo.Budget(sparsity=0.5, scope="layer"),
                            labels=torch.randint(0, 3, (24,)))
    return [layer, net]


def problem_for(method: str, problems: list[mo.Problem]) -> mo.Problem:
    spec = mo.method_spec(method)
    taken = [p for p in problems if spec.accepts(p)]
    assert taken, f"no test problem for {method!r}: {[spec.refusal(p) for p in problems]}"
    return taken[0]


def on_its_devices() -> list:
    return [pytest.param(m, d, id=f"{m}-{d}", marks=[needs_cuda] if d == "cuda" else [])
            for m in mo.methods() for d in mo.method_spec(m).devices]


def cpu_only() -> list[str]:
    return [m for m in mo.methods() if "cuda" not in mo.method_spec(m).devices]


def check_answer(problem: mo.Problem, res: mo.SolveResult) -> None:
    """CPU bool masks of the problem's names and shapes, within budget, scored by evaluate."""
    res.masks.check_shapes(problem.mask_shapes())
    assert all(m.device.type == "cpu" and m.dtype == torch.bool for m in res.masks.values())
    assert problem.allocation.violations(res.masks) == []
    assert res.objective == mo.evaluate(problem, res.masks)


# ---------------------------------------------------------------- the registry


def test_every_method_takes_the_common_options():
    assert COMMON_OPTIONS == ("device", "seed", "verbose")
    for name in mo.methods():
        spec = mo.method_spec(name)
        assert set(COMMON_OPTIONS) <= spec.option_names, name
        assert "cpu" in spec.devices and set(spec.devices) <= {"cpu", "cuda"}, name


def test_registering_options_without_the_common_ones_or_without_cpu_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Bare:
        k: int = 1

    @dataclasses.dataclass(frozen=True)
    class Fine(CommonOptions):
        k: int = 1

    def fn(problem, opts):
        raise AssertionError("never runs")

    with pytest.raises(TypeError, match=r"lack \['device', 'seed', 'verbose'\]: subclass maskopt.api.CommonOptions"):
        register("test-devices-bare", options=Bare, problems=(mo.Problem,), summary="-", family="one-shot")(fn)
    with pytest.raises(ValueError, match="devices must include 'cpu'"):
        register("test-devices-gpu", options=Fine, problems=(mo.Problem,), summary="-", family="one-shot",
                 devices=("cuda",))(fn)
    assert "test-devices-bare" not in mo.methods() and "test-devices-gpu" not in mo.methods()


def test_common_options_are_keyword_only_and_validated(problems):
    layer = problems[0]

    @dataclasses.dataclass(frozen=True)
    class Positional(CommonOptions):
        k: int = 1

    assert Positional(3, seed=2).k == 3  # the common fields never take a subclass's positions
    with pytest.raises(ValueError, match="seed must be an integer ≥ 0"):
        mo.solve(layer, method="magnitude", seed=-1)
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got 'tpu'"):
        mo.solve(layer, method="exact", device="tpu")
    with pytest.raises(TypeError, match="must be True or False"):
        mo.solve(layer, method="wanda", verbose="no")


# ---------------------------------------------------------------- every method on every device it declares


@pytest.mark.parametrize("method,device", on_its_devices())
def test_method_solves_on_each_device_it_declares(problems, method, device):
    problem = problem_for(method, problems)
    res = mo.solve(problem, method=method, device=device, **fast(method))
    check_answer(problem, res)
    assert torch.device(res.stats["device"]).type == device
    assert res.stats["seed"] == 0


@pytest.mark.parametrize("method", mo.methods())
def test_results_without_a_device_equal_those_on_the_default_device(problems, method):
    """Without ``device`` a method runs on its default (the CPU, or for ``"auto"`` the CPU on
    a machine without CUDA): the same masks and objective as naming that device."""
    problem = problem_for(method, problems)
    spec = mo.method_spec(method)
    default = spec.resolve_device(spec.options().device)
    plain = mo.solve(problem, method=method, **fast(method))
    named = mo.solve(problem, method=method, device=str(default), **fast(method))
    assert plain.stats["device"] == named.stats["device"] == str(default)
    assert plain.masks == named.masks and plain.objective == named.objective
    if not CUDA:
        assert default == torch.device("cpu")


@pytest.mark.parametrize("method", cpu_only())
def test_cpu_only_methods_refuse_cuda_with_the_reason_and_take_auto(problems, method):
    """Refused before anything runs, whether or not CUDA exists here; "auto" picks the CPU."""
    problem = problem_for(method, problems)
    spec = mo.method_spec(method)
    assert not spec.runs_on("cuda") and not spec.runs_on("cuda:1") and spec.runs_on("auto")
    why = f" \\({spec.device_reason}\\)" if spec.device_reason else ""
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=rf"Method '{method}' runs on cpu only{why}; got device='{device}'\. "
                                             r"Use device='cpu' with it, or a method that runs on cuda: .*snip"):
            mo.solve(problem, method=method, device=device, **fast(method))
    res = mo.solve(problem, method=method, device="auto", **fast(method))
    assert res.stats["device"] == "cpu"
    check_answer(problem, res)


def test_cpu_only_methods_say_why():
    for method in ("exact", "bruteforce", "obs", "swap"):
        spec = mo.method_spec(method)
        assert spec.devices == ("cpu",) and spec.device_reason, method


def test_gradient_and_training_methods_run_on_cuda():
    for method in ("magnitude", "random", "snip", "grasp", "synflow", "wanda", "imp", "kstarts", "dissipating",
                   "kstarts_dissipating"):
        assert mo.method_spec(method).devices == ("cpu", "cuda"), method


def test_a_deterministic_method_takes_a_seed_and_records_it(problems):
    layer = problems[0]
    a = mo.solve(layer, method="exact", seed=7)
    b = mo.solve(layer, method="exact")
    assert a.stats["seed"] == 7 and b.stats["seed"] == 0 and a.masks == b.masks
    assert not mo.method_spec("exact").uses_seed and mo.method_spec("random").uses_seed
    assert mo.solve(layer, method="random", seed=1).masks != mo.solve(layer, method="random", seed=2).masks


# ---------------------------------------------------------------- the objective on a device


def test_objective_fn_away_from_float64_cpu_matches_objective_tensor(problems):
    """The closure's other path (a copy of the data; for a network, of the student) in
    float32 on the CPU against the float64 definition, with given masks and weights."""
    gen = torch.Generator().manual_seed(0)
    for problem in problems:
        masks = {n: torch.rand(s, generator=gen) for n, s in problem.mask_shapes().items()}
        weights = {n: 2.0 * w for n, w in problem.weights().items()}
        f32 = problem.objective_fn("cpu", torch.float32)
        assert float(f32(masks)) == pytest.approx(float(problem.objective_tensor(masks)), rel=1e-5)
        assert float(f32(masks, {n: w.float() for n, w in weights.items()})) == pytest.approx(
            float(problem.objective_tensor(masks, weights)), rel=1e-5)
        assert problem.objective_fn()(masks) == problem.objective_tensor(masks)


def test_a_problem_of_ones_own_computes_on_the_cpu_only():
    class Own(mo.Problem):
        budget = mo.Budget(k=1)
        criterion = mo.Loss("l1")

        def mask_shapes(self):
            return {"w": (2,)}

        def weights(self):
            return {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}

        def objective_tensor(self, masks, weights=None):
            w = self.weights()["w"] if weights is None else weights["w"]
            return (masks["w"].to(w) * w).square().sum()

    own = Own()
    assert own.objective_fn() == own.objective_tensor
    with pytest.raises(ValueError, match="Own computes its objective on the CPU in float64 only.*device='cpu'"):
        own.objective_fn("cpu", torch.float32)
    res = mo.solve(own, method="snip")  # |w ⊙ ∂L/∂w| = 2w² = (2, 8)
    assert res.masks["w"].tolist() == [False, True]


@needs_cuda
def test_objective_and_gradient_scores_on_cuda_match_the_cpu(problems):
    gen = torch.Generator().manual_seed(1)
    for problem in problems:
        masks = {n: torch.rand(s, generator=gen) for n, s in problem.mask_shapes().items()}
        on_gpu = problem.objective_fn("cuda")(masks)
        assert on_gpu.device.type == "cuda"
        assert float(on_gpu) == pytest.approx(float(problem.objective_tensor(masks)), rel=1e-12)
        for scores in (snip_scores, grasp_scores):
            gpu, cpu = scores(problem, "cuda"), scores(problem)
            for n in cpu:
                assert gpu[n].device.type == "cuda"
                torch.testing.assert_close(gpu[n].cpu(), cpu[n], rtol=1e-10, atol=1e-12)
    net = problems[1]
    gpu = synflow_scores(net, None, copy.deepcopy(net.student).to("cuda"))
    for n, s in synflow_scores(net).items():
        assert gpu[n].device.type == "cuda"
        torch.testing.assert_close(gpu[n].cpu(), s, rtol=1e-10, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_rank_only_methods_give_the_same_mask_on_cuda(problems, method):
    for problem in problems:
        assert mo.solve(problem, method=method, device="cuda").masks == mo.solve(problem, method=method).masks


# ---------------------------------------------------------------- compare on a device


def _compare(problem: mo.Problem, device: str, methods: list[str]) -> mo.Comparison:
    return mo.compare(problem, methods, seeds=(0,), options={m: FAST[m] for m in methods if m in FAST},
                      verbose=False, device=device)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_compare_runs_each_method_on_the_device_it_can(problems, device):
    """Every method taking the layer-wise problem: those that run on ``device`` run there,
    the CPU-only ones on the CPU, and each row says which."""
    layer = problems[0]
    methods = mo.methods(problem=layer)
    c = _compare(layer, device, methods)
    assert [r["method"] for r in c.rows] == methods
    for row, res in zip(c.rows, c.results):
        expected = device if device in mo.method_spec(row["method"]).devices else "cpu"
        assert torch.device(row["device"]).type == expected == torch.device(res.stats["device"]).type
        check_answer(layer, res)
    assert "device" in c.table().splitlines()[0]
    assert {r["device"] for r in c.rows if r["method"] in ("exact", "bruteforce", "obs", "swap")} == {"cpu"}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_compare_on_a_device_with_a_distillation_problem_and_tickets(problems, device):
    net = problems[1]
    data = mo.data.Dataset("tiny", net.inputs.float(), torch.randint(0, 3, (24,)), net.inputs[:8].float(),
                           torch.randint(0, 3, (8,)), 3)
    c = mo.compare(net, ["snip", "imp"], options={"imp": FAST["imp"]}, certify=False, verbose=False, device=device,
                   ticket={"data": data, "epochs": 1})
    assert [torch.device(r["device"]).type for r in c.rows] == [device, device]
    assert all(0.0 <= r["test_acc"] <= 100.0 for r in c.rows)


def test_compare_never_moves_a_device_named_in_a_methods_own_options(problems):
    layer = problems[0]
    with pytest.raises(ValueError, match="Method 'exact' runs on cpu only"):
        mo.compare(layer, ["exact"], options={"exact": {"device": "cuda"}}, verbose=False, device="cuda")
    c = mo.compare(layer, ["magnitude"], options={"magnitude": {"device": "cpu"}}, verbose=False,
                   device="auto")
    assert c.rows[0]["device"] == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        mo.compare(layer, ["magnitude"], verbose=False, device="gpu")
