"""Data: built-in classification datasets (offline), local MNIST/CIFAR-10 folders, and
synthetic instances with a planted (known) answer.

Every dataset is a :class:`Dataset` of float32 inputs and int64 labels with a fixed
train/test split; nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from maskopt.budget import Budget, count_for_density
from maskopt.masks import MaskSet
from maskopt.problems import LayerwiseProblem


@dataclass(frozen=True)
class Dataset:
    """A classification dataset with a fixed split.

    Attributes:
        name: a label for tables.
        x, y: training inputs ``(N, ...)`` float32 and labels ``(N,)`` int64 in [0, classes).
        x_test, y_test: test inputs and labels, same layout.
        num_classes: the number of classes.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        for xs, ys, split in ((self.x, self.y, "train"), (self.x_test, self.y_test, "test")):
            if xs.shape[0] != ys.shape[0] or ys.ndim != 1:
                raise ValueError(f"{split} inputs {tuple(xs.shape)} and labels {tuple(ys.shape)} disagree.")
            if ys.numel() and (int(ys.min()) < 0 or int(ys.max()) >= self.num_classes):
                raise ValueError(f"{split} labels must lie in [0, {self.num_classes}).")

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x.shape)}, test={tuple(self.x_test.shape)}, "
                f"classes={self.num_classes})")

    def batches(self, batch_size: int, shuffle: bool = True, seed: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Endless training batches ``(x, y)``: epoch after epoch, reshuffled each epoch with a
        generator seeded by ``seed`` (or in order, wrapping around, without ``shuffle``)."""
        n = self.x.shape[0]
        gen = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx]

    def loaders(self, batch_size: int = 128, shuffle: bool = True, seed: int = 0) -> tuple[DataLoader, DataLoader]:
        """``(train, test)`` DataLoaders of ``(x, y)`` batches; the train order is seeded."""
        train = DataLoader(TensorDataset(self.x, self.y), batch_size=batch_size, shuffle=shuffle,
                           generator=torch.Generator().manual_seed(seed))
        return train, DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=batch_size)


def _dataset(name: str, x, y, x_test, y_test, num_classes: int) -> Dataset:
    def floats(a) -> torch.Tensor:
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    def labels(a) -> torch.Tensor:
        return torch.tensor(np.asarray(a), dtype=torch.int64)

    return Dataset(name, floats(x), labels(y), floats(x_test), labels(y_test), num_classes)


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1797 samples, 10 classes): inputs
    ``(N, 64)`` scaled to [0, 1] (pixel / 16); a stratified split with ``test_fraction`` of
    the samples in the test set, drawn with ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}.")
    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(bunch.data / 16.0, bunch.target, test_size=test_fraction,
                                              random_state=seed, stratify=bunch.target)
    return _dataset("digits", x_tr, y_tr, x_te, y_te, 10)


def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus, 2020) generated offline by the ``mnist1d`` package with its
    default arguments (``get_dataset_args()``: 5000 samples, 80 % train → the paper's
    4000/1000 split, seed 42); inputs ``(N, 40)``, 10 classes. Takes a few seconds."""
    from mnist1d.data import get_dataset_args, make_dataset

    if num_samples < 10 or not 0.0 < train_split < 1.0:
        raise ValueError("mnist1d needs num_samples ≥ 10 and train_split in (0, 1).")
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    d = make_dataset(args)
    return _dataset("mnist1d", d["x"], d["y"], d["x_test"], d["y_test"], 10)


def planted_classification(n_train: int = 2000, n_test: int = 1000, n_in: int = 20, hidden: int = 32,
                           num_classes: int = 4, density: float = 0.25, seed: int = 0) -> tuple[Dataset, nn.Module]:
    """A classification task with a known solution: inputs ~ N(0, I) ``(N, n_in)``, labels =
    argmax of a planted sparse teacher ``Linear(n_in, hidden) → ReLU → Linear(hidden,
    num_classes)`` whose weights are N(0, 1/fan_in) with only ``density`` of each row kept
    (uniformly at random), hidden biases 0 and output biases centring the mean logit.
    Returns ``(dataset, teacher)``; the teacher classifies every
    sample correctly."""
    if min(n_train, n_test, n_in, hidden) < 1 or num_classes < 2:
        raise ValueError("planted_classification needs positive sizes and num_classes ≥ 2.")
    gen = torch.Generator().manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    with torch.no_grad():
        for layer in (teacher[0], teacher[2]):
            out_f, in_f = layer.weight.shape
            w = torch.randn(out_f, in_f, generator=gen) / in_f**0.5
            keep = torch.rand(out_f, in_f, generator=gen).argsort(dim=1) < count_for_density(density, in_f)
            layer.weight.copy_(w * keep)
            layer.bias.zero_()
        x = torch.randn(n_train + n_test, n_in, generator=gen)
        teacher[2].bias.copy_(-teacher(x).mean(dim=0))  # centred logits: every class occurs
        y = teacher(x).argmax(dim=1)
    data = Dataset("planted", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes)
    return data, teacher.eval()


def _find(root: Path, names: list[str], what: str) -> Path:
    for sub in ("", "MNIST/raw", "raw"):
        for name in names:
            for suffix in ("", ".gz"):
                path = root / sub / (name + suffix)
                if path.is_file():
                    return path
    raise FileNotFoundError(f"{what}: none of {names} (optionally .gz) found in {root} (or its MNIST/raw, raw "
                            "subfolders). maskopt never downloads data; put the files there first.")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a truncated .gz raises EOFError
        raise ValueError(f"{path} cannot be read as an IDX file (MNIST format): {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (MNIST format).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} values.")
    return data.reshape(shape)


def mnist(root: str | Path) -> Dataset:
    """MNIST from a local folder holding the four original IDX files (``train-images-idx3-ubyte``
    etc., optionally gzipped, also under ``MNIST/raw`` as torchvision stores them): inputs
    ``(N, 1, 28, 28)`` in [0, 1], the standard 60000/10000 split."""
    root = Path(root)
    parts = {}
    for key, name in (("x", "train-images-idx3-ubyte"), ("y", "train-labels-idx1-ubyte"),
                      ("x_test", "t10k-images-idx3-ubyte"), ("y_test", "t10k-labels-idx1-ubyte")):
        parts[key] = _read_idx(_find(root, [name, name.replace("-idx", ".idx")], "MNIST"))
    return _dataset("mnist", parts["x"][:, None] / 255.0, parts["y"], parts["x_test"][:, None] / 255.0,
                    parts["y_test"], 10)


def cifar10(root: str | Path) -> Dataset:
    """CIFAR-10 from a local folder holding the python version (``cifar-10-batches-py`` with
    ``data_batch_1..5`` and ``test_batch``, or those files directly): inputs
    ``(N, 3, 32, 32)`` in [0, 1], the standard 50000/10000 split."""
    root = Path(root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10: {path} not found. maskopt never downloads data; extract "
                                    "cifar-10-python.tar.gz into that folder first.")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(batch[b"labels"])
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{path} is not a CIFAR-10 python batch (a pickled dict with b'data' and b'labels'): "
                             f"{type(err).__name__}: {err}") from err

    train = [load(f"data_batch_{i}") for i in range(1, 6)]
    x_te, y_te = load("test_batch")
    x = np.concatenate([b[0] for b in train])
    y = np.concatenate([b[1] for b in train])
    return _dataset("cifar10", x / 255.0, y, x_te / 255.0, y_te, 10)


def planted_layerwise(
    n_samples: int = 40,
    n_in: int = 20,
    n_out: int = 1,
    density: float = 0.25,
    noise: float = 0.1,
    seed: int = 0,
    loss: str = "l1",
    scope: str = "global",
    bias: bool = False,
) -> tuple[LayerwiseProblem, MaskSet]:
    """A layer-wise problem whose target comes from a planted mask.

    inputs X ~ N(0, 1) of shape (n_samples, n_in); weight W ~ N(0, 1/n_in) of shape
    (n_out, n_in); every row of the planted mask keeps ``count_for_density(density, n_in)``
    weights chosen uniformly; target = X (M ⊙ W)ᵀ (+ b) + ε with ε ~ N(0, σ²),
    σ = noise · std(X (M ⊙ W)ᵀ). The budget is ``Budget(density=density, scope=scope)``,
    which the planted mask meets. With ``noise=0`` the planted mask has objective 0.

    Returns: (problem, planted mask).
    """
    if n_samples < 1 or n_in < 1 or n_out < 1:
        raise ValueError("n_samples, n_in and n_out must be positive.")
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0; got {noise}.")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_in))
    W = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
    k = count_for_density(density, n_in)
    M = np.zeros((n_out, n_in), dtype=bool)
    for o in range(n_out):
        M[o, rng.choice(n_in, size=k, replace=False)] = True
    b = rng.standard_normal(n_out) if bias else None
    clean = X @ (M * W).T + (0.0 if b is None else b)
    scale = float(np.std(clean)) if np.std(clean) > 0 else 1.0
    target = clean + noise * scale * rng.standard_normal(clean.shape)
    problem = LayerwiseProblem(X, W, target, Budget(density=density, scope=scope), loss=loss, bias=b)
    return problem, MaskSet({"weight": M}, method="planted", budget=problem.budget)
