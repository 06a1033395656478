"""The report of ``bench_tickets.py``: its blocks of ``docs/benchmarks/tickets.md``, its goals
and its plot, built only from ``results_dir()/tickets*.json`` (and the reference numbers of
``experiments/tickets_mnist1d.toml``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import Goal, load_results
from tickets_protocol import Mnist1dSetup, load_setup
from tickets_stats import against_published, interval, interval_text, share_verdict, versus, within_prediction

from maskopt.report import format_table

AREA = "MNIST-1D tickets"
WITHIN = 3.0  # points: the goal's distance to the published numbers


def pct(target: float) -> str:
    return f"{100 * target:.0f}"


def pair(values) -> str:
    return "/".join(f"{v:.1f}" for v in values)


# ------------------------------------------------------------------------------ tickets_mnist1d
def summarize(rows: list[dict], setup: Mnist1dSetup) -> list[dict]:
    """Per (method, sparsity): each trial's max test accuracy beside the published and the
    notebook-rerun numbers and the largest distance to them over the trials."""
    trials = sorted({r["trial"] for r in rows})
    out = []
    for method, target in sorted({(r["method"], r["sparsity"]) for r in rows}, key=lambda k: (k[1], k[0])):
        match = [r for r in rows if (r["method"], r["sparsity"]) == (method, target)]
        entry = {"method": method, "sparsity": target}
        for t in trials:
            entry[f"acc trial {t}"] = next((r["max test acc"] for r in match if r["trial"] == t), None)
        for key, ref in (("published", setup.published), ("notebook rerun", setup.notebook_rerun)):
            pub = ref.get(method, {}).get(target)
            entry[key] = pair(pub) if pub else ""
            gaps = [abs(entry[f"acc trial {t}"] - pub[t]) for t in trials if pub and t < len(pub)
                    and entry[f"acc trial {t}"] is not None]
            entry["max |diff|" + ("" if key == "published" else " rerun")] = round(max(gaps), 2) if gaps else None
        entry["train steps"] = float(np.mean([r["train steps"] for r in match]))
        out.append(entry)
    return out


def cells_within(rows: list[dict], method: str, ref: dict) -> tuple[int, int]:
    """(cells within WITHIN points of ``ref``, cells compared): one cell per trial and sparsity."""
    gaps = [abs(r["max test acc"] - ref[r["sparsity"]][r["trial"]]) for r in rows
            if r["method"] == method and r["sparsity"] in ref and r["trial"] < len(ref[r["sparsity"]])]
    return sum(g <= WITHIN for g in gaps), len(gaps)


def mnist1d_section(record: dict, setup: Mnist1dSetup) -> str:
    rows = record["rows"]
    summary = summarize(rows, setup)
    trials = sorted({r["trial"] for r in rows})
    cols = ["method", "sparsity", *[f"acc trial {t}" for t in trials], "published", "max |diff|",
            "notebook rerun", "max |diff| rerun", "train steps"]
    counts = {(m, name): cells_within(rows, m, ref[m]) for m in ("imp", "random")
              for name, ref in (("published", setup.published), ("rerun", setup.notebook_rerun))}
    spread = {m: max(abs(a - b) for t in setup.notebook_rerun[m]
                     for a, b in zip(setup.published[m][t], setup.notebook_rerun[m][t])) for m in ("imp", "random")}
    dense = setup.same_seed_dense
    return "\n".join([
        "Command: `python benchmarks/bench_tickets.py` (or one process per trial: `--trials T --rows-out NAME`, "
        "then `--rows-in NAME...`)", "", f"Machine: {record['machine']}", "",
        f"Trials {'/'.join(map(str, trials))} = initialization seeds "
        f"{'/'.join(str(42 + t) for t in trials)}. `max |diff|` = the largest distance over the trials to the "
        "published number of the same trial; `notebook rerun` = the stored outputs of the notebook's own "
        "re-execution on CPU. `train steps` = batches of 100 spent finding the mask plus the ticket's steps (IMP: "
        "all retrains up to that sparsity).", "", "```", format_table(summary, cols), "```", "",
        *[f"- {m}: within {WITHIN:.0f} points of the published number in {counts[m, 'published'][0]} of "
          f"{counts[m, 'published'][1]} cells (trial × sparsity), of the notebook's re-execution in "
          f"{counts[m, 'rerun'][0]} of {counts[m, 'rerun'][1]}." for m in ("imp", "random")],
        f"- The notebook's two executions differ from each other by up to {spread['imp']:.1f} (IMP) and "
        f"{spread['random']:.1f} (random) points; its published dense runs of the same seed reached "
        + " and ".join(f"{a:.1f} / {b:.1f} (trial {t})" for t, (a, b) in enumerate(dense)) + ".", "",
        "Plot: `benchmarks/results/tickets_mnist1d.png`.",
    ])


# ------------------------------------------------------------------------ tickets_random_spread
def random_spread_table(rows: list[dict]) -> list[dict]:
    table = []
    for r in rows:
        _, mean, half = interval(r["accs"])
        table.append({**r, "std": round(r["std"], 2), "mean ± 95 % CI": interval_text(r["accs"]),
                      "vs published": versus(mean, half, r["published"]),
                      "in 95 % PI": "yes" if within_prediction(r["accs"], r["published"]) else "no"})
    return table


def random_spread_section(record: dict) -> str:
    rows = record["rows"]
    table = random_spread_table(rows)
    cols = ["trial", "sparsity", "seeds", "mean ± 95 % CI", "std", "min", "max", "published", "vs published",
            "in 95 % PI"]
    counts = {v: sum(e["vs published"] == v for e in table) for v in ("above", "level", "below")}
    trials = " ".join(map(str, sorted({r["trial"] for r in rows})))
    threads = record.get("threads")
    return "\n".join([
        f"Command: `python benchmarks/bench_tickets.py --random-seeds {rows[0]['seeds']} --trials {trials}"
        + (f" --threads {threads}" if threads else "") + "`", "", f"Machine: {record['machine']}", "",
        "Mask seeds 1000·(t+1) + 0, 1, ... from trial t's initialization. `mean ± 95 % CI` = the t-based 95 % "
        "confidence interval of the mean; `vs published` = that interval above / below the published single run "
        "of trial t, else level; `in 95 % PI` = whether the published run lies in the 95 % prediction interval "
        "of one more run (mean ± t·s·√(1 + 1/n)).", "", "```", format_table(table, cols), "```", "",
        f"The published random number is within {WITHIN:.0f} points of the mean over mask seeds in "
        f"{sum(abs(r['published'] - r['mean']) <= WITHIN for r in rows)} of {len(rows)} cells; the interval of the "
        f"mean lies above it in {counts['above']}, below it in {counts['below']} and around it in {counts['level']}; "
        f"it lies in the prediction interval in {sum(e['in 95 % PI'] == 'yes' for e in table)} of {len(rows)}.",
    ])


# --------------------------------------------------------------------------- tickets_imp_spread
def imp_spread_table(rows: list[dict], setup: Mnist1dSetup) -> list[dict]:
    """Per goal sparsity: IMP's max test accuracy over the initializations against the published tickets."""
    table = []
    for target in sorted({r["sparsity"] for r in rows}):
        at = sorted((r for r in rows if r["sparsity"] == target), key=lambda r: r["trial"])
        accs = [r["max test acc"] for r in at]
        pub = setup.published["imp"][target]
        table.append({"sparsity": target, "inits": len(accs), "per init": pair(accs),
                      "mean": round(float(np.mean(accs)), 2), "std": round(float(np.std(accs, ddof=1)), 2),
                      "max test acc (95 % CI)": interval_text(accs), "published": pair(pub),
                      "vs published": against_published(accs, pub),
                      "in 95 % PI": "/".join("yes" if within_prediction(accs, p) else "no" for p in pub),
                      "last step (95 % CI)": interval_text([r["final test acc"] for r in at])})
    return table


def imp_spread_section(record: dict, setup: Mnist1dSetup) -> str:
    rows = [r for r in record["rows"] if r["method"] == "imp"]
    trials = sorted({r["trial"] for r in rows})
    table = imp_spread_table(rows, setup)
    cols = ["sparsity", "inits", "per init", "max test acc (95 % CI)", "std", "published", "vs published",
            "in 95 % PI", "last step (95 % CI)"]
    cells = 2 * len(table)
    within = sum(abs(p - e["mean"]) <= WITHIN for e in table for p in setup.published["imp"][e["sparsity"]])
    inside = sum(v == "yes" for e in table for v in e["in 95 % PI"].split("/"))
    return "\n".join([
        f"Command: `python benchmarks/bench_tickets.py --imp-trials {' '.join(str(t) for t in trials if t > 1)}`", "",
        f"Machine: {record['machine']}", "",
        f"Initializations seed 42 + trial, trials {', '.join(map(str, trials))} (0 and 1 are the IMP rows of "
        "`tickets_mnist1d.json`). `max test acc (95 % CI)` = mean ± the t-based 95 % confidence interval; `vs "
        "published` = that interval above / below the published trial 0 ticket (trial 1's in brackets where it "
        "differs), else level; `in 95 % PI` = whether the published trial 0 / 1 run lies in the 95 % prediction "
        "interval of one more run; `last step` = the test accuracy after the last step.", "",
        "```", format_table(table, cols), "```", "",
        f"The published IMP number lies within {WITHIN:.0f} points of the mean over initializations in {within} of "
        f"{cells} cells and in the prediction interval in {inside} of {cells}.",
    ])


# ------------------------------------------------------------------------------ tickets_imp_erk
def imp_erk_section(record: dict, spread: dict | None) -> str:
    rows = sorted(record["rows"], key=lambda r: (r["trial"], r["sparsity"]))
    trials = sorted({r["trial"] for r in rows})
    budget = ", ".join(f"{k}={v!r}" for k, v in record["budget"].items())
    text = f"{len(trials)} initialization{'s' if len(trials) > 1 else ''} ({', '.join(map(str, trials))})"
    if spread is not None:
        imp = [r for r in spread["rows"] if r["method"] == "imp"]
        stds = {t: float(np.std([r["max test acc"] for r in imp if r["sparsity"] == t], ddof=1))
                for t in sorted({r["sparsity"] for r in imp}) if t in {r["sparsity"] for r in rows}}
        text += ("; under per-layer budgets single IMP runs differ by "
                 + " / ".join(f"{s:.2f}" for s in stds.values()) + " points (std over "
                 f"{len({r['trial'] for r in imp})} initializations, `tickets_imp_spread`) at "
                 + " / ".join(pct(t) for t in stds) + " %")
    return "\n".join([
        f"Command: `python benchmarks/bench_tickets.py --imp-erk {' '.join(map(str, trials))}` (or one "
        "initialization per run; the others' rows are kept)", "", f"Machine: {record['machine']}", "",
        f"Budget `Budget(sparsity=s, {budget})`, one chain per target; {text}.", "",
        "```", format_table(rows, ["trial", "sparsity", "max test acc", "train steps"]), "```",
    ])


# -------------------------------------------------------------------- tickets_protocol_ablation
def ablation_section(record: dict) -> str:
    targets = sorted({float(t) for r in record["rows"] for t in r["max test acc"]})
    table = [{"variant": r["variant"], **{f"{pct(t)} %": r["max test acc"].get(f"{t:.2f}", "-") for t in targets}}
             for r in record["rows"]]
    return "\n".join([
        f"Source: {record['source']}", "", f"Machine: {record['machine']}", "",
        f"Trial {record['trial']}, maximum test accuracy of IMP's tickets:", "",
        "```", format_table(table, ["variant", *[f"{pct(t)} %" for t in targets]]), "```",
    ])


# ------------------------------------------------------------------------------------ the page
def sections() -> dict[str, str]:
    setup = load_setup()
    out = {}
    if (record := load_results("tickets_mnist1d")) is not None:
        out["tickets_mnist1d"] = mnist1d_section(record, setup)
    if (record := load_results("tickets_protocol_ablation")) is not None:
        out["tickets_protocol_ablation"] = ablation_section(record)
    if (record := load_results("tickets_random_spread")) is not None:
        out["tickets_random_spread"] = random_spread_section(record)
    spread = load_results("tickets_imp_spread")
    if spread is not None:
        out["tickets_imp_spread"] = imp_spread_section(spread, setup)
    if (record := load_results("tickets_imp_erk")) is not None:
        out["tickets_imp_erk"] = imp_erk_section(record, spread)
    return out


def goals() -> list[Goal]:
    setup = load_setup()
    out = []
    record = load_results("tickets_mnist1d")
    if record is not None:
        for method in ("imp", "random"):
            hits, total = cells_within(record["rows"], method, setup.published[method])
            rerun = cells_within(record["rows"], method, setup.notebook_rerun[method])
            out.append(Goal(AREA, f"maskopt's {method.upper() if method == 'imp' else method} tickets within "
                            f"{WITHIN:.0f} points of the published ones (per trial and sparsity)",
                            f"{hits} of {total} cells ({rerun[0]} of {rerun[1]} against the notebook's CPU "
                            "re-execution)", share_verdict(hits, total), "tickets_mnist1d"))
    record = load_results("tickets_imp_spread")
    if record is not None:
        table = imp_spread_table([r for r in record["rows"] if r["method"] == "imp"], setup)
        ok = [e for e in table if not e["vs published"].startswith("below")]
        out.append(Goal(AREA, "IMP over initializations not below the published ticket (95 % CI, trial 0's number)",
                        " / ".join(e["max test acc (95 % CI)"] for e in table) + " at "
                        + " / ".join(pct(e["sparsity"]) for e in table) + " %: below at "
                        + (", ".join(pct(e["sparsity"]) for e in table if e not in ok) or "none"),
                        share_verdict(len(ok), len(table)), "tickets_imp_spread"))
    record = load_results("tickets_random_spread")
    if record is not None:
        table = random_spread_table(record["rows"])
        inside = sum(e["in 95 % PI"] == "yes" for e in table)
        out.append(Goal(AREA, "published random tickets consistent with ours over mask seeds",
                        f"{inside} of {len(table)} in the 95 % prediction interval; the mean's CI level in "
                        f"{sum(e['vs published'] == 'level' for e in table)} of {len(table)}", "no goal",
                        "tickets_random_spread"))
    return out


def plot(path: Path) -> None:
    """Max test accuracy (mean over trials) per method against sparsity, with the published
    curves; nothing when tickets_mnist1d.json is absent."""
    record = load_results("tickets_mnist1d")
    if record is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = load_setup()
    rows = record["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({r["method"] for r in rows} - {"dense"}):
        targets = sorted({r["sparsity"] for r in rows if r["method"] == method})
        means = [np.mean([r["max test acc"] for r in rows if (r["method"], r["sparsity"]) == (method, t)])
                 for t in targets]
        ax.plot([100 * t for t in targets], means, marker="o", label=method)
    for method, style in (("imp", "k--"), ("random", "k:")):
        pub = sorted(setup.published[method].items())
        ax.plot([100 * s for s, _ in pub], [np.mean(v) for _, v in pub], style, label=f"{method} (published)")
    dense = [r["max test acc"] for r in rows if r["method"] == "dense"]
    if dense:
        ax.axhline(np.mean(dense), color="grey", lw=0.8, label="dense")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("max test accuracy (%)")
    ax.set_title("MNIST-1D MLP 40-500-500-10: tickets trained from initialization")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
