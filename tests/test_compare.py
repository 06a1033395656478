"""compare(): numbers match evaluate/certify, files parse, plots are images."""

from __future__ import annotations

import csv
import json

import matplotlib.image as mpimg
import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.compare import save_masks

QUIET = {"steps": 60, "verbose": False}


@pytest.fixture(scope="module")
def layerwise():
    prob, _ = mo.data.planted_layerwise(n_samples=20, n_in=10, density=0.3, noise=0.2, seed=1)
    return prob


@pytest.fixture(scope="module")
def comparison(layerwise):
    return mo.compare(layerwise, ["exact", "magnitude", "random", "sigmoid"], seeds=(0, 1),
                      options={"sigmoid": QUIET}, verbose=False)


def test_rows_match_evaluate_and_the_exact_optimum(layerwise, comparison):
    c = comparison
    assert [(r["method"], r["seed"]) for r in c.rows] == [("exact", None), ("magnitude", None), ("random", 0),
                                                         ("random", 1), ("sigmoid", 0), ("sigmoid", 1)]
    exact = c.results[0]
    assert c.reference_is_bound and c.reference == pytest.approx(exact.bound)
    for row, res in zip(c.rows, c.results):
        assert row["objective"] == mo.evaluate(layerwise, res.masks)
        assert row["gap"] == pytest.approx(mo.relative_gap(row["objective"], exact.bound))
        assert row["hamming_to_exact"] == int((res.masks["weight"] != exact.masks["weight"]).sum())
        assert row["layers"] == {"weight": pytest.approx(res.masks.density)}
    assert c.rows[0]["gap"] == 0 and c.rows[0]["hamming_to_exact"] == 0
    assert c.rows[2]["objective"] != c.rows[3]["objective"]  # the seeds reach the random method


def test_files_parse_and_the_plot_is_an_image(tmp_path, comparison):
    c = comparison
    c.to_csv(tmp_path / "r.csv")
    c.to_json(tmp_path / "r.json")
    c.plot(tmp_path / "r.png")
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and float(rows[1]["objective"]) == pytest.approx(c.rows[1]["objective"])
    assert "density[weight]" in rows[0]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["reference"] == pytest.approx(c.reference) and len(data["rows"]) == 6
    img = mpimg.imread(tmp_path / "r.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0
    md = c.to_markdown().splitlines()
    assert md[0].startswith("| method | seed | objective") and len(md) == 8
    assert "exact" in c.table().splitlines()[2]
    save_masks(c, tmp_path / "m.safetensors")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "m.safetensors")
    assert torch.equal(saved["exact/weight"], c.results[0].masks["weight"])


def test_without_an_exact_run_the_best_mask_is_certified(layerwise):
    c = mo.compare(layerwise, ["magnitude"], verbose=False)
    exact = mo.solve(layerwise, method="exact")
    assert c.reference_is_bound and c.reference == pytest.approx(exact.objective, rel=1e-6)
    assert c.rows[0]["gap_to"] == "bound" and c.rows[0]["hamming_to_exact"] is not None


def test_too_large_problems_compare_against_the_best_found():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))  # tanh: no exact MILP
    teacher = nn.Sequential(nn.Linear(6, 2))
    prob = mo.DistillProblem(student, [teacher], torch.randn(30, 6), mo.Budget(sparsity=0.5))
    c = mo.compare(prob, ["magnitude", "random"], seeds=(0,), verbose=False)
    assert not c.reference_is_bound and c.reference == min(r["objective"] for r in c.rows)
    assert all(r["gap_to"] == "best found" and r["hamming_to_exact"] is None for r in c.rows)
    assert min(r["gap"] for r in c.rows) == 0


def test_ticket_accuracy_and_tradeoff_plot(tmp_path):
    data, teacher = mo.data.planted_classification(n_train=120, n_test=60, n_in=8, hidden=12, num_classes=3)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    comps = []
    for s in (0.5, 0.8):
        prob = mo.DistillProblem(student, [teacher], data.x, mo.Budget(sparsity=s), loss="kl")
        comps.append(mo.compare(prob, ["magnitude", "random"], certify=False, verbose=False,
                                ticket={"data": data, "epochs": 2, "lr": 0.01}))
    for c in comps:
        assert all(0 <= r["test_acc"] <= 100 for r in c.rows)
    manual = mo.train_ticket(student, comps[0].results[0].masks, data, epochs=2, lr=0.01, verbose=False)
    assert comps[0].rows[0]["test_acc"] == pytest.approx(manual.best("test_acc"))
    mo.plot_tradeoff(comps, tmp_path / "t.png")
    assert mpimg.imread(tmp_path / "t.png").std() > 0


def test_bad_calls(layerwise):
    with pytest.raises(ValueError, match="not among methods"):
        mo.compare(layerwise, ["magnitude"], options={"exact": {}}, verbose=False)
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        mo.compare(layerwise, ["nope"], verbose=False)
    with pytest.raises(TypeError, match="Unknown option"):
        mo.compare(layerwise, ["magnitude"], options={"magnitude": {"x": 1}}, verbose=False)
    with pytest.raises(ValueError, match="needs a DistillProblem"):
        mo.compare(layerwise, ["magnitude"], ticket={"data": None}, verbose=False)
    with pytest.raises(ValueError, match="no ticket accuracies"):
        mo.plot_tradeoff([mo.compare(layerwise, ["magnitude"], certify=False, verbose=False)], "/tmp/x.png")


def test_quiet_compare_silences_the_methods_progress_bars(layerwise, capsys):
    """verbose=False prints nothing, the relaxations' tqdm bars included; a method's own
    verbose option still wins."""
    capsys.readouterr()
    mo.compare(layerwise, ["magnitude", "sigmoid", "anneal"], options={"sigmoid": {"steps": 30},
               "anneal": {"steps": 30}}, verbose=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    mo.compare(layerwise, ["sigmoid"], options={"sigmoid": {"steps": 30, "verbose": True}}, verbose=False)
    assert "sigmoid" in capsys.readouterr().err
