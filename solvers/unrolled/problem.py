r"""The synthetic sparse-coding benchmark of the LISTA literature, and its error measures.

    y = A x + e,   A ∈ ℝ^{m×n} with i.i.d. N(0, 1/m) entries, columns scaled to unit norm,
    x_i = b_i · g_i with b_i ~ Bernoulli(p), g_i ~ N(0, 1),
    e ~ N(0, σ² I) with σ = std(A x) · 10^(−SNR/20)  (std over the m entries of each sample).

Samples are rows: ``y`` is ``(batch, m)``, ``x`` is ``(batch, n)``. Everything is drawn on
the CPU from seeded generators and then moved to the problem's device, so a seed gives the
same numbers on every device.

NMSE conventions (both in dB, both reported by the literature):

* ``nmse_db``: 10·log10(Σ_i ‖x̂_i − x_i‖² / Σ_i ‖x_i‖²), the sums over the whole set
  ("aggregate"; the convention of LISTA-CPSS, ALISTA, HyperLISTA and Open-L2O).
* ``nmse_db_per_sample``: mean over samples of 10·log10(‖x̂_i − x_i‖² / ‖x_i‖²).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

SPLITS = {"train": 1, "validation": 2, "test": 3}
_EPS = 1e-30


def _generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from the integer tuple ``key`` (independent streams per key)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))


@dataclass
class SparseCodingProblem:
    """One dictionary ``A`` and the distribution of ``(y, x)`` pairs around it.

    Args:
        m, n: measurements and signal length. p: probability that an entry of x is nonzero.
        snr_db: signal-to-noise ratio in dB (``math.inf``: noise-free). seed: seeds A and
        every split. dtype, device: of the tensors handed out.
    """

    m: int = 250
    n: int = 500
    p: float = 0.1
    snr_db: float = math.inf
    seed: int = 0
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"
    A: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.m < 1 or self.n < 1:
            raise ValueError(f"m and n must be positive, got m={self.m}, n={self.n}.")
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"p must be in (0, 1], got {self.p}.")
        if math.isnan(self.snr_db):
            raise ValueError("snr_db must be a number or inf.")
        A = torch.randn(self.m, self.n, generator=_generator(self.seed, 0), dtype=torch.float64) / math.sqrt(self.m)
        self.A = (A / A.norm(dim=0, keepdim=True)).to(self.device, self.dtype)

    def _draw(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        support = torch.rand(size, self.n, generator=gen, dtype=torch.float64) < self.p
        x = torch.randn(size, self.n, generator=gen, dtype=torch.float64) * support
        y = x @ self.A.to("cpu", torch.float64).T
        if math.isfinite(self.snr_db):
            sigma = y.std(dim=1, keepdim=True) * 10.0 ** (-self.snr_db / 20.0)
            y = y + sigma * torch.randn(y.shape, generator=gen, dtype=torch.float64)
        return y.to(self.device, self.dtype), x.to(self.device, self.dtype)

    def sample(self, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed set ``(y (size, m), x (size, n))`` of ``split`` ("validation", "test" or
        "train"); the same seed and size always give the same set."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}.")
        return self._draw(size, _generator(self.seed, SPLITS[split]))

    def stream(self, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless fresh training batches ``(y, x)`` (online generation), reproducible from ``seed``."""
        gen = _generator(self.seed, SPLITS["train"], 1 + seed)
        while True:
            yield self._draw(batch_size, gen)


def nmse_db(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Aggregate NMSE in dB of estimates ``x_hat`` against ``x`` (both ``(batch, n)``)."""
    err = (x_hat - x).double().pow(2).sum()
    return float(10.0 * torch.log10(err.clamp_min(_EPS) / x.double().pow(2).sum().clamp_min(_EPS)))


def nmse_db_per_sample(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Mean over samples of the per-sample NMSE in dB (both ``(batch, n)``)."""
    err = (x_hat - x).double().pow(2).sum(dim=1).clamp_min(_EPS)
    return float((10.0 * torch.log10(err / x.double().pow(2).sum(dim=1).clamp_min(_EPS))).mean())


def support_least_squares(A: torch.Tensor, y: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Least squares restricted to a support, sample by sample: row b of the result (B, n)
    is argmin_z ‖A[:, S_b] z − y_b‖² on S_b = ``support[b]`` and 0 elsewhere (float64, CPU).

    ``A`` (m, n), ``y`` (B, m), ``support`` (B, n) bool. With the true support it is the
    oracle estimator of :func:`oracle_nmse_db`; with an estimate's own support
    (|x̂| > t) it is the classical debiasing step after a sparse solver.
    """
    if A.dim() != 2 or y.dim() != 2 or y.shape[1] != A.shape[0]:
        raise ValueError(f"need A (m, n) and y (B, m); got A {tuple(A.shape)} and y {tuple(y.shape)}.")
    if tuple(support.shape) != (y.shape[0], A.shape[1]) or support.dtype != torch.bool:
        raise ValueError(f"support must be a bool tensor of shape {(y.shape[0], A.shape[1])}; "
                         f"got {support.dtype} {tuple(support.shape)}.")
    A64, y64 = A.double().cpu(), y.double().cpu()
    est = torch.zeros(y.shape[0], A.shape[1], dtype=torch.float64)
    for i, row in enumerate(support.cpu()):
        s = row.nonzero().flatten()
        if s.numel():
            est[i, s] = torch.linalg.lstsq(A64[:, s], y64[i].unsqueeze(1)).solution.flatten()
    return est


def debias(A: torch.Tensor, y: torch.Tensor, estimate: torch.Tensor, threshold: float = 0.0,
           prune: float = 0.0) -> torch.Tensor:
    """Two-stage least-squares debiasing of a sparse estimate (B, n): least squares on its
    support {|x̂| > ``threshold``}, then entries of that solution with |z| ≤ ``prune`` are
    dropped and least squares is solved again on the rest (``prune=0`` skips the second
    stage). Returns (B, n) float64 on CPU. The second stage removes false detections, whose
    least-squares coefficients are of the noise's size."""
    if threshold < 0 or prune < 0:
        raise ValueError(f"threshold and prune must be >= 0; got {threshold} and {prune}.")
    if y.dim() != 2 or A.dim() != 2 or tuple(estimate.shape) != (y.shape[0], A.shape[1]):
        raise ValueError(f"need A (m, n), y (B, m) and estimate (B, n); got A {tuple(A.shape)}, "
                         f"y {tuple(y.shape)}, estimate {tuple(estimate.shape)}.")
    z = support_least_squares(A, y, estimate.detach().abs().cpu() > threshold)
    return support_least_squares(A, y, z.abs() > prune) if prune > 0 else z


def oracle_nmse_db(A: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> float:
    """Aggregate NMSE of least squares restricted to the true support of each sample: the
    error of an estimator told the support (the usual noise floor of sparse recovery; an
    estimator that must find the support does not reach it in practice)."""
    return nmse_db(support_least_squares(A, y, x != 0), x.double().cpu())
