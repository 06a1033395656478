"""The top-k projection under cardinality budgets: the ``cap`` highest scores of each
scope unit (contiguous ranges of a flat mask), ties to the lower index. Used by the
budgets (``maskopt.budget``) and by the relaxations; needs nothing else of maskopt."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class Units:
    """The budget's scope units over a flat mask of ``size`` entries, on ``device``, and
    the exact top-cap projection of scores onto them.

    Args:
        units: ``(start, stop, cap)`` contiguous ranges covering ``[0, size)`` in order.
    """

    def __init__(self, units: Sequence[tuple[int, int, int]], size: int, device: torch.device | str = "cpu"):
        if not units or units[0][0] != 0 or units[-1][1] != size or any(
                a[1] != b[0] for a, b in zip(units, units[1:])):
            raise ValueError("units must be contiguous ranges covering [0, size) in order.")
        device = torch.device(device)
        self.size = size
        self.start = torch.tensor([u[0] for u in units], dtype=torch.int64, device=device)
        self.stop = torch.tensor([u[1] for u in units], dtype=torch.int64, device=device)
        self.lengths = self.stop - self.start
        self.cap = torch.minimum(torch.tensor([u[2] for u in units], dtype=torch.int64, device=device), self.lengths)
        self._blocks = _runs([(a, b - a, min(c, b - a)) for a, b, c in units])  # equal (length, cap)
        self._rows = _runs([(a, b - a) for a, b, _ in units])  # equal length
        self._row_counts = [count for _, count, _ in self._rows]

    def __len__(self) -> int:
        return int(self.start.numel())

    def _views(self, v: torch.Tensor) -> list[torch.Tensor]:
        """``v`` (size,) as one (count, length) view per run of equal-length units."""
        return [v[start : start + count * length].view(count, length) for start, count, length in self._rows]

    def sums(self, v: torch.Tensor) -> torch.Tensor:
        """Per-unit sums ``(U,)`` of ``v`` (size,) as float64 (plain reductions in v's dtype,
        cascade-summed by torch: deterministic on every device, no float64 copy of v)."""
        if len(self) == 1:
            return v.sum().to(torch.float64).reshape(1)
        return torch.cat([b.sum(dim=1) for b in self._views(v)]).to(torch.float64)

    def project(self, scores: torch.Tensor) -> torch.Tensor:
        """The bool mask (size,) keeping the ``cap`` highest scores of each unit; among equal
        scores at the cut the lower indices are kept (a selection per unit, no full sort)."""
        s = scores.detach()
        return self._keep(s, [kth_largest(block, cap) for block, cap in self._cap_blocks(s)])

    def _cap_blocks(self, s: torch.Tensor) -> Iterator[tuple[torch.Tensor, int]]:
        """(count, length) views of ``s`` per run of units with equal (length, cap), with
        that cap, for the runs with 0 < cap < length."""
        for start, count, length, cap in self._blocks:
            if 0 < cap < length:
                yield s[start : start + count * length].view(count, length), cap

    def _keep(self, s: torch.Tensor, cuts: list[torch.Tensor]) -> torch.Tensor:
        """The top-cap mask given each run's cut (the cap-th largest value of each row)."""
        keep = torch.zeros(self.size, dtype=torch.bool, device=s.device)
        cuts_iter = iter(cuts)
        for start, count, length, cap in self._blocks:
            part = keep[start : start + count * length].view(count, length)
            if cap >= length:
                part.fill_(True)
            if not 0 < cap < length:
                continue
            block, cut = s[start : start + count * length].view(count, length), next(cuts_iter)
            if on_numpy(block):  # numpy's comparisons and counts are several times faster on CPU
                counts = np.count_nonzero(np.greater_equal(block.numpy(), cut.numpy(), out=part.numpy()), axis=1)
                exact = bool((counts == cap).all())
            else:
                exact = bool((torch.count_nonzero(torch.ge(block, cut, out=part), dim=1) == cap).all())
            if exact:  # no surplus tie at the cut (the usual case)
                continue
            above, tied = block > cut, block == cut
            need = cap - torch.count_nonzero(above, dim=1).unsqueeze(1)
            torch.logical_or(above, tied & (tied.cumsum(dim=1) <= need), out=part)
        return keep


def _runs(units: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Merge consecutive units ``(start, *key)`` with equal keys into ``(start, count, *key)``."""
    out: list[tuple[int, ...]] = []
    for start, *key in units:
        if out and list(out[-1][2:]) == key:
            out[-1] = (out[-1][0], out[-1][1] + 1, *key)
        else:
            out.append((start, 1, *key))
    return out


class TopK:
    """:meth:`Units.project` for a sequence of slowly changing scores (a training run):
    the same masks, found faster by searching each unit's cut near the previous one.

    For a one-unit run it counts the scores above and inside a band [c − δ, c + δ] around the
    previous cut c; when the cap-th largest score lies in the band it is selected among the
    band's entries only (a few comparisons per entry instead of a selection over the unit),
    and δ follows how far the cut moved; otherwise it falls back to the full selection.
    """

    def __init__(self, segments: Units):
        self.segments = segments
        self._last: dict[int, tuple[float, float]] = {}  # run position -> (previous cut, band half-width δ)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        s = scores.detach()
        cuts = []
        for i, (block, cap) in enumerate(self.segments._cap_blocks(s)):
            cut = self._near(i, block[0], cap) if block.shape[0] == 1 and s.is_floating_point() else None
            if cut is None:
                cut = kth_largest(block, cap)
            if block.shape[0] == 1:
                new = float(cut.reshape(-1)[0])
                moved = abs(new - self._last[i][0]) if i in self._last else 0.0
                self._last[i] = (new, max(4.0 * moved, 1e-6 * max(abs(new), 1.0)))
            cuts.append(cut)
        return self.segments._keep(s, cuts)

    def _near(self, i: int, row: torch.Tensor, cap: int) -> torch.Tensor | None:
        if i not in self._last:
            return None
        cut, band = self._last[i]
        for widen in (1.0, 16.0):  # the previous band, then a wider one, before a full selection
            lo, hi = cut - widen * band, cut + widen * band
            if on_numpy(row):
                r = row.numpy()
                above, inside = int(np.count_nonzero(r > hi)), torch.from_numpy(r[(r >= lo) & (r <= hi)])
            else:
                above, inside = int(torch.count_nonzero(row > hi)), row[(row >= lo) & (row <= hi)]
            if above < cap <= above + inside.numel():
                return kth_largest(inside.view(1, -1), cap - above)
        return None


def kth_largest(block: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of each row of ``block`` (rows, length), shape (rows, 1).
    On CPU numpy's introselect (``np.partition``, O(length)); torch's CPU ``topk`` and
    ``kthvalue`` are about 8× slower at 10⁵ entries. On other devices ``torch.topk``."""
    length = block.shape[1]
    if on_numpy(block):
        part = np.partition(block.numpy(), length - k, axis=1)
        return torch.from_numpy(part[:, length - k : length - k + 1].copy())
    return torch.topk(block, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)


def on_numpy(t: torch.Tensor) -> bool:
    """Whether ``t`` is a CPU tensor numpy can view (then its selections, comparisons and
    counts run through numpy: torch's CPU ``topk``, ``kthvalue``, comparisons and boolean
    indexing are 3-10× slower at 10⁵-10⁶ entries)."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.int32, torch.int64)
