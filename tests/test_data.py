"""Data: planted generators, built-in datasets, local MNIST/CIFAR folders, all offline."""

from __future__ import annotations

import pickle

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


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("a data loader tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_digits_split_is_stratified_deterministic_and_offline(offline):
    a, b, c = mo.data.digits(), mo.data.digits(), mo.data.digits(seed=1)
    assert a.x.shape == (1347, 64) and a.x_test.shape == (450, 64) and a.num_classes == 10
    assert torch.equal(a.x, b.x) and torch.equal(a.y_test, b.y_test) and not torch.equal(a.x, c.x)
    assert 0.0 <= float(a.x.min()) and float(a.x.max()) <= 1.0
    counts = torch.bincount(a.y_test, minlength=10).double()
    whole = counts + torch.bincount(a.y, minlength=10)
    assert torch.all((counts - 0.25 * whole).abs() <= 1)  # stratified: each class split 3:1
    assert a.x.dtype == torch.float32 and a.y.dtype == torch.int64


def test_mnist1d_is_the_papers_default_split(offline):
    d = mo.data.mnist1d()
    assert d.x.shape == (4000, 40) and d.x_test.shape == (1000, 40) and d.num_classes == 10
    again = mo.data.mnist1d()
    assert torch.equal(d.x, again.x) and torch.equal(d.y, again.y)
    assert sorted(torch.unique(d.y).tolist()) == list(range(10))


def test_planted_classification_teacher_is_perfect_and_classes_occur():
    data, teacher = mo.data.planted_classification(n_train=500, n_test=200, num_classes=4, seed=3)
    with torch.no_grad():
        assert torch.equal(teacher(data.x).argmax(1), data.y)
        assert torch.equal(teacher(data.x_test).argmax(1), data.y_test)
    assert torch.bincount(data.y, minlength=4).min() > 0
    kept = (teacher[0].weight != 0).sum(dim=1)
    assert kept.tolist() == [5] * 32  # density 0.25 of 20 inputs per row


def test_batches_and_loaders_are_seeded():
    data = mo.data.planted_classification(n_train=50, n_test=10, seed=0)[0]
    first = [y for _, y in zip(range(3), data.batches(16, seed=4))]
    again = [y for _, y in zip(range(3), data.batches(16, seed=4))]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    ordered = next(data.batches(16, shuffle=False))
    assert torch.equal(ordered[0], data.x[:16])
    train, test = data.loaders(batch_size=16, seed=4)
    assert torch.equal(next(iter(train))[1], next(iter(data.loaders(batch_size=16, seed=4)[0]))[1])
    assert sum(x.shape[0] for x, _ in test) == 10


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("layout", ["flat", "torchvision-gz"])
def test_mnist_reads_a_local_folder(tmp_path, offline, layout):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
    test_images, test_labels = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    gz = layout != "flat"
    _write_idx(folder / "train-images-idx3-ubyte", images, gz)
    _write_idx(folder / "train-labels-idx1-ubyte", labels, gz)
    _write_idx(folder / "t10k-images-idx3-ubyte", test_images, gz)
    _write_idx(folder / "t10k-labels-idx1-ubyte", test_labels, gz)
    d = mo.data.mnist(tmp_path)
    assert d.x.shape == (6, 1, 28, 28) and d.x_test.shape == (3, 1, 28, 28)
    assert torch.allclose(d.x[:, 0], torch.as_tensor(images / 255.0, dtype=torch.float32))
    assert d.y.tolist() == labels.tolist()


def test_cifar10_reads_a_local_folder(tmp_path, offline):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072)).astype(np.uint8), b"labels": [1, 7]}
        (folder / name).write_bytes(pickle.dumps(batch))
    d = mo.data.cifar10(tmp_path)
    assert d.x.shape == (10, 3, 32, 32) and d.x_test.shape == (2, 3, 32, 32) and d.y.tolist() == [1, 7] * 5


def test_missing_local_data_says_what_to_do(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        mo.data.mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        mo.data.cifar10(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00")
    with pytest.raises(ValueError, match="truncated"):
        mo.data.mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz cannot be read as an IDX file"):
        mo.data.mnist(tmp_path)
    for content in (b"garbage\n", pickle.dumps({b"labels": [1]})):
        (tmp_path / "data_batch_1").write_bytes(content)
        with pytest.raises(ValueError, match="data_batch_1 is not a CIFAR-10 python batch"):
            mo.data.cifar10(tmp_path)
