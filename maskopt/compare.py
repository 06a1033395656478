"""Run several methods on one problem and compare them against the best proven bound."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maskopt.api import SolveResult, method_spec, relative_gap, solve
from maskopt.device import device_type
from maskopt.distill import DistillProblem
from maskopt.masks import MaskSet
from maskopt.problems import Problem
from maskopt.report import atomic_path, format_markdown, format_table, write_csv, write_json

COLUMNS = ("method", "seed", "objective", "gap", "gap_to", "hamming_to_exact", "density", "status", "device",
           "time", "test_acc")


@dataclass
class Comparison:
    """The outcome of :func:`compare`.

    Attributes:
        rows: one dict per (method, seed): ``objective`` (``evaluate``), ``gap`` (relative gap
            to ``reference``), ``gap_to`` (``"bound"`` when the reference is a proven lower
            bound, ``"best found"`` otherwise), ``hamming_to_exact`` (weights where the mask
            differs from the proven-optimal mask, when one exists), ``density``, ``status``,
            ``device`` (where the method ran, e.g. ``"cuda"``), ``time`` (s), ``test_acc`` (max
            test accuracy of the trained ticket, %, when ticket training was asked for) and
            ``layers`` (name → density).
        reference: the best proven lower bound over all runs and the certificate, else the
            best objective found. results: the :class:`SolveResult` of each row.
        exact_masks: a proven-optimal mask, when one was found.
        budget: the problem's budget (for sparsity–accuracy plots across comparisons).
    """

    rows: list[dict]
    reference: float
    reference_is_bound: bool
    results: list[SolveResult] = field(repr=False, default_factory=list)
    exact_masks: MaskSet | None = field(repr=False, default=None)
    budget: object = None

    def table(self) -> str:
        """The rows as an aligned text table (per-layer densities left out)."""
        return format_table(self.rows, self._columns())

    def _columns(self) -> list[str]:
        return [c for c in COLUMNS if any(r.get(c) is not None for r in self.rows) or c in ("method", "objective")]

    def to_csv(self, path: str | os.PathLike) -> None:
        """The table plus one ``density[<layer>]`` column per layer, as CSV (atomically)."""
        layers = list(self.rows[0]["layers"]) if self.rows else []
        flat = [{**r, **{f"density[{n}]": d for n, d in r["layers"].items()}} for r in self.rows]
        write_csv(path, flat, [*self._columns(), *(f"density[{n}]" for n in layers)])

    def to_dict(self) -> dict:
        """A JSON-ready summary: reference, budget and rows."""
        return {"reference": self.reference, "reference_is_bound": self.reference_is_bound,
                "budget": self.budget.to_dict() if self.budget is not None else None, "rows": self.rows}

    def to_json(self, path: str | os.PathLike) -> None:
        """:meth:`to_dict` as indented JSON (atomically)."""
        write_json(path, self.to_dict())

    def to_markdown(self) -> str:
        """The table as a GitHub-flavoured markdown table."""
        return format_markdown(self.rows, self._columns())

    def plot(self, path: str | os.PathLike) -> None:
        """A PNG: objective per method (mean and range over seeds, with the reference),
        per-layer density per method, and ticket test accuracy per method when measured."""
        from matplotlib.figure import Figure

        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        has_acc = any(r.get("test_acc") is not None for r in self.rows)
        fig = Figure(figsize=(13 if has_acc else 9, 4))
        axes = fig.subplots(1, 3 if has_acc else 2)
        ax = axes[0]
        for i, m in enumerate(methods):
            vals = [r["objective"] for r in self.rows if r["method"] == m]
            ax.bar(i, sum(vals) / len(vals), color="C0", alpha=0.7)
            ax.plot([i, i], [min(vals), max(vals)], color="k", lw=1)
        ax.axhline(self.reference, color="C3", ls="--",
                   label="best proven bound" if self.reference_is_bound else "best found")
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
        ax.set_ylabel("objective (lower is better)")
        ax.legend(fontsize=8)
        ax = axes[1]
        layers = list(self.rows[0]["layers"]) if self.rows else []
        width = 0.8 / max(len(layers), 1)
        for j, name in enumerate(layers):
            dens = [sum(r["layers"][name] for r in self.rows if r["method"] == m) /
                    sum(1 for r in self.rows if r["method"] == m) for m in methods]
            ax.bar([i + j * width for i in range(len(methods))], dens, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(methods))], methods, rotation=45, ha="right")
        ax.set_ylabel("density per layer")
        ax.legend(fontsize=7)
        if has_acc:
            ax = axes[2]
            for i, m in enumerate(methods):
                accs = [r["test_acc"] for r in self.rows if r["method"] == m and r.get("test_acc") is not None]
                if accs:
                    ax.bar(i, sum(accs) / len(accs), color="C2", alpha=0.7)
                    ax.plot([i, i], [min(accs), max(accs)], color="k", lw=1)
            ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
            ax.set_ylabel("ticket test accuracy (%)")
        fig.tight_layout()
        _save_png(fig, path)


def _save_png(fig, path: str | os.PathLike) -> None:
    """Render ``fig`` (a matplotlib ``Figure``, no pyplot state touched) to ``path`` atomically."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def plot_tradeoff(comparisons: Sequence[Comparison], path: str | os.PathLike) -> None:
    """Sparsity–accuracy curves (mean ticket test accuracy per method against the sparsity
    of each comparison's budget) as a PNG. Needs comparisons run with ``ticket=``."""
    from matplotlib.figure import Figure

    points: dict[str, list[tuple[float, float]]] = {}
    for c in comparisons:
        for m in dict.fromkeys(r["method"] for r in c.rows):
            accs = [r["test_acc"] for r in c.rows if r["method"] == m and r.get("test_acc") is not None]
            dens = [r["density"] for r in c.rows if r["method"] == m]
            if accs:
                points.setdefault(m, []).append((100 * (1 - sum(dens) / len(dens)), sum(accs) / len(accs)))
    if not points:
        raise ValueError("no ticket accuracies to plot: run compare(..., ticket={...}).")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for m, pts in points.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("ticket test accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)


def compare(
    problem: Problem,
    methods: Sequence[str],
    seeds: Sequence[int] = (0,),
    options: Mapping[str, Mapping] | None = None,
    certify: bool = True,
    certify_time_limit: float = 30.0,
    ticket: Mapping | None = None,
    verbose: bool = True,
    device: str | None = None,
) -> Comparison:
    """Run each method on ``problem`` (once per seed when its result depends on the seed,
    ``method_spec(m).uses_seed``; once otherwise) and compare them.

    Args:
        options: per-method options, e.g. ``{"exact": {"time_limit": 60}}``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``: every method runs there
            unless its ``options`` name a device, and the tickets train there. A method that
            does not run on that kind of device (``method_spec(m).devices``, e.g. the exact
            solver, whose HiGHS solves run on the CPU) runs on the CPU instead: a comparison
            is mostly of GPU methods against the CPU-only exact yardstick, so refusing would
            leave no comparison, and each row's ``device`` column says where its method ran.
            A device named in a method's own ``options`` is never replaced: one it does not
            run on is refused. None: each method's default (``"cpu"``; ``"auto"`` for the
            relaxations).
        certify: when no run proved a bound, certify the best mask with the exact solver
            (``certify_time_limit`` seconds) if it accepts the problem
            (``method_spec("exact").accepts``); otherwise gaps are relative to the best
            objective found.
        ticket: train each mask's ticket and report its max test accuracy:
            ``{"data": Dataset, "epochs": ..., other train_ticket options}``
            (DistillProblem only; the student at its initialization, float32).
        verbose: print one line per run; False also silences the methods' own progress bars
            (unless ``options`` sets their ``verbose``).

    Raises ValueError for an unknown method or an option a method does not take.
    """
    from maskopt.exact import certify as certify_masks
    from maskopt.train import train_ticket

    options = dict(options or {})
    unknown = [m for m in options if m not in methods]
    if unknown:
        raise ValueError(f"options given for {unknown}, which are not among methods={list(methods)}.")
    if not methods:
        raise ValueError("compare needs at least one method.")
    if not seeds:
        raise ValueError("compare needs at least one seed.")
    if ticket is not None and not isinstance(problem, DistillProblem):
        raise ValueError("ticket= trains the student's ticket, which needs a DistillProblem.")
    if device is not None:
        device_type(device)  # a malformed name is an error before anything runs
    say = print if verbose else (lambda *a, **k: None)
    runs: list[tuple[str, int | None, SolveResult]] = []
    for method in methods:
        spec = method_spec(method)
        opts = dict(options.get(method, {}))
        if not verbose:
            opts.setdefault("verbose", False)
        if device is not None and "device" not in opts:
            opts["device"] = device if spec.runs_on(device) else "cpu"
        method_seeds = list(seeds) if spec.uses_seed and "seed" not in opts else [opts.get("seed")]
        for seed in method_seeds:
            run_opts = {**opts, "seed": seed} if seed is not None else opts
            res = solve(problem, method=method, **run_opts)
            runs.append((method, seed, res))
            say(f"  {method:<20} seed {seed if seed is not None else '-':<3} objective {res.objective:.6g} "
                f"({res.status}, {res.stats['device']}, {res.time:.2f} s)")
    bounds = [r.bound for _, _, r in runs if r.bound is not None]
    optimal = next((r for _, _, r in runs if r.status == "optimal" and r.bound is not None), None)
    best = min(runs, key=lambda t: t[2].objective)[2]
    refusal = method_spec("exact").refusal(problem) if not bounds and certify else None
    if refusal is not None:
        say(f"  no certificate: {refusal}")
    elif not bounds and certify:
        cert = certify_masks(problem, best.masks, time_limit=certify_time_limit)
        bounds.append(cert.bound)
        if cert.status == "optimal":
            optimal = cert.best
        say(f"  certificate: bound {cert.bound:.6g} ({cert.status}, {cert.time:.2f} s)")
    reference_is_bound = bool(bounds)
    reference = max(bounds) if bounds else best.objective
    exact_masks = optimal.masks if optimal is not None else None
    rows = []
    for method, seed, res in runs:
        row = {"method": method, "seed": seed, "objective": res.objective,
               "gap": relative_gap(res.objective, reference),
               "gap_to": "bound" if reference_is_bound else "best found",
               "hamming_to_exact": None if exact_masks is None else
               sum(int((res.masks[n] != exact_masks[n]).sum()) for n in res.masks),
               "density": res.masks.density, "status": res.status, "device": res.stats["device"], "time": res.time,
               "layers": {r["name"]: r["density"] for r in res.masks.report()}}
        if ticket is not None:
            ticket_opts = dict(ticket)
            data = ticket_opts.pop("data")
            ticket_opts.setdefault("verbose", False)
            if device is not None:
                ticket_opts.setdefault("device", device)
            student = copy.deepcopy(problem.student).float()
            for p in student.parameters():
                p.requires_grad_(True)
            row["test_acc"] = train_ticket(student, res.masks, data, **ticket_opts).best("test_acc")
        rows.append(row)
    return Comparison(rows, reference, reference_is_bound, [r for _, _, r in runs], exact_masks, problem.budget)


def save_masks(comparison: Comparison, path: str | os.PathLike) -> None:
    """Every method's best mask in one safetensors file, keyed ``"<method>/<parameter>"``
    (atomically); metadata ``methods`` (JSON list) and ``budget``."""
    import json

    from safetensors.torch import save_file

    best: dict[str, SolveResult] = {}
    for row, res in zip(comparison.rows, comparison.results):
        if row["method"] not in best or res.objective < best[row["method"]].objective:
            best[row["method"]] = res
    tensors = {f"{m}/{n}": t.contiguous() for m, r in best.items() for n, t in r.masks.items()}
    meta = {"methods": json.dumps(list(best)),
            "budget": json.dumps(comparison.budget.to_dict() if comparison.budget is not None else None)}
    with atomic_path(Path(path)) as tmp:
        save_file({k: v.to(torch.bool) for k, v in tensors.items()}, tmp, metadata=meta)
