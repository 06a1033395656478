"""The report of ``bench_headline.py``: its blocks of ``docs/benchmarks/headline.md``, its goals
and its plots, built only from ``results_dir()/headline*.json`` and the IMP rows of
``bench_tickets.py`` (``tickets_imp_spread.json`` / ``tickets_imp_erk.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _common import Goal, load_results
from headline_config import Headline, load_headline
from tickets_stats import against_published, difference, interval_text, versus

from maskopt.report import format_table

AREA = "KD-LTS headline"
COLUMNS = ["sparsity", "method", "trials", "acc mean", "acc std", "per trial", "published", "train steps",
           "× IMP compute"]
VERDICT_COLUMNS = ["sparsity", "method", "trials", "max test acc (95 % CI)", "published", "vs published",
                   "× IMP compute", "× IMP, 1001-step retrains", "− IMP same budget", "vs IMP"]
TUNING_COLUMNS = ["config", "overrides", "val 95 %", "val 98 %", "val 99 %", "mean"]
IMP_SOURCE = {"headline": ("tickets_imp_spread", "tickets_mnist1d"), "headline_erk": ("tickets_imp_erk",)}


def pct(target: float) -> str:
    return f"{100 * target:.0f}"


def accs(rows: list[dict], method: str, target: float, key: str = "max test acc") -> list[float]:
    """``key`` of ``method``'s rows at ``target``, in trial order."""
    return [r[key] for r in sorted(rows, key=lambda r: r["trial"]) if r["method"] == method and r["sparsity"] == target]


def trials_text(rows: list[dict], method: str, target: float) -> str:
    """The trials of ``method`` at ``target`` as a range ("0-9") when consecutive, else a list."""
    trials = sorted(r["trial"] for r in rows if r["method"] == method and r["sparsity"] == target)
    if trials and trials == list(range(trials[0], trials[-1] + 1)) and len(trials) > 2:
        return f"{trials[0]}-{trials[-1]}"
    return ",".join(map(str, trials))


def same_settings(record: dict, reference: dict) -> bool:
    """Whether ``record`` ran with the KD-LTS and KD-IMP settings of ``reference``."""
    return all(record.get(key) == reference.get(key) for key in ("kdlts", "kdimp"))


def part_text(part: str) -> str:
    """A merged run's line without its free-text note ("name S s [on M] (methods)")."""
    return part.split("): ", 1)[0] + ")" if "): " in part else part


# ---------------------------------------------------------------------------------- the table rows
def imp_rows(name: str) -> tuple[list[dict], str | None]:
    """maskopt's own IMP rows of bench_tickets.py for the variant ``name`` (never rerun here) and
    the results name they come from."""
    for source in IMP_SOURCE[name]:
        record = load_results(source)
        if record is not None:
            return [{"bench": "mnist1d", "trial": r["trial"], "method": "imp", "sparsity": r["sparsity"],
                     "max test acc": r["max test acc"], "train steps": r["train steps"],
                     "last test acc": r.get("final test acc")} for r in record["rows"] if r["method"] == "imp"], source
    return [], None


def table_rows(name: str, record: dict) -> tuple[list[dict], str | None]:
    """The variant's recorded rows with maskopt's IMP re-read from bench_tickets' results."""
    imp, source = imp_rows(name)
    return [r for r in record["rows"] if (r["bench"], r["method"]) != ("mnist1d", "imp")] + imp, source


def summarize(h: Headline, rows: list[dict], bench: str) -> list[dict]:
    """Per goal sparsity and method: mean / std / per-trial max test accuracy and compute; ``×
    IMP compute`` divides by the table's own IMP row (its mean steps), else the protocol's."""
    out = []
    setup = h.mnist1d
    for target in sorted({r["sparsity"] for r in rows if r["bench"] == bench and r["sparsity"] > 0}):
        imp = [r["train steps"] for r in rows if (r["bench"], r["method"], r["sparsity"]) == (bench, "imp", target)]
        imp_steps = (round(float(np.mean(imp))) if imp else (setup.retrain[target] + 1) * setup.protocol["steps"]
                     if bench == "mnist1d" and target in setup.retrain else None)
        for method in h.methods:
            match = [r for r in rows if (r["bench"], r["method"], r["sparsity"]) == (bench, method, target)]
            entry = {"sparsity": target, "method": method}
            if match:
                acc = [r["max test acc"] for r in sorted(match, key=lambda r: r["trial"])]
                entry.update({"acc mean": round(float(np.mean(acc)), 1),
                              "acc std": round(float(np.std(acc, ddof=1)), 1) if len(acc) > 1 else None,
                              "trials": len(acc), "per trial": "/".join(f"{a:.1f}" for a in acc),
                              "train steps": round(float(np.mean([r["train steps"] for r in match])))})
            elif method == "imp" and imp_steps:
                entry["train steps"] = float(imp_steps)
            else:
                continue
            if bench == "mnist1d" and method == "imp" and target in setup.published["imp"]:
                entry["published"] = "/".join(f"{p:.1f}" for p in setup.published["imp"][target])
            if imp_steps and entry.get("train steps") is not None:
                entry["× IMP compute"] = round(entry["train steps"] / imp_steps, 4)
            out.append(entry)
    return out


def against_init(h: Headline, summary: list[dict]) -> str:
    """KD-LTS against the best pruning-at-init baseline at each sparsity (mean accuracies)."""
    parts = []
    for target in sorted({e["sparsity"] for e in summary}):
        at = {e["method"]: e for e in summary if e["sparsity"] == target and "acc mean" in e}
        best = max((m for m in h.baselines if m in at), key=lambda m: at[m]["acc mean"], default=None)
        if "kd-lts" in at and best is not None:
            parts.append(f"{pct(target)} %: KD-LTS {at['kd-lts']['acc mean']:.1f} vs {best} {at[best]['acc mean']:.1f}")
    return "KD-LTS against the best pruning-at-init baseline (mean max test accuracy): " + "; ".join(parts) + "."


# ------------------------------------------------------------------------------------- verdicts
def pooled_rows(h: Headline, name: str, record: dict, rows: list[dict]) -> tuple[list[dict], dict | None]:
    """The MNIST-1D rows the verdicts pool: the judged methods and IMP plus the judged rows of
    ``--more-trials`` (<name>_seeds.json, when it ran with the table's settings)."""
    seeds = load_results(f"{name}_seeds")
    if seeds is not None and not same_settings(seeds, record):
        seeds = None
    more = [r for r in seeds["rows"] if r["method"] in h.spread] if seeds else []
    return [r for r in rows if r["bench"] == "mnist1d" and r["method"] in (*h.spread, "imp")] + more, seeds


def imp_checkpoint_steps(h: Headline, imp_steps: float) -> float:
    """IMP's compute charged only the steps its ticket depends on: each retrain before the last
    up to its scoring checkpoint, the last one in full."""
    steps = h.mnist1d.protocol["steps"]
    return (round(imp_steps / steps) - 1) * h.mnist1d.score_step + steps


def verdict_table(h: Headline, pooled: list[dict], summary: list[dict]) -> list[dict]:
    """Per goal sparsity: the judged methods and maskopt's IMP under the same budget (t-based 95 %
    interval over their seeds), against the published IMP ticket and against that IMP (Welch)."""
    out = []
    for target in (t for t in h.mnist1d.erk_targets if t in h.mnist1d.published["imp"]):
        imp = accs(pooled, "imp", target)
        cost = {e["method"]: e for e in summary if e["sparsity"] == target}
        imp_steps = cost.get("imp", {}).get("train steps")
        for method in (*h.spread, "imp"):
            acc = accs(pooled, method, target)
            if not acc:
                continue
            pub = h.mnist1d.published["imp"][target]
            steps = cost.get(method, {}).get("train steps")
            entry = {"sparsity": target, "method": method, "trials": trials_text(pooled, method, target),
                     "max test acc (95 % CI)": interval_text(acc), "published": "/".join(f"{p:.1f}" for p in pub),
                     "vs published": against_published(acc, pub),
                     "× IMP compute": cost.get(method, {}).get("× IMP compute"),
                     "× IMP, 1001-step retrains": round(steps / imp_checkpoint_steps(h, imp_steps), 4)
                     if steps and imp_steps and method != "imp" else None}
            if method != "imp" and imp:
                diff, half = difference(acc, imp)
                entry["− IMP same budget"] = f"{diff:+.2f}" + ("" if half is None else f" ± {half:.2f}")
                entry["vs IMP"] = versus(diff, half, 0.0)
            out.append(entry)
    return out


def met_cells(table: list[dict], method: str) -> tuple[list[dict], list[dict]]:
    """(cells of ``method``, those where the goal holds: above the published trial 0 ticket with
    at most 1/10 of IMP's compute)."""
    cells = [e for e in table if e["method"] == method]
    return cells, [e for e in cells if e["vs published"].startswith("above") and (e["× IMP compute"] or 1) <= 0.1]


def goal_lines(h: Headline, table: list[dict]) -> list[str]:
    """One line per judged method: its verdicts against the published tickets and against
    maskopt's IMP under the same budget, its compute, and where the goal is met."""
    lines = []
    for method in h.spread:
        cells, met = met_cells(table, method)
        if not cells:
            continue
        costs = [e["× IMP compute"] for e in cells if e["× IMP compute"] is not None]
        published = ", ".join(f"{e['vs published'].split(' (')[0]} at {pct(e['sparsity'])} %" for e in cells)
        same_budget = ", ".join(f"{e.get('vs IMP', '-')} at {pct(e['sparsity'])} %" for e in cells)
        where = " / ".join(pct(e["sparsity"]) for e in met)
        lines.append(f"- {method}: {published} the published ticket; against maskopt's IMP under the same budget "
                     f"{same_budget}" + (f"; {min(costs):.3f}-{max(costs):.3f} × IMP's compute" if costs else "")
                     + " -> goal " + (f"**met at {where} %**" if met else "**met at no goal sparsity**") + ".")
    return lines


def verdict_lines(h: Headline, name: str, record: dict, rows: list[dict], summary: list[dict]) -> list[str]:
    pooled, seeds = pooled_rows(h, name, record, rows)
    table = verdict_table(h, pooled, summary)
    more = f" plus `--more-trials` (`{name}_seeds.json`, run on {seeds['machine']})" if seeds else ""
    return ["Verdicts (goal: beat the published IMP ticket at 95-99 % with at most 1/10 of IMP's compute): "
            f"`max test acc (95 % CI)` over the seeds in `trials` (the table's{more}); `vs published`: above / "
            "below = the interval lies above / below the published trial 0 ticket (trial 1's verdict in brackets "
            "where it differs), else level; `× IMP, 1001-step retrains` = the compute against IMP charged only "
            "the steps its ticket depends on (each earlier retrain up to its scoring checkpoint); `− IMP same "
            "budget` = the difference to maskopt's IMP, with Welch's 95 % interval.", "", "```",
            format_table(table, VERDICT_COLUMNS), "```", "", *goal_lines(h, table)]


# ------------------------------------------------------------------------- the variant sections
def settings_text(cfg: dict, kcfg: dict, per_target: bool) -> str:
    """The KD-LTS and kd-imp settings of a recorded run, as the section states them."""
    extra = "".join(f", {k}={cfg[k]}" for k in ("init", "lookahead", "lookahead_lr") if k in cfg)
    return (f"KD-LTS = teachers {tuple(cfg['teachers'])} ({cfg['teacher_steps']} steps each, Adam "
            f"{cfg['teacher_lr']}, batch 100), `DistillProblem(loss='kl', temperature={cfg['temperature']}, "
            f"alpha={cfg['alpha']})` on the 4000 training inputs, `mo.solve(method='hierarchy', steps={cfg['steps']} "
            f"per stage, lr={cfg['lr']}, batch_size={cfg['batch_size']}, eval_every={cfg['eval_every']}{extra})`. "
            f"kd-imp = maskopt's IMP on the same DistillProblem (rounds trained on the teachers' soft targets at "
            f"T={kcfg['temperature']}), {kcfg['rounds']} geometric rounds to "
            + ("each target, one chain per target," if per_target else "99 % (+ the targets)")
            + f" of {kcfg['round_steps']} steps each (Adam {kcfg['lr']}, batch {kcfg['batch_size']} shuffled), "
            "magnitude pruning, rewind to init; imp-short = the same rounds on the labels.")


def machine_lines(record: dict) -> list[str]:
    parts = "; ".join(part_text(p) for p in record.get("parts", []))
    wall = f"; wall time {record['seconds']:.0f} s" if record.get("seconds", 0) >= 1 else ""
    return [f"Machine: {record['machine']}{wall}" + (f"; rows merged from: {parts}" if parts else "") + ".", ""]


def variant_section(h: Headline, key: str, record: dict) -> str:
    budget, name, text = h.variants[key]
    rows, source = table_rows(name, record)
    summary = summarize(h, rows, "mnist1d")
    trials = sorted({r["trial"] for r in rows if r["method"] != "imp" and r["bench"] == "mnist1d"})
    imp = (f"maskopt's own IMP from `{source}.json` (bench_tickets.py, trials "
           + ",".join(str(t) for t in sorted({r["trial"] for r in rows if r["method"] == "imp"})) + ")"
           if source else "no maskopt IMP run recorded")
    command = "python benchmarks/bench_headline.py" + (f" --allocation {key}" if key != "uniform" else "")
    return "\n".join([
        f"Command: `{command}`", "", *machine_lines(record),
        f"MNIST-1D, trials {','.join(map(str, trials))} (initialization seed 42 + trial); budgets {text}. "
        f"{settings_text(record['kdlts'], record['kdimp'], key != 'uniform')} IMP: {imp}; its compute is (retrain "
        "number) × the ticket's steps. `train steps` = training-step equivalents (100 samples forward+backward): "
        "teachers (charged in full at every sparsity), the search including its full-data hard-mask evaluations, "
        "and the ticket's steps. `× IMP compute` = train steps / IMP's.", "",
        "```", format_table(summary, COLUMNS), "```", "",
        *verdict_lines(h, name, record, rows, summary), "", against_init(h, summary), "",
        f"Plot: `benchmarks/results/{name}_mnist1d.png`.",
    ])


def blind_text(rows: list[dict]) -> str:
    """One line on the output classes each method's masks leave without a kept weight (mean over
    trials per target), or "" when no row has the field."""
    have = [r for r in rows if r.get("blind classes") is not None]
    if not have:
        return ""
    targets = sorted({r["sparsity"] for r in have})
    parts, clean = [], []
    for method in sorted({r["method"] for r in have}):
        means = [np.mean([r["blind classes"] for r in have if (r["method"], r["sparsity"]) == (method, t)])
                 for t in targets]
        if any(means):
            parts.append(f"{method} " + " / ".join(f"{m:.1f}" for m in means))
        else:
            clean.append(method)
    return ("Output classes left without a kept weight (their logit ignores the input; mean over trials at "
            + " / ".join(pct(t) for t in targets) + " %): " + ("; ".join(parts) or "none")
            + (f"; none for {', '.join(clean)}." if clean else "."))


def digits_section(h: Headline, record: dict) -> str:
    rows = [r for r in record["rows"] if r["bench"] == "digits"]
    summary = summarize(h, rows, "digits")
    cfg, protocol = record["digits_kdlts"], h.digits["protocol"]
    extra = "".join(f", {k}={cfg[k]}" for k in ("init", "lookahead", "lookahead_lr") if k in cfg)
    blind = blind_text(rows)
    return "\n".join([
        "Command: `python benchmarks/bench_headline.py` (the digits part of the per-layer run)", "",
        f"Machine: {record['machine']}.", "",
        f"`mo.data.digits()`, MLP 64-{'-'.join(map(str, h.digits['hidden']))}-10 at init (seed 42 + trial), budgets "
        f"per tensor (`{json.dumps(h.digits['budget'])}`); tickets: Adam {protocol['lr']}, batch 100 shuffled, "
        f"{protocol['steps']} steps, max test accuracy over evals every {protocol['eval_every']} steps; IMP run "
        "here, 20 % per round with rounds at the targets, rewinding to init; KD-LTS: 3 teachers MLP 64-256-10 "
        f"({cfg['teacher_steps']} steps), T={cfg['temperature']}, hierarchy {cfg['steps']} steps per stage{extra}, "
        f"chosen on digits' validation split; kd-imp / imp-short: {record['digits_kdimp']['rounds']} geometric "
        f"rounds of {record['digits_kdimp']['round_steps']} steps; the other methods not tuned. `× IMP compute` "
        "relative to digits IMP.", "", "```", format_table(summary, COLUMNS), "```", "",
        against_init(h, summary), "", *([blind, ""] if blind else []),
        "Plot: `benchmarks/results/headline_digits.png`.",
    ])


def selection_section(h: Headline, name: str, record: dict, table_record: dict | None) -> str:
    """The validation rerun: test accuracy at the maximum, at the last step and at the
    validation-chosen step, beside the recorded runs."""
    rows = [r for r in record["rows"] if r["sparsity"] in h.mnist1d.erk_targets]
    table, gaps = [], []
    for target in h.mnist1d.erk_targets:
        for method in h.selection_methods:
            chosen = accs(rows, method, target, "val-chosen test acc")
            if not chosen:
                continue
            best, last = accs(rows, method, target), accs(rows, method, target, "last test acc")
            gaps.append(float(np.mean(np.subtract(best, chosen))))
            table.append({"sparsity": target, "method": method, "trials": trials_text(rows, method, target),
                          "max test acc": interval_text(best), "last step": interval_text(last),
                          "val-chosen": interval_text(chosen),
                          "max − val-chosen": interval_text(np.subtract(best, chosen)),
                          "val-chosen vs published": against_published(chosen, h.mnist1d.published["imp"][target])})
    pooled = pooled_rows(h, name, table_record, table_rows(name, table_record)[0])[0] if table_record else []
    recorded = {(r["method"], r["trial"], r["sparsity"]): r["max test acc"] for r in pooled}
    pairs = [(r["max test acc"], recorded[k]) for r in rows
             if (k := (r["method"], r["trial"], r["sparsity"])) in recorded]
    same = sum(a == b for a, b in pairs)
    flag = " --allocation erk" if name.endswith("erk") else ""
    return "\n".join([
        f"Command: `python benchmarks/bench_headline.py{flag} --selection "
        f"{' '.join(map(str, sorted({r['trial'] for r in rows})))}`", "", f"Machine: {record['machine']}.", "",
        f"Validation split: the 1000 test samples of a fresh MNIST-1D draw (generator seed {record['validation_seed']}"
        "), never trained on nor searched. `max test acc` selects the step on the test set itself (as the "
        "published numbers do); `last step` = the ticket's last step; `val-chosen` = the test accuracy at the "
        "evaluation with the best validation accuracy (the first of ties); mean ± t-based 95 % interval over the "
        "rerun's seeds.", "", "```",
        format_table(table, ["sparsity", "method", "trials", "max test acc", "last step", "val-chosen",
                             "max − val-chosen", "val-chosen vs published"]), "```", "",
        (f"Selecting the step on the test set overstates the validation-chosen accuracy by {min(gaps):.2f}-"
         f"{max(gaps):.2f} points (mean per cell). " if gaps else "")
        + f"{same} of the {len(pairs)} rerun cells reproduce the recorded max test accuracy exactly"
        + (f" (mean |difference| {np.mean([abs(a - b) for a, b in pairs]):.2f} points)." if pairs else "."),
    ])


# --------------------------------------------------------------------------------- the tunings
def tuning_summary(record: dict, targets: tuple) -> list[dict]:
    """Mean validation accuracy of each recorded config over its trials, per sparsity."""
    out = []
    for i, o in enumerate(record["configs"]):
        entry = {"config": i, "overrides": json.dumps(o)}
        for t in targets:
            vals = [r["val acc"] for r in record["rows"] if r["config"] == i and r["sparsity"] == t]
            entry[f"val {pct(t)} %"] = round(float(np.mean(vals)), 2) if vals else None
        means = [entry[f"val {pct(t)} %"] for t in targets]
        entry["mean"] = round(float(np.mean(means)), 2) if None not in means else None
        out.append(entry)
    return out


def tuning_choice(summary: list[dict]) -> int | None:
    """The config KD-LTS runs with: the best mean validation accuracy (the lowest index among
    ties); None while a config lacks rows."""
    means = [entry["mean"] for entry in summary]
    return None if not means or None in means else int(np.argmax(means))


TUNE_COMMANDS = {"uniform": "--tune", "erk": "--tune --allocation erk", "digits": "--tune-digits"}


def tuning_section(h: Headline, key: str, record: dict) -> str:
    targets = h.mnist1d.erk_targets
    summary = tuning_summary(record, targets)
    choice = tuning_choice(summary)
    if choice is not None:
        summary[choice]["mean"] = f"{summary[choice]['mean']} *"
    split = ("the first 1078 digits training samples, maximum accuracy on the last 269" if key == "digits"
             else "the first 3200 training samples, maximum accuracy on the last 800")
    trials = ", ".join(map(str, sorted({r["trial"] for r in record["rows"]})))
    columns = ["config", "overrides", *[f"val {pct(t)} %" for t in targets], "mean"]
    return "\n".join([
        f"Command: `python benchmarks/bench_headline.py {TUNE_COMMANDS[key]}`", "",
        f"Machine: {record['machine']}.", "",
        f"Overrides of `{json.dumps(record['base'])}`, trials {trials}; train on {split}, at MNIST-1D IMP's retrain "
        "sparsities; mean over the trials; `*` = the chosen config, the best `mean`.", "",
        "```", format_table(summary, columns), "```",
    ])


def first_tuning_section(record: dict) -> str:
    table = format_table(record["rows"], ["config", "overrides", "sparsity", "val acc", "teacher val acc",
                                          "train steps"])
    return "\n".join([
        "Command: `python benchmarks/bench_headline.py --tune-first`", "", f"Machine: {record['machine']}.", "",
        f"Base configuration `{json.dumps(record['base'])}` under `scope='layer'`, trial 0, train on the first "
        "3200 training samples, maximum accuracy on the last 800; `overrides` of the base; synflow / snip are "
        "references on the same split.", "", "```", table, "```",
    ])


def kdimp_tuning_section(record: dict) -> str:
    summary = []
    targets = sorted({r["sparsity"] for r in record["rows"]})
    for i, o in enumerate(record["configs"]):
        at = [r for r in record["rows"] if r["config"] == i]
        entry = {"config": i, "overrides": json.dumps(o)}
        for t in targets:
            vals = [r["val acc"] for r in at if r["sparsity"] == t]
            entry[f"val {pct(t)} %"] = round(float(np.mean(vals)), 2) if vals else None
        entry["mean"] = round(float(np.mean([r["val acc"] for r in at])), 2) if at else None
        entry["× IMP compute"] = " / ".join(f"{np.mean([r['× IMP compute'] for r in at if r['sparsity'] == t]):.4f}"
                                            for t in targets)
        summary.append(entry)
    choice = tuning_choice(summary)
    if choice is not None:
        summary[choice]["mean"] = f"{summary[choice]['mean']} *"
    trials = ", ".join(map(str, sorted({r["trial"] for r in record["rows"]})))
    return "\n".join([
        "Command: `python benchmarks/bench_headline.py --tune-kdimp`", "", f"Machine: {record['machine']}.", "",
        f"Overrides of `{json.dumps(record['base'])}`, trials {trials}, the validation split of the KD-LTS tunings; "
        "mean over the trials; `*` = the best `mean`.", "",
        "```", format_table(summary, ["config", "overrides", *[f"val {pct(t)} %" for t in targets], "mean",
                                      "× IMP compute"]), "```",
    ])


# ------------------------------------------------------------------------ objective and probe
def objective_section(record: dict) -> str:
    rows = record["rows"]
    order = []
    for t in sorted({r["sparsity"] for r in rows}):
        at = sorted((r for r in rows if r["sparsity"] == t), key=lambda r: r["objective"])
        order.append(f"- {pct(t)} %: " + " < ".join(f"{r['method']} ({r['max test acc']:.1f})" for r in at))
    return "\n".join([
        "Command: `python benchmarks/bench_headline.py --objective`", "", f"Machine: {record['machine']}.", "",
        f"MNIST-1D trial {rows[0]['trial']}, per-layer budgets: `objective` = the KD-LTS objective of each method's "
        "mask (KL of the masked student at init to the teachers' ensemble, summed over the 4000 training inputs, "
        "`mo.evaluate`; lower = the untrained masked student imitates the teachers better), `blind classes` = "
        "output classes whose row keeps no weight, `max test acc` = its ticket. kd-imp runs its chain to that "
        "sparsity alone. `kd-lts` = the plain hierarchy; `kd-lts lookahead` = the per-layer tuning's choice (the "
        "headline's kd-lts); `kd-imp + hierarchy` = the relaxation hierarchy warm-started from kd-imp's mask "
        f"({json.dumps(record['hierarchy_warm'])}).", "",
        "```", format_table(rows, ["sparsity", "method", "objective", "blind classes", "max test acc"]), "```", "",
        "Methods by increasing objective (ticket accuracy in brackets):", "", *order,
    ])


def probe_section(record: dict) -> str:
    targets = sorted({float(t) for r in record["rows"] for t in r["val acc"]})
    table = [{"run": r["run"], **{f"val {pct(t)} %": r["val acc"][f"{t:.2f}"] for t in targets}}
             for r in record["rows"]]
    return "\n".join([
        f"Source: {record['source']}", "", f"Machine: {record['machine']}.", "",
        f"Trial {record['trial']}, validation accuracy (the tunings' split):", "",
        "```", format_table(table, ["run", *[f"val {pct(t)} %" for t in targets]]), "```",
    ])


# ------------------------------------------------------------------------------------ the page
def variant_blocks(h: Headline, key: str) -> dict[str, str]:
    """The blocks of one budget variant: its table, its validation rerun, its tuning."""
    name = h.variants[key][1]
    out = {}
    record = load_results(name)
    if record is not None:
        out[name] = variant_section(h, key, record)
        if key == "uniform" and any(r["bench"] == "digits" for r in record["rows"]):
            out["headline_digits"] = digits_section(h, record)
    selection = load_results(f"{name}_selection")
    if selection is not None and (record is None or same_settings(selection, record)):
        out[f"{name}_selection"] = selection_section(h, name, selection, record)
    tuning = load_results(f"headline_tuning_{key}")
    if tuning is not None:
        out[f"headline_tuning_{key}"] = tuning_section(h, key, tuning)
    return out


def sections() -> dict[str, str]:
    h = load_headline()
    out = variant_blocks(h, "uniform")
    builders = (("headline_tuning_digits", "headline_tuning_digits", lambda r: tuning_section(h, "digits", r)),
                ("headline_tuning_first", "headline_tuning", first_tuning_section),
                ("headline_tuning_kdimp", "headline_tuning_kdimp", kdimp_tuning_section),
                ("headline_objective", "headline_objective", objective_section))
    for block, name, build in builders:
        if (record := load_results(name)) is not None:
            out[block] = build(record)
    out.update(variant_blocks(h, "erk"))
    if (record := load_results("headline_erk_probe")) is not None:
        out["headline_erk_probe"] = probe_section(record)
    return out


def goals() -> list[Goal]:
    h = load_headline()
    out = []
    for key, label in (("uniform", "per-layer budgets"), ("erk", "ERK budgets")):
        name = h.variants[key][1]
        record = load_results(name)
        if record is None:
            continue
        rows = table_rows(name, record)[0]
        table = verdict_table(h, pooled_rows(h, name, record, rows)[0], summarize(h, rows, "mnist1d"))
        for method in h.spread:
            cells, met = met_cells(table, method)
            if not cells:
                continue
            costs = [e["× IMP compute"] for e in cells if e["× IMP compute"] is not None]
            where = " / ".join(pct(e["sparsity"]) for e in met) or "none"
            out.append(Goal(AREA, f"{method} ({label}) beats the published IMP ticket at "
                            f"{'/'.join(pct(e['sparsity']) for e in cells)} % with ≤ 1/10 of IMP's compute",
                            " / ".join(e["max test acc (95 % CI)"] for e in cells)
                            + (f" ({min(costs):.3f}-{max(costs):.3f} × IMP)" if costs else "") + f"; met at {where}",
                            "met" if len(met) == len(cells) else "not met" if not met else "partly met", name))
    return out


def plot(h: Headline, rows: list[dict], path: Path, bench: str, title: str, labels: dict | None = None) -> None:
    """Mean ± std max test accuracy per method against sparsity (``labels``: legend overrides)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    targets = sorted({r["sparsity"] for r in rows if r["bench"] == bench and r["sparsity"] > 0})
    for method in h.methods:
        pts = []
        for target in targets:
            acc = [r["max test acc"] for r in rows
                   if (r["bench"], r["method"], r["sparsity"]) == (bench, method, target)]
            if acc:
                pts.append((100 * target, np.mean(acc), np.std(acc, ddof=1) if len(acc) > 1 else 0.0))
        if pts:
            x, m, s = (np.array(v) for v in zip(*pts))
            ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=(labels or {}).get(method, method),
                        lw=2.2 if method in h.spread else 1.2)
    if bench == "mnist1d":
        pub = sorted(h.mnist1d.published["imp"].items())
        ax.plot([100 * s for s, _ in pub], [v[0] for _, v in pub], "k--",
                label=(labels or {}).get("published", "imp (published, trial 0)"))
    ax.set(xlabel="sparsity (%)", ylabel="max test accuracy (%)", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def plots(directory: Path) -> None:
    """Every plot of the page, into ``directory`` (the variants whose results are recorded)."""
    h = load_headline()
    for key, what in (("uniform", "per-layer budgets"), ("erk", "ERK budgets")):
        name = h.variants[key][1]
        record = load_results(name)
        if record is None:
            continue
        rows = table_rows(name, record)[0]
        labels = {"imp": "imp (ERK, full protocol)", "published": "imp (published, per-layer, trial 0)"} \
            if key == "erk" else None
        plot(h, rows, directory / f"{name}_mnist1d.png", "mnist1d",
             f"MNIST-1D MLP 40-500-500-10, {what}: tickets from init (mean ± std)", labels)
        if key == "uniform" and any(r["bench"] == "digits" for r in rows):
            plot(h, rows, directory / "headline_digits.png", "digits",
                 f"digits MLP 64-{'-'.join(map(str, h.digits['hidden']))}-10: tickets from init (mean ± std)")
