"""Training: masked tickets keep pruned weights exactly zero; teachers train, save and reload."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import maskopt as mo
from maskopt.train import Trainer, TrainResult, load_teachers, train, train_teachers


@pytest.fixture(scope="module")
def data():
    return mo.data.planted_classification(n_train=200, n_test=100, n_in=10, hidden=16, num_classes=3, seed=2)[0]


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))


def random_masks(model: nn.Module, density: float = 0.3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {n: torch.rand(p.shape, generator=gen) < density
            for n, p in model.named_parameters() if n.endswith("weight")}


@pytest.mark.parametrize("optimizer,wd", [("adam", 0.0), ("adamw", 0.1), ("sgd", 1e-3)])
def test_ticket_training_keeps_pruned_weights_exactly_zero(data, optimizer, wd):
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = random_masks(model)
    res = mo.train_ticket(model, masks, data, epochs=3, lr=0.05, optimizer=optimizer, weight_decay=wd,
                          batch_size=32, verbose=False)
    params = dict(res.model.named_parameters())
    for n, m in masks.items():
        assert torch.all(params[n][~m] == 0)
        assert not torch.equal(params[n][m], before[n][m])  # the kept weights did train
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    assert [h["epoch"] for h in res.history] == [1.0, 2.0, 3.0]
    assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(res.history[-1])
    assert res.steps == 3 * 7


def test_accuracy_and_loss_in_the_history_are_the_models(data):
    res = train(net(), data, steps=5, batch_size=50, verbose=False)
    with torch.no_grad():
        out = res.model(data.x_test)
    assert res.history[-1]["test_acc"] == pytest.approx(100.0 * float((out.argmax(1) == data.y_test).float().mean()))
    assert res.history[-1]["test_loss"] == pytest.approx(float(nn.functional.cross_entropy(out, data.y_test)), rel=1e-5)
    assert res.best("test_acc") >= res.final("test_acc")


def test_training_is_deterministic_and_learns(data):
    a = train(net(), data, epochs=20, lr=0.01, batch_size=32, seed=3, verbose=False)
    b = train(net(), data, epochs=20, lr=0.01, batch_size=32, seed=3, verbose=False)
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))
    assert a.history[-1]["train_acc"] > 80.0 and a.history[-1]["train_loss"] < a.history[0]["train_loss"]


def test_a_validation_split_is_recorded_and_leaves_training_unchanged(data):
    """validation=(x, y) adds val_loss / val_acc to every record (the model's, in eval mode) and
    changes nothing else; chosen() is the first record with the best val_acc."""
    val = mo.data.planted_classification(n_train=60, n_test=10, n_in=10, hidden=16, num_classes=3, seed=5)[0]
    plain = train(net(), data, steps=12, batch_size=32, lr=0.05, eval_every=3, verbose=False)
    res = train(net(), data, steps=12, batch_size=32, lr=0.05, eval_every=3, verbose=False,
                validation=(val.x, val.y))
    assert all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), res.model.parameters()))
    assert [{k: v for k, v in h.items() if not k.startswith("val_")} for h in res.history] == plain.history
    with torch.no_grad():
        out = res.model(val.x)
    assert res.history[-1]["val_acc"] == pytest.approx(100.0 * float((out.argmax(1) == val.y).float().mean()))
    assert res.history[-1]["val_loss"] == pytest.approx(float(nn.functional.cross_entropy(out, val.y)), rel=1e-5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(val.x, val.y), batch_size=7)
    batched = train(net(), data, steps=12, batch_size=32, lr=0.05, eval_every=3, verbose=False,
                    validation=loader).history
    assert [h["val_acc"] for h in batched] == [h["val_acc"] for h in res.history]
    assert [h["val_loss"] for h in batched] == pytest.approx([h["val_loss"] for h in res.history], rel=1e-6)
    best = max(h["val_acc"] for h in res.history)
    first = next(h for h in res.history if h["val_acc"] == best)
    assert res.chosen() is first and res.chosen()["test_acc"] <= res.best("test_acc")
    ties = TrainResult(res.model, [{"step": 1, "val_acc": 50.0, "test_acc": 40.0},
                                   {"step": 2, "val_acc": 50.0, "test_acc": 60.0}])
    assert ties.chosen()["step"] == 1
    with pytest.raises(ValueError, match="val_acc"):
        plain.chosen()


class NoisyInputs(torch.utils.data.Dataset):
    """A map-style dataset with a random transform: each read adds noise drawn from torch's RNG."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.randn(self.x.shape[1]), self.y[i]


def test_loaders_report_train_accuracy_without_changing_training(data):
    """With a training DataLoader the history has the accuracy on the whole training split (in
    eval mode, as for a Dataset), and measuring it leaves the training itself unchanged: the
    loaders below shuffle from their own generator, or from torch's global RNG with noise drawn on
    every read, so a pass over the training loader or an unguarded read of the dataset would
    change later batches."""
    train_loader, test_loader = data.loaders(batch_size=64)
    res = train(net(), (train_loader, test_loader), epochs=2, verbose=False)
    with torch.no_grad():
        out = res.model(data.x)
    assert res.history[-1]["train_acc"] == pytest.approx(100.0 * float((out.argmax(1) == data.y).float().mean()))

    def run(eval_every: int | None, seeded_loader: bool) -> TrainResult:
        torch.manual_seed(5)
        if seeded_loader:  # shuffled by the loader's own generator
            loader = data.loaders(batch_size=32, seed=5)[0]
        else:  # shuffled from the global RNG, noise on every read
            loader = torch.utils.data.DataLoader(NoisyInputs(data.x, data.y), batch_size=32, shuffle=True)
        return train(net(), (loader, None), epochs=3, eval_every=eval_every, verbose=False)

    for seeded_loader in (False, True):
        once, often = run(None, seeded_loader), run(1, seeded_loader)
        assert len(often.history) == often.steps > len(once.history) == 3
        assert all("train_acc" in h for h in often.history)
        assert all(torch.equal(a, b) for a, b in zip(once.model.parameters(), often.model.parameters()))
    batches = [(data.x[:50], data.y[:50]), (data.x[50:], data.y[50:])]  # a plain list of batches: not re-read
    assert "train_acc" not in train(net(), (batches, None), steps=2, verbose=False).history[-1]


def test_training_takes_loaders_and_rejects_bad_input(data):
    train_loader, test_loader = data.loaders(batch_size=64)
    res = train(net(), (train_loader, test_loader), epochs=1, verbose=False)
    assert res.steps == len(train_loader) and res.history[-1]["test_acc"] is not None
    model = net()
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        train(model, data, verbose=False)
    with pytest.raises(ValueError, match="names no parameter"):
        mo.train_ticket(model, {"nope": torch.ones(3, dtype=torch.bool)}, data, verbose=False)
    with pytest.raises(ValueError, match="has shape"):
        mo.train_ticket(model, {"0.weight": torch.ones(3, dtype=torch.bool)}, data, verbose=False)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train(model, data, steps=1, optimizer="lbfgs", verbose=False)
    with pytest.raises(TypeError, match="maskopt.data.Dataset or a pair"):
        train(model, data.x, steps=1, verbose=False)
    for epochs in (0, -5):  # no training at all is an error, not one step
        with pytest.raises(ValueError, match="epochs must be > 0"):
            train(model, data, epochs=epochs, verbose=False)
    with pytest.raises(ValueError, match="momentum applies to optimizer='sgd'"):  # Adam has no momentum option
        train(model, data, steps=1, optimizer="adam", momentum=0.99, verbose=False)
    with pytest.raises(ValueError, match="eval_every must be ≥ 1"):
        train(model, data, steps=1, eval_every=0, verbose=False)


def test_trainer_restarts_from_a_state(data):
    model = net()
    trainer = Trainer(model, data, ["0.weight", "2.weight"], options={"steps": 4, "verbose": False})
    init = trainer.state()
    trainer.run(None, init)
    first = trainer.weights()
    trainer.run(None, init)
    assert all(torch.equal(first[n], w) for n, w in trainer.weights().items())
    assert trainer.run(None, init, epochs=1).steps == math.ceil(data.x.shape[0] / 128)  # either length overrides
    by_epochs = Trainer(net(), data, ["0.weight"], options={"epochs": 1, "verbose": False})
    assert by_epochs.run(None, init, steps=3).steps == 3


def test_teachers_train_save_and_reload(tmp_path, data):
    path = tmp_path / "teachers.safetensors"
    arch = [("mlp", {"in_features": 10, "hidden": [24], "num_classes": 3})]
    teachers = train_teachers(data, arch, seeds=(0, 1), epochs=10, lr=0.01, batch_size=32, path=path, verbose=False)
    assert len(teachers) == 2
    loaded = load_teachers(path)
    for t, u in zip(teachers, loaded):
        assert torch.equal(t(data.x_test), u(data.x_test))
        assert float((t(data.x_test).argmax(1) == data.y_test).float().mean()) > 0.6
    assert not torch.equal(teachers[0](data.x_test), teachers[1](data.x_test))
    prob = mo.DistillProblem(net(), loaded, data.x, mo.Budget(sparsity=0.5), loss="kl")
    assert mo.solve(prob, method="magnitude").objective > 0
    mo.MaskSet({"w": torch.ones(2, dtype=torch.bool)}).save(tmp_path / "mask.safetensors")
    with pytest.raises(ValueError, match="not a maskopt teacher file"):
        load_teachers(tmp_path / "mask.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="junk.safetensors is not a readable maskopt teacher file"):
        load_teachers(tmp_path / "junk.safetensors")
