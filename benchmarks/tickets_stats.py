"""Small statistics of the ticket benchmarks: t-based intervals over seeds and the verdicts
against a single reference run (pure functions of lists of numbers)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def interval(values) -> tuple[int, float, float | None]:
    """(n, mean, half-width of the t-based 95 % confidence interval of the mean:
    t(0.975, n − 1) · s / √n; None for fewer than 2 values)."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return len(a), float(a.mean()), None
    return len(a), float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))


def interval_text(values) -> str:
    """``mean ± half-width`` of :func:`interval` (the mean alone for one value, "-" for none)."""
    if not len(values):
        return "-"
    _, mean, half = interval(values)
    return f"{mean:.2f}" if half is None else f"{mean:.2f} ± {half:.2f}"


def versus(mean: float, half: float | None, ref: float) -> str:
    """"above" / "below" when the interval ``mean ± half`` lies above / below ``ref``, else
    "level"; "one run" without an interval."""
    if half is None:
        return "one run"
    return "above" if mean - half > ref else "below" if mean + half < ref else "level"


def against_published(values, published: tuple) -> str:
    """The verdict of :func:`interval` of ``values`` against the published trial 0 number (the
    goal's), with trial 1's added where it differs, e.g. ``"level (above 70.8)"``."""
    _, mean, half = interval(values)
    first, second = (versus(mean, half, p) for p in published[:2])
    return first if first == second else f"{first} ({second} {published[1]})"


def within_prediction(values, ref: float) -> bool:
    """Whether ``ref`` lies in the 95 % prediction interval of one more value: mean ± t(0.975,
    n − 1) · s · √(1 + 1/n) (needs 2 or more values)."""
    a = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) * np.sqrt(1 + 1 / len(a))
    return bool(abs(ref - a.mean()) <= half)


def difference(a, b) -> tuple[float, float | None]:
    """mean(a) − mean(b) and the half-width of its Welch 95 % interval (None unless both
    have 2 or more values)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return diff, 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return diff, float(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))


def share_verdict(hits: int, total: int) -> str:
    """A goal's verdict from the number of cells where it holds: met (all), not met (none),
    else partly met."""
    return "met" if total and hits == total else "not met" if hits == 0 else "partly met"
