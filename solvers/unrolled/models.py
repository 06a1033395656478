r"""Unrolled ISTA networks (torch, any device). Rows are samples: ``y (batch, m)`` → ``x (batch, n)``;
layer k maps x_k to x_{k+1}, starting from x_0 = 0.

* LISTA (Gregor & LeCun):        x⁺ = η_θk(W1_k y + W2_k x)
* LISTA-CP (Chen et al. 2018):   x⁺ = η_θk(x + W_kᵀ(y − A x))
* LISTA-CPSS:                    LISTA-CP with support selection η^{p_k}
* ALISTA (Liu et al. 2019):      x⁺ = η^{p_k}_θk(x − γ_k W̃ᵀ(A x − y)), W̃ analytic (``alista_weight``)
* HyperLISTA (Chen et al. 2021): x⁺ = η^{p_k}_θk(x − γW̃ᵀ(A x − y) + β_k (x − x_prev)) with
      θ_k = c_θ·γ‖A⁺(A x − y)‖₁,  β_k = c_β‖x‖₀,  p_k = clip(c_p·log(‖A⁺y‖₁ / ‖A⁺(A x − y)‖₁), 0, 1),
  per sample, all computed from the current estimates (never from the true x): three
  hyperparameters in all.

Support selection η^p_θ(z): soft thresholding, except that the ⌊p·n⌋ largest magnitudes of
each row pass unchanged when they exceed θ. Trained models use the p_k schedule of the
LISTA-CPSS code: p_k = min(1.2·(k+1), 13) %.

Untrained, LISTA and LISTA-CP with ``lam`` are exactly ISTA with that λ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from maskopt.solvers.unrolled.classical import lipschitz, shrink


def support_shrink(z: torch.Tensor, theta: torch.Tensor | float, p: torch.Tensor | float) -> torch.Tensor:
    """η^p_θ(z) for ``z (batch, n)``; ``theta`` and ``p`` are scalars or ``(batch, 1)``."""
    n = z.shape[-1]
    k = torch.as_tensor(p, dtype=z.dtype, device=z.device).mul(n).floor().long().clamp(0, n).expand(z.shape[0], 1)
    k_max = int(k.max())
    if k_max == 0:
        return shrink(z, theta)
    mag = z.abs()
    cutoff = mag.detach().topk(k_max, dim=-1).values.gather(-1, (k - 1).clamp_min(0))
    cutoff = torch.where(k > 0, cutoff, torch.full_like(cutoff, torch.inf))
    keep = (mag.detach() >= cutoff) & (mag.detach() > torch.as_tensor(theta).detach())
    return torch.where(keep, z, shrink(z, theta))


def ss_schedule(layers: int, per_layer: float = 0.012, max_p: float = 0.13) -> list[float]:
    """Support-selection fractions p_k = min(per_layer·(k+1), max_p) for k < ``layers``."""
    return [min(per_layer * (k + 1), max_p) for k in range(layers)]


def alista_weight(A: torch.Tensor) -> torch.Tensor:
    """ALISTA's analytic weight W̃ ``(m, n)``: the minimiser of ‖W̃ᵀA‖_F subject to
    w̃_iᵀ a_i = 1 for every column i, in closed form (m ≤ n, A of full row rank):
    w̃_i = (AAᵀ)⁻¹ a_i / (a_iᵀ (AAᵀ)⁻¹ a_i). Computed in float64, returned in A's dtype."""
    A64 = A.double()
    V = torch.linalg.solve(A64 @ A64.T, A64)
    return (V / (A64 * V).sum(dim=0, keepdim=True)).to(A.dtype)


def _scalars(value: float, count: int, like: torch.Tensor) -> nn.ParameterList:
    return nn.ParameterList(nn.Parameter(torch.tensor(float(value), dtype=like.dtype, device=like.device))
                            for _ in range(count))


class Unrolled(nn.Module):
    """Base class: ``layers`` layers on a fixed dictionary ``A (m, n)`` (a buffer)."""

    def __init__(self, A: torch.Tensor, layers: int):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}.")
        self.layers = layers
        self.register_buffer("A", A)

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        """The trainable parameters of layer ``k`` (0-based)."""
        raise NotImplementedError

    def prepare(self, y: torch.Tensor) -> torch.Tensor | None:
        """Per-batch quantities every layer needs (none by default)."""
        return None

    def step(self, k: int, x: torch.Tensor, x_prev: torch.Tensor, y: torch.Tensor,
             ctx: torch.Tensor | None) -> torch.Tensor:
        """Layer ``k``: x_{k+1} from x_k = ``x`` and x_{k−1} = ``x_prev`` (both ``(batch, n)``)."""
        raise NotImplementedError

    def iterates(self, y: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        """[x_1, …, x_K] for ``y (batch, m)``, K = ``n_layers`` (default: all layers)."""
        n_layers = self.layers if n_layers is None else n_layers
        if not 1 <= n_layers <= self.layers:
            raise ValueError(f"n_layers must be in [1, {self.layers}], got {n_layers}.")
        ctx = self.prepare(y)
        x_prev = x = y.new_zeros(y.shape[0], self.A.shape[1])
        out = []
        for k in range(n_layers):
            x_prev, x = x, self.step(k, x, x_prev, y, ctx)
            out.append(x)
        return out

    def forward(self, y: torch.Tensor, n_layers: int | None = None) -> torch.Tensor:
        """x_K ``(batch, n)`` for ``y (batch, m)``."""
        return self.iterates(y, n_layers)[-1]


class LISTA(Unrolled):
    """Untied LISTA, initialised as ISTA with ``lam``: W1 = Aᵀ/L, W2 = I − AᵀA/L, θ = lam/L."""

    def __init__(self, A: torch.Tensor, layers: int, lam: float = 0.1):
        super().__init__(A, layers)
        L = lipschitz(A)
        eye = torch.eye(A.shape[1], dtype=A.dtype, device=A.device)
        self.W1 = nn.ParameterList(nn.Parameter(A.T.clone() / L) for _ in range(layers))
        self.W2 = nn.ParameterList(nn.Parameter(eye - A.T @ A / L) for _ in range(layers))
        self.theta = _scalars(lam / L, layers, A)

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        return [self.W1[k], self.W2[k], self.theta[k]]

    def step(self, k, x, x_prev, y, ctx):
        return shrink(y @ self.W1[k].T + x @ self.W2[k].T, self.theta[k])


class LISTACP(Unrolled):
    """LISTA-CP (``support_selection=False``) or LISTA-CPSS. Initialised as ISTA with ``lam``
    (W_k = A/L ``(m, n)``, θ_k = lam/L), or, with ``init="alista"``, as untrained ALISTA
    (W_k = W̃, θ_k = lam)."""

    def __init__(self, A: torch.Tensor, layers: int, lam: float = 0.1, support_selection: bool = True,
                 init: str = "ista"):
        super().__init__(A, layers)
        if init not in ("ista", "alista"):
            raise ValueError(f"init must be 'ista' or 'alista', got {init!r}.")
        L = lipschitz(A)
        start, theta = (A / L, lam / L) if init == "ista" else (alista_weight(A), lam)
        self.W = nn.ParameterList(nn.Parameter(start.clone()) for _ in range(layers))
        self.theta = _scalars(theta, layers, A)
        self.p = ss_schedule(layers) if support_selection else [0.0] * layers

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        return [self.W[k], self.theta[k]]

    def step(self, k, x, x_prev, y, ctx):
        return support_shrink(x + (y - x @ self.A.T) @ self.W[k], self.theta[k], self.p[k])


class ALISTA(Unrolled):
    """ALISTA: the analytic W̃ (buffer) and, per layer, a learned step γ_k (init 1) and
    threshold θ_k (init ``lam``); support selection unless ``support_selection=False``."""

    def __init__(self, A: torch.Tensor, layers: int, lam: float = 0.1, support_selection: bool = True,
                 weight: torch.Tensor | None = None):
        super().__init__(A, layers)
        self.register_buffer("W", alista_weight(A) if weight is None else weight)
        self.gamma = _scalars(1.0, layers, A)
        self.theta = _scalars(lam, layers, A)
        self.p = ss_schedule(layers) if support_selection else [0.0] * layers

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        return [self.gamma[k], self.theta[k]]

    def step(self, k, x, x_prev, y, ctx):
        return support_shrink(x - self.gamma[k] * ((x @ self.A.T - y) @ self.W), self.theta[k], self.p[k])


class HyperLISTA(Unrolled):
    """HyperLISTA with hyperparameters ``c_theta``, ``c_beta``, ``c_p`` (plain floats, tuned by
    search: see ``tune_hyperlista``); nothing is trained by gradient. ``gamma``: a fixed step
    multiplying W̃ᵀ(A x − y) and θ_k (1 in the paper; the reference code's 1/L converges far
    slower here)."""

    def __init__(self, A: torch.Tensor, layers: int, c_theta: float = 1e-2, c_beta: float = 1e-2,
                 c_p: float = 0.1, gamma: float = 1.0, weight: torch.Tensor | None = None):
        super().__init__(A, layers)
        self.gamma = gamma
        self.register_buffer("W", alista_weight(A) if weight is None else weight)
        self.register_buffer("A_pinv", torch.linalg.pinv(A.double()).to(A.dtype))
        self.c_theta, self.c_beta, self.c_p = c_theta, c_beta, c_p

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        return []

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self.A_pinv.T).abs().sum(dim=1, keepdim=True)

    def step(self, k, x, x_prev, y, ctx):
        r = x @ self.A.T - y
        err = (r @ self.A_pinv.T).abs().sum(dim=1, keepdim=True)
        beta = self.c_beta * (x != 0).sum(dim=1, keepdim=True).to(x.dtype)
        p = (self.c_p * torch.log(ctx.clamp_min(1e-30) / err.clamp_min(1e-30))).clamp(0.0, 1.0)
        return support_shrink(x - self.gamma * (r @ self.W) + beta * (x - x_prev), self.c_theta * self.gamma * err, p)


MODELS: dict[str, Callable[..., Unrolled]] = {  # name -> constructor(A, layers, **options)
    "lista": LISTA,
    "lista-cp": functools.partial(LISTACP, support_selection=False),
    "lista-cpss": functools.partial(LISTACP, support_selection=True),
    "alista": ALISTA,
    "hyperlista": HyperLISTA,
}


def build_model(name: str, A: torch.Tensor, layers: int, **options) -> Unrolled:
    """The model registered as ``name`` in :data:`MODELS`; ``options`` go to its constructor."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODELS)}.")
    return MODELS[name](A, layers, **options)
