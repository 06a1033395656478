r"""Exact mask selection for a feed-forward ReLU network as a MILP (Pyomo + HiGHS).

Network: layers l = 1..L, each z_l = W_l' h_{l−1} + b_l' (optionally followed by ReLU),
h_0 = x_n (a fixed sample), where a maskable weight enters as W_{j,i}·m_{j,i}, m ∈ {0,1}
(likewise a maskable bias). Output logits z_L (N, K), target t (N, K).

Layer 1: z_{1,j} = Σ_i x_{n,i} W_{j,i} m_{j,i} + b_j is linear in m — no extra variables.

Deeper layers: each maskable product q_{j,i} = m_{j,i}·h_i, with h_i ∈ [L_i, U_i], is
linearised exactly (m binary) by
    q ≤ U·m,   q ≥ L·m,   q ≤ h − L·(1 − m),   q ≥ h − U·(1 − m),
and z_{l,j} = Σ_i W_{j,i} q_{j,i} + Σ_{unmasked i} W_{j,i} h_i + b_j.

ReLU h = max(0, z), z ∈ [L, U]: U ≤ 0 → h = 0; L ≥ 0 → h = z; otherwise with δ ∈ {0,1}
    h ≥ z,   h ≥ 0,   h ≤ z − L·(1 − δ),   h ≤ U·δ.

Bounds [L, U] (``bounds=``):
* ``"global"``: one big-M, M = the largest |interval bound| anywhere (interval arithmetic
  without the budget): every [L, U] is [−M, M] (and [0, M] after a ReLU).
* ``"interval"``: per sample and neuron, interval arithmetic that knows a pruned weight
  contributes zero and that at most c_j of row j's weights are kept (c_j = the cap of the
  budget unit holding the row): maskable weight (j,i) contributes
  [a_i, b_i] = [min(0, W·L_i, W·U_i), max(0, W·L_i, W·U_i)], an unmasked one
  [min(W·L_i, W·U_i), max(…)], and the row's maskable part lies in
  [sum of the c_j smallest a_i, sum of the c_j largest b_i].
* ``"lp"``: interval bounds, then layer by layer, min and max of every hidden
  pre-activation over the LP relaxation of the layers before it (binaries in [0, 1],
  budget rows included), each LP bound intersected with the interval one.
* ``"milp"``: as ``"lp"`` but over the MILP of the layers before (binary masks and ReLU
  indicators), each min/max given ``MILP_BOUND_TIME`` seconds; its proven dual bound is used
  (valid even when the time runs out).
On the first layer (inputs fixed, no maskable bias) the budget-aware intervals are attained
by a mask within the budget, so ``"lp"``/``"milp"`` start at the second layer; with one
hidden layer ``"interval"``, ``"lp"`` and ``"milp"`` give the same bounds.
All are valid for every mask within the budget, so they never cut off the optimum.

Loss: ``"l1"``: z − t = u − v, u, v ≥ 0, minimise Σ(u + v). ``"linf"``: e ≥ ±(z − t),
minimise e.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maskopt.solvers.exact.highs import HighsSession, MilpResult, MipSettings
from maskopt.solvers.losses import KINDS, Loss

Unit = tuple[int, int, int]
BOUNDS = ("global", "interval", "lp", "milp")
MILP_BOUND_TIME = 1.0  # seconds per bound of ``bounds="milp"``
NET_LOSSES = tuple(name for name, kind in KINDS.items() if kind.encodings.get("distill") == "milp")
_LP_PAD = 1e-7


@dataclass
class Layer:
    """A Linear layer: weight (out, in), bias (out,) or None, where its mask entries sit in
    the flattened mask vector (None = not maskable), and whether a ReLU follows."""

    weight: np.ndarray
    bias: np.ndarray | None
    weight_offset: int | None
    bias_offset: int | None
    relu: bool


def forward(x: np.ndarray, layers: Sequence[Layer], mask: np.ndarray) -> np.ndarray:
    """Logits (N, K) of the masked network in float64 (the MILP's semantics)."""
    h = x
    for layer in layers:
        W = layer.weight * _layer_mask(layer, mask, "weight")
        z = h @ W.T
        if layer.bias is not None:
            z = z + layer.bias * _layer_mask(layer, mask, "bias")
        h = np.maximum(z, 0.0) if layer.relu else z
    return h


def net_loss(logits: np.ndarray, target: np.ndarray, loss: str) -> float:
    """The loss (:mod:`maskopt.solvers.losses`) of logits (N, K) against ``target`` (N, K)."""
    return float(Loss(loss)(logits, target))


def _layer_mask(layer: Layer, mask: np.ndarray, which: str) -> np.ndarray:
    arr = layer.weight if which == "weight" else layer.bias
    off = layer.weight_offset if which == "weight" else layer.bias_offset
    if off is None:
        return np.ones_like(arr)
    return mask[off : off + arr.size].reshape(arr.shape).astype(float)


def interval_bounds(x: np.ndarray, layers: Sequence[Layer],
                    units: Sequence[Unit] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, (L, U) of the pre-activations z_l, each (N, out), valid for every mask
    within the budget ``units`` (every mask at all when None)."""
    return _propagate(x, x, layers, units)


def row_caps(layer: Layer, units: Sequence[Unit] | None) -> np.ndarray | None:
    """(out,) the most weights of each row of ``layer`` a mask within ``units`` keeps, or
    None (no budget, or the layer is not maskable): Σ over the units u meeting row r of
    min(c_u, |u ∩ r|) (a unit holding whole rows, a row, or groups inside a row, as N:M)."""
    if units is None or layer.weight_offset is None:
        return None
    out_dim, in_dim = layer.weight.shape
    starts = np.array([u[0] for u in units])
    out = np.zeros(out_dim, dtype=np.int64)
    for r in range(out_dim):
        lo = layer.weight_offset + r * in_dim
        hi = lo + in_dim
        for start, stop, cap in units[np.searchsorted(starts, lo, side="right") - 1: np.searchsorted(starts, hi)]:
            out[r] += min(cap, min(stop, hi) - max(start, lo))
    return out


def _propagate(lo_h, hi_h, layers: Sequence[Layer],
               units: Sequence[Unit] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval arithmetic through ``layers`` from input bounds (N, in); a maskable weight
    or bias may also contribute 0, and a row keeps at most its cap (see :func:`row_caps`)."""
    out = []
    for layer in layers:
        W = layer.weight
        a, b = W[None] * lo_h[:, None, :], W[None] * hi_h[:, None, :]
        c_lo, c_hi = np.minimum(a, b), np.maximum(a, b)
        if layer.weight_offset is not None:
            c_lo, c_hi = np.minimum(c_lo, 0.0), np.maximum(c_hi, 0.0)
        caps = row_caps(layer, units)
        if caps is not None and (caps < W.shape[1]).any():
            # the c_j most negative / most positive contributions of each row (sorted along inputs)
            cum_lo = np.cumsum(np.sort(c_lo, axis=-1), axis=-1)
            cum_hi = np.cumsum(-np.sort(-c_hi, axis=-1), axis=-1)
            pick = np.broadcast_to((caps - 1)[None, :, None], (*c_lo.shape[:2], 1))
            zero = (caps == 0)[None, :]
            lo = np.where(zero, 0.0, np.take_along_axis(cum_lo, np.maximum(pick, 0), -1)[..., 0])
            hi = np.where(zero, 0.0, np.take_along_axis(cum_hi, np.maximum(pick, 0), -1)[..., 0])
        else:
            lo, hi = c_lo.sum(-1), c_hi.sum(-1)
        if layer.bias is not None:
            if layer.bias_offset is not None:
                lo, hi = lo + np.minimum(layer.bias, 0.0), hi + np.maximum(layer.bias, 0.0)
            else:
                lo, hi = lo + layer.bias, hi + layer.bias
        out.append((lo, hi))
        lo_h, hi_h = (np.maximum(lo, 0.0), np.maximum(hi, 0.0)) if layer.relu else (lo, hi)
    return out


def model_size(n_samples: int, layers: Sequence[Layer], n_mask: int) -> dict[str, int]:
    """Upper estimate of the MILP size (every hidden neuron unstable)."""
    q = sum(layer.weight.size for layer in layers[1:] if layer.weight_offset is not None) * n_samples
    hidden = sum(layer.weight.shape[0] for layer in layers if layer.relu) * n_samples
    k = layers[-1].weight.shape[0] * n_samples
    return {
        "binaries": n_mask + hidden,
        "variables": n_mask + q + 2 * hidden + 2 * k,
        "constraints": 4 * q + 4 * hidden + k,
        "nonzeros": 12 * q + 8 * hidden + n_samples * sum(layer.weight.size for layer in layers) + 2 * k,
    }


def _value(z) -> float:
    """Value of a (coefs, vars, const) linear form at the variables' current values."""
    coefs, vars_, const = z
    return const + sum(c * v.value for c, v in zip(coefs, vars_))


class _Encoding:
    """The Pyomo model of the masked network on all samples (or one, for LP tightening)."""

    def __init__(self, x, layers, units, n_mask, bounds, relax=False, upto=None):
        import pyomo.environ as pyo
        from pyomo.core.expr.numeric_expr import LinearExpression

        self.pyo, self._linear = pyo, LinearExpression
        N = x.shape[0]
        model = pyo.ConcreteModel()
        model.m = pyo.Var(range(n_mask), within=pyo.UnitInterval if relax else pyo.Binary)
        self.mvars = [model.m[j] for j in range(n_mask)]
        model.budget = pyo.ConstraintList()
        for start, stop, cap in units:
            if stop - start > cap:
                model.budget.add(LinearExpression(constant=0.0, linear_coefs=[1.0] * (stop - start),
                                                  linear_vars=self.mvars[start:stop]) <= cap)
        model.cons = pyo.ConstraintList()
        model.blocks = pyo.Block(range(len(layers)))
        self.model, self.n_relu_binaries, self.n_q = model, 0, 0
        self.steps: list = []  # closures computing each variable's value from earlier ones (MIP start)
        self.z: list[list[list]] = []  # per layer, per sample, per neuron: (coefs, vars, const)
        n_layers = len(layers) if upto is None else upto + 1
        final_relu = upto is None and layers[-1].relu  # the outputs themselves pass a ReLU
        h_prev: list[list] | None = None  # per sample, per input: (var or None, lo, hi) ; None = layer 1
        for li in range(n_layers):
            layer = layers[li]
            lo_z, hi_z = bounds[li]
            blk = model.blocks[li]
            out_dim, in_dim = layer.weight.shape
            z_layer = []
            for n in range(N):
                z_n = []
                for j in range(out_dim):
                    coefs, vars_, const = [], [], 0.0
                    for i in range(in_dim):
                        w = float(layer.weight[j, i])
                        if w == 0.0:
                            continue
                        mvar = None if layer.weight_offset is None else self.mvars[layer.weight_offset + j * in_dim + i]
                        if h_prev is None:  # fixed input
                            xv = float(x[n, i])
                            if xv == 0.0:
                                continue
                            if mvar is None:
                                const += w * xv
                            else:
                                coefs.append(w * xv)
                                vars_.append(mvar)
                            continue
                        hvar, hlo, hhi = h_prev[n][i]
                        if hvar is None:  # input neuron is constant 0
                            continue
                        if mvar is None:
                            coefs.append(w)
                            vars_.append(hvar)
                        else:
                            q = self._q(blk, mvar, hvar, hlo, hhi)
                            coefs.append(w)
                            vars_.append(q)
                    if layer.bias is not None and layer.bias[j] != 0.0:
                        if layer.bias_offset is None:
                            const += float(layer.bias[j])
                        else:
                            coefs.append(float(layer.bias[j]))
                            vars_.append(self.mvars[layer.bias_offset + j])
                    z_n.append((coefs, vars_, const))
                z_layer.append(z_n)
            self.z.append(z_layer)
            if li == n_layers - 1 and not final_relu:
                break
            h_prev = [[self._activation(blk, z_layer[n][j], lo_z[n, j], hi_z[n, j], layer.relu, relax)
                       for j in range(out_dim)] for n in range(N)]
        # the network's outputs as linear forms: the last pre-activation, or its ReLU
        self.out = self.z[-1] if not final_relu else [
            [([1.0], [h], 0.0) if h is not None else ([], [], 0.0) for h, _, _ in row] for row in h_prev]

    def _new_var(self, blk, lo, hi):
        pyo = self.pyo
        if not hasattr(blk, "v"):
            blk.v = pyo.VarList()
        v = blk.v.add()
        v.setlb(float(lo))
        v.setub(float(hi))
        return v

    def expr(self, coefs, vars_, const):
        return self._linear(constant=float(const), linear_coefs=list(coefs), linear_vars=list(vars_))

    def _q(self, blk, mvar, hvar, lo, hi):
        """q = m·h with h ∈ [lo, hi] (exact for binary m)."""
        q = self._new_var(blk, min(lo, 0.0), max(hi, 0.0))
        self.n_q += 1
        c = self.model.cons
        c.add(self.expr([1.0, -hi], [q, mvar], 0.0) <= 0.0)  # q ≤ U m
        c.add(self.expr([1.0, -lo], [q, mvar], 0.0) >= 0.0)  # q ≥ L m
        c.add(self.expr([1.0, -1.0, -lo], [q, hvar, mvar], lo) <= 0.0)  # q ≤ h − L(1 − m)
        c.add(self.expr([1.0, -1.0, -hi], [q, hvar, mvar], hi) >= 0.0)  # q ≥ h − U(1 − m)
        self.steps.append(lambda: q.set_value(mvar.value * hvar.value))
        return q

    def _activation(self, blk, z, lo, hi, relu, relax):
        """The variable holding the layer output (ReLU or identity), with its bounds."""
        coefs, vars_, const = z
        c = self.model.cons
        if not relu:
            h = self._new_var(blk, lo, hi)
            c.add(self.expr([*coefs, -1.0], [*vars_, h], const) == 0.0)
            self.steps.append(lambda: h.set_value(_value(z)))
            return h, lo, hi
        if hi <= 0.0:
            return None, 0.0, 0.0
        h = self._new_var(blk, max(lo, 0.0), hi)
        if lo >= 0.0:
            c.add(self.expr([*coefs, -1.0], [*vars_, h], const) == 0.0)
            self.steps.append(lambda: h.set_value(_value(z)))
            return h, max(lo, 0.0), hi
        pyo = self.pyo
        if not hasattr(blk, "d"):
            blk.d = pyo.VarList(within=pyo.UnitInterval if relax else pyo.Binary)
        d = blk.d.add()
        self.n_relu_binaries += 1
        c.add(self.expr([*coefs, -1.0], [*vars_, h], const) <= 0.0)  # h ≥ z
        c.add(self.expr([*coefs, -1.0, lo], [*vars_, h, d], const - lo) >= 0.0)  # h ≤ z − L(1 − δ)
        c.add(self.expr([1.0, -hi], [h, d], 0.0) <= 0.0)  # h ≤ U δ

        def step():
            zv = _value(z)
            h.set_value(max(zv, 0.0))
            d.set_value(1.0 if zv > 0 else 0.0)

        self.steps.append(step)
        return h, 0.0, hi

    def add_loss(self, target, loss: str) -> None:
        """The objective: the MILP encoding of ``loss`` (one of :data:`NET_LOSSES`)."""
        if loss not in NET_LOSSES:
            raise ValueError(f"the network MILP encodes losses {list(NET_LOSSES)}; got {loss!r}.")
        getattr(self, f"_add_{loss}")(target)

    def _add_l1(self, target) -> None:
        """Σ (u + w) with z − t = u − w, u, w ≥ 0 per output."""
        pyo = self.pyo
        model, out = self.model, self.out
        N, K = target.shape
        model.u = pyo.Var(range(N * K), within=pyo.NonNegativeReals)
        model.w = pyo.Var(range(N * K), within=pyo.NonNegativeReals)
        for n in range(N):
            for k in range(K):
                coefs, vars_, const = out[n][k]
                i = n * K + k
                model.cons.add(self.expr([*coefs, -1.0, 1.0], [*vars_, model.u[i], model.w[i]],
                                         const - float(target[n, k])) == 0.0)
        model.obj = pyo.Objective(expr=self.expr([1.0] * (2 * N * K),
                                                 [*model.u.values(), *model.w.values()], 0.0))

        def step():
            for n in range(N):
                for k in range(K):
                    r = _value(out[n][k]) - float(target[n, k])
                    model.u[n * K + k].set_value(max(r, 0.0))
                    model.w[n * K + k].set_value(max(-r, 0.0))

        self.steps.append(step)

    def _add_linf(self, target) -> None:
        """e with −e ≤ z − t ≤ e for every output."""
        pyo = self.pyo
        model, out = self.model, self.out
        N, K = target.shape
        model.e = pyo.Var(within=pyo.NonNegativeReals)
        for n in range(N):
            for k in range(K):
                coefs, vars_, const = out[n][k]
                t = float(target[n, k])
                model.cons.add(self.expr([*coefs, -1.0], [*vars_, model.e], const - t) <= 0.0)
                model.cons.add(self.expr([*coefs, 1.0], [*vars_, model.e], const - t) >= 0.0)
        model.obj = pyo.Objective(expr=model.e)

        def step():
            model.e.set_value(max(abs(_value(out[n][k]) - float(target[n, k])) for n in range(N) for k in range(K)))

        self.steps.append(step)

    def set_start(self, mask: np.ndarray) -> None:
        """Give every variable the value the network takes under ``mask`` (a MIP start)."""
        for var, v in zip(self.mvars, mask):
            var.set_value(float(v))
        for step in self.steps:
            step()


def compute_bounds(x, layers, units, n_mask, mode: str, settings: MipSettings):
    """Pre-activation bounds per layer ((N, out) arrays) for ``mode`` in :data:`BOUNDS`."""
    if mode == "global":
        plain = interval_bounds(x, layers)
        M = max(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)) for lo, hi in plain)
        return [(np.full_like(lo, -M), np.full_like(hi, M)) for lo, hi in plain]
    bounds = interval_bounds(x, layers, units)
    if mode == "interval":
        return bounds
    import pyomo.environ as pyo

    relax = mode == "lp"
    for li in range(len(layers) - 1):  # the output layer's bounds are never used
        if li == 0 and layers[0].bias_offset is None:
            continue  # budget-aware intervals are attained on the first layer: nothing to tighten
        for n in range(x.shape[0]):
            enc = _Encoding(x[n : n + 1], layers, units, n_mask, [(lo[n : n + 1], hi[n : n + 1]) for lo, hi in bounds],
                            relax=relax, upto=li)
            session = HighsSession(MipSettings(gap=0.0 if relax else 1e-4, threads=settings.threads))
            for j in range(layers[li].weight.shape[0]):
                for sense in (pyo.minimize, pyo.maximize):
                    if hasattr(enc.model, "obj"):
                        enc.model.del_component(enc.model.obj)
                    enc.model.obj = pyo.Objective(expr=enc.expr(*enc.z[li][0][j]), sense=sense)
                    out = session.solve(enc.model, [], None if relax else MILP_BOUND_TIME, warm_start=False)
                    if not np.isfinite(out.bound):
                        continue
                    pad = _LP_PAD * (1.0 + abs(out.bound))  # solver tolerances: never cut a feasible point
                    if sense == pyo.minimize:
                        bounds[li][0][n, j] = max(bounds[li][0][n, j], out.bound - pad)
                    else:
                        bounds[li][1][n, j] = min(bounds[li][1][n, j], out.bound + pad)
        lo, hi = bounds[li]
        relu = layers[li].relu
        bounds[li + 1:] = _propagate(np.maximum(lo, 0.0) if relu else lo, np.maximum(hi, 0.0) if relu else hi,
                                     layers[li + 1:], units)
    return bounds


def solve_network(
    x: np.ndarray,
    layers: Sequence[Layer],
    target: np.ndarray,
    units: Sequence[Unit],
    n_mask: int,
    loss: str,
    settings: MipSettings,
    bounds: str = "interval",
    candidates: Sequence[np.ndarray] = (),
    fixed: np.ndarray | None = None,
) -> MilpResult:
    """Solve the network mask MILP (see module docstring).

    Args:
        x: (N, in) inputs. layers: the Linear layers in order. target: (N, K).
        units: budget scope units over the flattened mask of length ``n_mask``.
        loss: ``"l1"`` or ``"linf"``. bounds: one of :data:`BOUNDS`.
        candidates: feasible flattened masks; the best is the MIP start and the fallback.
        fixed: a flattened mask to fix (the MILP then evaluates that mask).
    """
    t0 = time.perf_counter()
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    cands = [np.asarray(c, dtype=bool) for c in candidates] or [np.zeros(n_mask, dtype=bool)]
    values = [net_loss(forward(x, layers, c), target, loss) for c in cands]
    inc, inc_value = cands[int(np.argmin(values))], min(values)
    b = compute_bounds(x, layers, units, n_mask, bounds, settings)
    bound_time = time.perf_counter() - t0
    enc = _Encoding(x, layers, units, n_mask, b)
    enc.add_loss(target, loss)
    if fixed is not None:
        for var, v in zip(enc.mvars, fixed):
            var.fix(float(v))
    build_time = time.perf_counter() - t0 - bound_time
    start = inc if fixed is None else fixed
    enc.set_start(start)
    session = HighsSession(settings)
    remaining = None if settings.time_limit is None else max(settings.time_limit - (time.perf_counter() - t0), 0.0)
    out = session.solve(enc.model, enc.mvars, remaining, warm_start=True)
    start_value = inc_value if fixed is None else net_loss(forward(x, layers, fixed), target, loss)
    mask, value = inc, inc_value
    if out.values is not None:
        found = out.values > 0.5
        found_val = net_loss(forward(x, layers, found), target, loss)
        if found_val < value or fixed is not None:
            mask, value = found, found_val
    stats = {
        "bounds": bounds,
        "bound_time": bound_time,
        "build_time": build_time,
        "nodes": out.nodes,
        "binaries": n_mask + enc.n_relu_binaries,
        "relu_binaries": enc.n_relu_binaries,
        "products": enc.n_q,
        "variables": enc.model.nvariables(),
        "constraints": enc.model.nconstraints(),
        "milp_objective": out.objective,
        "mip_starts": 1,
        "mip_starts_accepted": int(out.start_accepted(start_value)),
        "start_objective": start_value,
    }
    lower = float(max(out.bound, 0.0))  # the raw proven bound (a loss is never negative), never clamped
    history = [{"lower_bound": lower, "upper_bound": value, "time": time.perf_counter() - t0, "status": out.status}]
    return MilpResult(mask, value, lower, out.status, history, stats)
