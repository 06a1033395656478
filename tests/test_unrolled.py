"""Unrolled sparse solvers: generators, NMSE conventions, ISTA/FISTA against cvxpy,
LISTA-as-ISTA, ALISTA's analytic weight, short training runs, checkpoints and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from maskopt.cli import main
from maskopt.solvers.unrolled import (
    ALISTA,
    LISTA,
    LISTACP,
    Continuation,
    HyperLISTA,
    SparseCodingProblem,
    TrainConfig,
    alista_weight,
    build_model,
    debias,
    fista,
    fista_schedules,
    ista,
    iterations_to_reach,
    lasso_cvxpy,
    nmse_db,
    nmse_db_per_sample,
    oracle_nmse_db,
    shrink,
    support_least_squares,
    support_shrink,
    train_stagewise,
    tune_hyperlista,
)
from maskopt.solvers.unrolled.bench import LAMBDAS

SMALL = {"m": 50, "n": 100}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread avoids OpenMP overhead on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_problem_is_deterministic_and_has_the_stated_distribution():
    a, b = SparseCodingProblem(seed=3), SparseCodingProblem(seed=3)
    assert torch.equal(a.A, b.A)
    assert torch.allclose(a.A.norm(dim=0), torch.ones(500), atol=1e-6)
    for split in ("train", "validation", "test"):
        ya, xa = a.sample(split, 64)
        yb, xb = b.sample(split, 64)
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert not torch.equal(a.sample("validation", 64)[1], a.sample("test", 64)[1])
    assert not torch.equal(a.A, SparseCodingProblem(seed=4).A)
    s1, s2 = a.stream(32, seed=1), b.stream(32, seed=1)
    for _ in range(3):
        assert torch.equal(next(s1)[1], next(s2)[1])
    assert not torch.equal(next(a.stream(32, seed=2))[1], next(a.stream(32, seed=1))[1])
    y, x = a.sample("test", 2000)
    assert abs(float((x != 0).double().mean()) - 0.1) < 0.005
    assert y.shape == (2000, 250) and x.shape == (2000, 500) and y.dtype == torch.float32
    assert torch.allclose(y, x @ a.A.T, atol=1e-5)  # noise-free


def test_noise_has_the_requested_snr():
    noisy = SparseCodingProblem(snr_db=20.0, seed=1)
    y, x = noisy.sample("test", 500)
    clean = x.double() @ noisy.A.double().T
    snr = 10 * torch.log10(clean.var(dim=1) / (y.double() - clean).var(dim=1))
    assert abs(float(snr.mean()) - 20.0) < 0.5
    with pytest.raises(ValueError, match="split"):
        noisy.sample("training", 3)
    with pytest.raises(ValueError):
        SparseCodingProblem(p=0.0)


def test_nmse_conventions():
    x = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    assert nmse_db(torch.zeros_like(x), x) == pytest.approx(0.0)
    assert nmse_db(0.9 * x, x) == pytest.approx(-20.0)
    assert nmse_db_per_sample(0.9 * x, x) == pytest.approx(-20.0)
    x_hat = x + torch.tensor([[0.1, 0.0], [0.0, 0.1]])  # same error, different signal energy
    assert nmse_db(x_hat, x) == pytest.approx(10 * math.log10(0.02 / 101))
    assert nmse_db_per_sample(x_hat, x) == pytest.approx((10 * math.log10(0.01) + 10 * math.log10(1e-4)) / 2)


def test_support_least_squares_matches_numpy_on_each_support():
    prob = SparseCodingProblem(**SMALL, p=0.1, snr_db=30.0, dtype=torch.float64)
    y, x = prob.sample("test", 6)
    rng = np.random.default_rng(0)
    support = torch.as_tensor(rng.random((6, SMALL["n"])) < 0.1)
    support[2] = False  # an empty support gives the zero estimate
    est = support_least_squares(prob.A, y, support)
    A, Y = prob.A.numpy(), y.numpy()
    for b in range(6):
        s = support[b].numpy()
        ref = np.zeros(SMALL["n"])
        if s.any():
            ref[s] = np.linalg.lstsq(A[:, s], Y[b], rcond=None)[0]
        np.testing.assert_allclose(est[b].numpy(), ref, atol=1e-10)
    assert not est[2].any() and not est[~support].any()
    with pytest.raises(ValueError, match="support must be a bool tensor"):
        support_least_squares(prob.A, y, support.double())
    with pytest.raises(ValueError, match="need A"):
        support_least_squares(prob.A, y.T, support)


def test_debias_is_two_stage_least_squares_and_drops_false_detections():
    prob = SparseCodingProblem(**SMALL, p=0.05, snr_db=40.0, dtype=torch.float64)
    y, x = prob.sample("test", 8)
    rng = np.random.default_rng(1)
    spurious = torch.as_tensor((rng.random(x.shape) < 0.04) & (x.numpy() == 0))
    estimate = x + 1e-3 * spurious  # every true entry found plus small false detections
    A, Y = prob.A.numpy(), y.numpy()
    prune = 0.05
    out = debias(prob.A, y, estimate, prune=prune)
    for b in range(8):
        z = np.zeros(SMALL["n"])
        s = estimate[b].numpy() != 0
        z[s] = np.linalg.lstsq(A[:, s], Y[b], rcond=None)[0]
        ref = np.zeros(SMALL["n"])
        keep = np.abs(z) > prune
        ref[keep] = np.linalg.lstsq(A[:, keep], Y[b], rcond=None)[0]
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-10)
    # false detections' coefficients are noise-sized, so pruning recovers the oracle estimate
    small = x.abs() <= prune  # true entries below the prune level are (rightly) lost too
    assert torch.equal(out != 0, (x != 0) & ~small) and spurious.any()
    assert torch.equal(debias(prob.A, y, estimate), support_least_squares(prob.A, y, estimate != 0))
    with pytest.raises(ValueError, match="must be >= 0"):
        debias(prob.A, y, estimate, prune=-1.0)
    with pytest.raises(ValueError, match="estimate"):
        debias(prob.A, y, estimate.T)


def test_oracle_floor_is_exact_without_noise_and_finite_with_noise():
    clean = SparseCodingProblem(**SMALL, p=0.05, dtype=torch.float64)
    y, x = clean.sample("test", 20)
    assert oracle_nmse_db(clean.A, y, x) < -200
    noisy = SparseCodingProblem(**SMALL, p=0.05, snr_db=30.0, dtype=torch.float64)
    y, x = noisy.sample("test", 50)
    assert -45 < oracle_nmse_db(noisy.A, y, x) < -25


@pytest.mark.parametrize("continuation", [None, Continuation(lam0=2.0, decay=0.95)])
def test_ista_and_fista_converge_to_the_cvxpy_lasso_solution(continuation):
    prob = SparseCodingProblem(m=20, n=40, seed=2, dtype=torch.float64)
    y, _ = prob.sample("test", 3)
    lam = 0.05
    ref = np.stack([lasso_cvxpy(prob.A.numpy(), yi.numpy(), lam) for yi in y])
    assert np.abs(ista(prob.A, y, lam, 20000, continuation=continuation).x.numpy() - ref).max() < 1e-5
    assert np.abs(fista(prob.A, y, lam, 3000, continuation=continuation).x.numpy() - ref).max() < 1e-5


def test_fista_beats_ista_and_traces_nmse():
    prob = SparseCodingProblem(**SMALL, dtype=torch.float64)
    y, x = prob.sample("test", 50)
    i, f = ista(prob.A, y, 0.01, 100, x_true=x), fista(prob.A, y, 0.01, 100, x_true=x)
    assert len(f.nmse_db) == 100 and f.nmse_db[-1] == pytest.approx(nmse_db(f.x, x))
    assert f.nmse_db[-1] < i.nmse_db[-1]
    with pytest.raises(ValueError):
        ista(prob.A, y, -1.0, 5)


@pytest.mark.parametrize("model_cls", [LISTA, lambda A, k, lam: LISTACP(A, k, lam, support_selection=False)])
def test_untrained_lista_reproduces_ista_iterates(model_cls):
    prob = SparseCodingProblem(**SMALL, dtype=torch.float64)
    y, _ = prob.sample("test", 10)
    model = model_cls(prob.A, 8, 0.1)
    with torch.no_grad():
        its = model.iterates(y)
    for k, xk in enumerate(its, start=1):
        assert torch.allclose(xk, ista(prob.A, y, 0.1, k).x, rtol=0, atol=1e-12)


def test_lista_cp_with_alista_init_is_untrained_alista():
    prob = SparseCodingProblem(**SMALL, dtype=torch.float64)
    y, _ = prob.sample("test", 10)
    with torch.no_grad():
        assert torch.allclose(LISTACP(prob.A, 6, init="alista")(y), ALISTA(prob.A, 6)(y), atol=1e-12)
    with pytest.raises(ValueError, match="init"):
        LISTACP(prob.A, 2, init="random")


def test_alista_weight_satisfies_its_constraints_and_is_optimal():
    prob = SparseCodingProblem(m=15, n=30, dtype=torch.float64)
    A, W = prob.A, alista_weight(prob.A)
    assert W.shape == A.shape
    assert torch.allclose((W * A).sum(dim=0), torch.ones(30, dtype=torch.float64), atol=1e-12)
    import cvxpy as cp

    for i in (0, 7):  # column i minimises ‖Aᵀw‖ subject to a_iᵀw = 1
        w = cp.Variable(15)
        cp.Problem(cp.Minimize(cp.sum_squares(A.numpy().T @ w)), [A.numpy()[:, i] @ w == 1]).solve()
        assert np.abs(w.value - W[:, i].numpy()).max() < 1e-6


def test_support_shrink():
    z = torch.tensor([[3.0, -2.0, 0.5, 0.1], [1.0, -4.0, 0.2, 2.0]])
    assert torch.equal(support_shrink(z, 0.3, 0.0), shrink(z, 0.3))
    out = support_shrink(z, 0.3, 0.5)  # the two largest magnitudes of each row bypass
    assert torch.allclose(out, torch.tensor([[3.0, -2.0, 0.2, 0.0], [0.7, -4.0, 0.0, 2.0]]))
    per_row = support_shrink(z, 0.3, torch.tensor([[0.25], [0.0]]))
    assert torch.allclose(per_row, torch.tensor([[3.0, -1.7, 0.2, 0.0], [0.7, -3.7, 0.0, 1.7]]))
    assert torch.equal(support_shrink(z, 5.0, 1.0), torch.zeros_like(z))  # below θ: never bypassed


def _fista16(prob: SparseCodingProblem, y: torch.Tensor, x: torch.Tensor) -> float:
    return min(nmse_db(fista(prob.A, y, lam, 16).x, x) for lam in LAMBDAS)


SHORT = TrainConfig(lr=1e-3, stage_decays=(1.0,), batch_size=64, val_size=256, val_every=20, patience=2, max_steps=60)


@pytest.mark.parametrize("name,lr", [("lista", 3e-3), ("lista-cp", 3e-3), ("lista-cpss", 3e-3), ("alista", 3e-2)])
def test_short_training_beats_16_fista_iterations(name, lr):
    prob = SparseCodingProblem(**SMALL, seed=5)
    torch.manual_seed(0)
    model = build_model(name, prob.A, 16)
    y, x = prob.sample("validation", 256)
    with torch.no_grad():
        before = nmse_db(model(y), x)
    result = train_stagewise(model, prob, TrainConfig(**{**SHORT.__dict__, "lr": lr}), verbose=False)
    with torch.no_grad():
        after = nmse_db(model(y), x)
    assert result.completed and len(result.val_nmse_db) == 16
    assert after == pytest.approx(result.val_nmse_db[-1])
    assert after < before and after < _fista16(prob, y, x)


def test_hyperlista_search_beats_16_fista_iterations_without_the_true_x():
    prob = SparseCodingProblem(**SMALL, seed=5)
    y, x = prob.sample("validation", 256)
    model = HyperLISTA(prob.A, 16)
    best = tune_hyperlista(model, y, x, points=4, rounds=2, verbose=False)
    with torch.no_grad():
        out = model(y)
    assert nmse_db(out, x) == pytest.approx(best["nmse_db"])
    assert best["nmse_db"] < _fista16(prob, y, x)
    assert (model.c_theta, model.c_beta, model.c_p) == (best["c_theta"], best["c_beta"], best["c_p"])
    with torch.no_grad():  # the forward pass sees only y: a batch gives the same rows alone
        assert torch.allclose(model(y[:3]), out[:3], atol=1e-6)
    # the Nelder–Mead phase starts at the grid's best point: never worse, the same on a rerun
    local = tune_hyperlista(model, y, x, points=4, rounds=2, local_evals=30, verbose=False)
    assert local["nmse_db"] <= best["nmse_db"]
    assert tune_hyperlista(model, y, x, points=4, rounds=2, local_evals=30, verbose=False) == local
    with torch.no_grad():
        assert nmse_db(model(y), x) == pytest.approx(local["nmse_db"])


def test_training_is_deterministic_and_resumes_from_checkpoint(tmp_path):
    prob = SparseCodingProblem(m=20, n=40, seed=1)
    cfg = TrainConfig(lr=1e-2, batch_size=32, val_size=64, val_every=5, patience=1, max_steps=10)
    a, b = ALISTA(prob.A, 3), ALISTA(prob.A, 3)
    ra = train_stagewise(a, prob, cfg, checkpoint=tmp_path / "ck.pt", verbose=False)
    train_stagewise(b, prob, cfg, verbose=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = ALISTA(prob.A, 3)
    rc = train_stagewise(c, prob, cfg, checkpoint=tmp_path / "ck.pt", verbose=False)  # all layers already done
    assert rc.steps == ra.steps and rc.val_nmse_db == ra.val_nmse_db
    assert all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    cut = train_stagewise(ALISTA(prob.A, 3), prob, TrainConfig(**{**cfg.__dict__, "time_limit": 0.0}), verbose=False)
    assert not cut.completed and len(cut.val_nmse_db) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_models_match_on_cuda():
    cpu = SparseCodingProblem(**SMALL)
    gpu = SparseCodingProblem(**SMALL, device="cuda")
    y, x = cpu.sample("test", 64)
    yg, xg = gpu.sample("test", 64)
    assert torch.equal(xg.cpu(), x)
    for name in ("lista", "lista-cpss", "alista", "hyperlista"):
        with torch.no_grad():
            out_cpu = build_model(name, cpu.A, 6)(y)
            out_gpu = build_model(name, gpu.A, 6)(yg)
        assert abs(nmse_db(out_cpu, x) - nmse_db(out_gpu.cpu(), x)) < 0.1


def test_fista_iterations_to_reach():
    prob = SparseCodingProblem(**SMALL, dtype=torch.float64)
    y, x = prob.sample("test", 40)
    curves = fista_schedules(prob.A, y, x, max_iters=300, decays=(0.95,), lams=(1e-2,))
    assert sorted(curves) == ["continuation decay=0.95", "fixed lam=0.01"] and len(curves["fixed lam=0.01"]) == 300
    its, run = iterations_to_reach(curves, -10.0)
    assert curves[run][its - 1] <= -10.0 < curves[run][its - 2]
    assert all(v > -10.0 for c in curves.values() for v in c[:its - 1])
    assert iterations_to_reach(curves, -1000.0) == (None, None)


def test_cli_lista_bench_writes_per_layer_nmse(tmp_path, capsys):
    path = tmp_path / "r.json"
    argv = ["lista-bench", "--method", "alista", "--layers", "3", "--m", "20", "--n", "40", "--max-steps", "10",
            "--test-size", "64", "--quiet", "--json", str(path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert record["snr_db"] == "inf"  # the default --snr inf, as a string: standard JSON has no Infinity
    assert len(record["nmse_db"]) == len(record["nmse_db_per_sample"]) == 3
    assert "aggregate" in record["convention"] and "aggregate" in printed
    assert f"{record['nmse_db'][-1]:8.2f}" in printed
    assert main(["lista-bench", "--method", "fista", "--layers", "5", "--m", "20", "--n", "40", "--test-size", "16",
                 "--quiet"]) == 0
    assert main(["lista-bench", "--method", "alista", "--layers", "0", "--quiet"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_cli_lista_bench_rejects_bad_arguments(capsys):
    for bad in (["--method", "nope"], ["--method", "alista", "--snr", "loud"]):
        assert main(["lista-bench", *bad]) == 2 and "invalid" in capsys.readouterr().err
