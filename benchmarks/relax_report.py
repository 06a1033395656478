"""The relaxations page (``docs/benchmarks/relaxations.md``): its generated blocks and goals,
built only from the ``relax_*`` results JSON that ``bench_relax.py`` writes.

Blocks: ``relax_heldout`` (gap to the proven optimum on the fresh held-out set),
``relax_quality`` (the same on the development set, every record of it side by side),
``relax_overhead_cpu`` (mask step over dense step on CPU, with the thread / malloc / dense
optimizer variants as rows of one table), ``relax_overhead_cuda`` and ``relax_scale``
(ResNet-20, CPU and CUDA rows).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, table  # noqa: E402

PAGE = "relaxations"
AREA = "Relaxations"
RELAX = ("sigmoid", "anneal", "ste", "hierarchy")
LABELS = ("magnitude", *RELAX, "hierarchy+polish")
OVERHEAD = ("sigmoid", "anneal", "ste")
EXACT_GAP = 1e-4  # the exact solver's relative optimality tolerance: "optimal" means proven within it
GOAL_MEDIAN, GOAL_WORST = 0.01, 0.05  # hierarchy: median gap ≤ 1 %, worst ≤ 5 %
GOAL_OVERHEAD = 1.5  # mask step ≤ 1.5 × dense step
QUALITY_FAMILIES = ("layerwise", "heldout", "network")
# the development set's records, oldest first, and the overhead records in table order
QUALITY_RECORDS = ("relax_quality", "relax_quality_rerun")
CPU_OVERHEAD_RECORDS = ("relax_overhead", "relax_overhead_run2", "relax_overhead_1thread",
                        "relax_overhead_tuned_malloc", "relax_overhead_adam_default")
SCALE_RECORDS = ("relax_scale", "relax_scale_cuda")


def num(v: float, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals (the one number format of the blocks)."""
    return f"{v:.{digits}f}"


def sig(v: float) -> str:
    """``v`` with 3 significant digits (times)."""
    return f"{v:.3g}"


# ---------------------------------------------------------------- quality


def proven(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["exact_status"] == "optimal"]


def not_proven(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["exact_status"] != "optimal"]


def summarize_quality(rows: list[dict], families=QUALITY_FAMILIES, worst_instance: bool = False) -> list[dict]:
    """Per family (instance-name prefix) and "all", per method: median and worst gap over
    the instances proven optimal (families with none proven are left out)."""
    out = []
    for family in (*families, "all"):
        sel = [r for r in proven(rows) if family == "all" or r["instance"].startswith(family)]
        if not sel:
            continue
        for label in LABELS:
            gaps = [r[label] for r in sel]
            row = {"instances": family, "n": len(sel), "method": label,
                   "median gap %": 100 * statistics.median(gaps), "worst gap %": 100 * max(gaps)}
            if worst_instance:
                row["worst instance"] = max(sel, key=lambda r: r[label])["instance"]
            row["median time s"] = statistics.median(r[f"{label} time"] for r in sel)
            out.append(row)
    return out


def gap_stats(rows: list[dict], label: str = "hierarchy") -> tuple[float, float, str]:
    """(median, worst, worst instance) of ``label``'s gap over the proven instances."""
    sel = proven(rows)
    worst = max(sel, key=lambda r: r[label])
    return statistics.median(r[label] for r in sel), worst[label], worst["instance"]


def goal_state(median: float, worst: float) -> str:
    met_med, met_worst = median <= GOAL_MEDIAN, worst <= GOAL_WORST
    if met_med and met_worst:
        return "met"
    if not (met_med or met_worst):
        return "not met"
    return "median met, worst missed" if met_med else "worst met, median missed"


def verdict(rows: list[dict]) -> str:
    """One sentence: hierarchy's median and worst gap over all proven instances against the
    goal, and the other methods' for comparison."""
    med, worst, where = gap_stats(rows)
    others = "; ".join(f"{label} {num(100 * gap_stats(rows, label)[0])} % / {num(100 * gap_stats(rows, label)[1])} %"
                       for label in LABELS if label != "hierarchy")
    return (f"Over all {len(proven(rows))} proven instances, `hierarchy`: median gap {num(100 * med)} %, worst "
            f"{num(100 * worst)} % ({where}): goal (median ≤ {100 * GOAL_MEDIAN:g} %, worst ≤ {100 * GOAL_WORST:g} %) "
            f"**{goal_state(med, worst)}**. Median / worst of the others: {others}.")


def proven_text(rows: list[dict], time_limit: float | None) -> str:
    """Which exact optima were proven (status "optimal"); the others are named and left out."""
    limit = f", limit {time_limit:g} s" if time_limit else ""
    missing = not_proven(rows)
    if not missing:
        return f"All {len(rows)} exact optima have status \"optimal\" (relative gap ≤ {EXACT_GAP:g}{limit})."
    return (f"{len(rows) - len(missing)} of {len(rows)} exact optima have status \"optimal\" (relative gap ≤ "
            f"{EXACT_GAP:g}{limit}); not proven, so left out: "
            + ", ".join(f"{r['instance']} ({r['exact_status']})" for r in missing) + ".")


def heldout_text(rows: list[dict], time_limit: float | None) -> str:
    """The held-out block's sentences: which optima were proven, and the verdict."""
    return proven_text(rows, time_limit) + " " + verdict(rows)


def heldout_setup(spec: dict) -> str:
    """The held-out set in words, from its spec as recorded in the JSON (``instances``)."""
    parts = [f"in {n_in} / N {n} / {n_out} outputs / k {n_out * round(density * n_in)}, {loss.upper()}, seeds "
             f"{seeds[0]}-{seeds[1] - 1}" for _family, n_in, n, n_out, density, loss, seeds in spec["layerwise"]]
    nets, row0, size = spec["network_seeds"], spec["network_row0"], spec["network_samples"]
    count = nets[1] - nets[0]
    return (f"Layer-wise noisy planted instances (noise {spec['noise']:g}): {'; '.join(parts)}. {count} networks "
            f"(4-6-3 student, seeds {nets[0]}-{nets[1] - 1}, L1, global density 0.3) on digits rows {row0}-"
            f"{row0 + size * count - 1}, {size} each.")


def record_header(data: dict, label: str = "") -> list[str]:
    """Command and machine lines of one record (``label`` names it in multi-record blocks)."""
    lead = f"{label}: " if label else ""
    return [f"{lead}Command: `{data.get('command', 'not recorded')}`", "", f"{lead}Machine: {data['machine']}", ""]


def summary_table(summary: list[dict]) -> str:
    worst = "worst instance" in summary[0]
    header = ["instances", "n", "method", "median gap %", "worst gap %", *(["worst instance"] if worst else []),
              "median time s"]
    return table(header, [[r["instances"], r["n"], r["method"], num(r["median gap %"]), num(r["worst gap %"]),
                           *([r["worst instance"]] if worst else []), sig(r["median time s"])] for r in summary])


def heldout_families(spec: dict) -> list[str]:
    return [f[0] for f in spec["layerwise"]] + ["network"]


def section_heldout() -> str | None:
    data = load_results("relax_heldout")
    if data is None:
        return None
    spec = data["instances"]
    lines = record_header(data)
    extra = [f"Code: {data['code']}." if "code" in data else "",
             f"Wall time {data['wall_s'] / 60:.0f} min." if "wall_s" in data else "",
             (f"Load average (1 min) {data['load_average_start']:.1f} at the start, {data['load_average_end']:.1f} "
              "at the end." if "load_average_start" in data else "")]
    lines += [" ".join(e for e in extra if e), "", heldout_setup(spec), "",
              heldout_text(data["rows"], data.get("settings", {}).get("exact_time_limit")), "",
              summary_table(summarize_quality(data["rows"], heldout_families(spec), worst_instance=True))]
    return "\n".join(lines)


def quality_records() -> list[tuple[str, dict]]:
    """The development set's records present, labelled A, B, ... oldest first."""
    found = [d for name in QUALITY_RECORDS if (d := load_results(name)) is not None]
    return [(chr(ord("A") + i), d) for i, d in enumerate(found)]


def quality_side_by_side(records: list[tuple[str, dict]]) -> str:
    """One row per family and method; median and worst gap and median time of each record."""
    summaries = {label: {(r["instances"], r["method"]): r for r in summarize_quality(d["rows"])}
                 for label, d in records}
    first = summaries[records[0][0]]
    header = ["instances", "n", "method"] + [f"{label} {c}" for label, _ in records
                                             for c in ("median gap %", "worst gap %", "median time s")]
    rows = []
    for key, r in first.items():
        cells = [r["instances"], r["n"], r["method"]]
        for label, _ in records:
            s = summaries[label].get(key)
            cells += [num(s["median gap %"]), num(s["worst gap %"]), sig(s["median time s"])] if s else ["—"] * 3
        rows.append(cells)
    return table(header, rows)


def variants_table(records: list[tuple[str, dict]]) -> str | None:
    """The recorded reruns of single instances with one setting changed (kept with the latest
    record), beside each record's own gap on that instance."""
    variants = records[-1][1].get("variants")
    if not variants:
        return None
    gaps = {label: {r["instance"]: r.get("hierarchy") for r in d["rows"]} for label, d in records}
    rows = [[v["variant"], v["instance"], num(v["hierarchy gap %"], 1),
             *[num(100 * g[v["instance"]], 1) if g.get(v["instance"]) is not None else "—" for g in gaps.values()]]
            for v in variants["rows"]]
    return table(["variant", "instance", "hierarchy gap %", *[f"in {label}" for label in gaps]], rows)


def section_quality() -> str | None:
    records = quality_records()
    if not records:
        return None
    lines = []
    for label, data in records:
        lines += record_header(data, label if len(records) > 1 else "")
        lines += [f"{label}: " * (len(records) > 1) + proven_text(data["rows"], None) + " " + verdict(data["rows"]),
                  ""]
    lines.append(quality_side_by_side(records))
    variants = variants_table(records)
    if variants:
        lines += ["", "Single instances rerun with one setting changed, beside their gap in each record:", "",
                  variants]
    return "\n".join(lines)


# ---------------------------------------------------------------- overhead


def setting_label(data: dict) -> str:
    """What distinguishes an overhead record: threads, malloc, the dense step's optimizer."""
    threads = data.get("threads")
    parts = [f"{threads} thread{'s' * (threads != 1)}" if threads else "threads not recorded",
             "tuned glibc malloc" if data.get("malloc") else "default malloc",
             "dense step: torch Adam defaults" if data["dense_optimizer"] == "adam-default"
             else "dense step: the mask step's optimizer"]
    return ", ".join(parts)


def overhead_table(data: dict) -> str:
    return table(["student", "weights", "steps", "method", "dense optimizer", "mask optimizer", "dense ms/step",
                  "mask ms/step", "mask / dense"],
                 [[r["student"], r["weights"], r["steps"], r["method"], f"`{r['dense optimizer']}`",
                   f"`{r['mask optimizer']}`", sig(1e3 * r["dense s/step"]), sig(1e3 * r["mask s/step"]),
                   num(r["mask / dense"])] for r in data["rows"]])


def overhead_records(names=CPU_OVERHEAD_RECORDS) -> list[tuple[str, dict]]:
    return [(name, d) for name in names if (d := load_results(name)) is not None]


def ratio_table(records: list[tuple[str, dict]]) -> str:
    """One row per record, one column per (student, method) ratio; a setting seen before is
    marked as a repeat."""
    cols = list(dict.fromkeys((r["student"].split()[0], r["method"]) for _, d in records for r in d["rows"]))
    rows, seen = [], []
    for _name, d in records:
        label = setting_label(d)
        repeat = seen.count(label)
        seen.append(label)
        ratio = {(r["student"].split()[0], r["method"]): r["mask / dense"] for r in d["rows"]}
        rows.append([label + (f" (repeat {repeat + 1})" if repeat else ""), d["settings"]["repeats"]]
                    + [num(ratio[c]) if c in ratio else "—" for c in cols])
    return table(["setting", "repeats", *[f"{s} {m}" for s, m in cols]], rows)


def cells_within(records: list[tuple[str, dict]]) -> dict[str, list[float]]:
    """Student (first word of its name) -> every recorded ratio of the matched-optimizer records."""
    out: dict[str, list[float]] = {}
    for _, d in records:
        if d["dense_optimizer"] == "matched":
            for r in d["rows"]:
                out.setdefault(r["student"].split()[0], []).append(r["mask / dense"])
    return out


def overhead_measured(records: list[tuple[str, dict]]) -> tuple[str, str]:
    """(measured, verdict) of the overhead goal over the matched records: per student the
    range of ratios and how many cells are within the goal."""
    cells = cells_within(records)
    parts = [f"{s} {num(min(v))}–{num(max(v))}× ({sum(x <= GOAL_OVERHEAD for x in v)} of {len(v)} cells ≤ "
             f"{GOAL_OVERHEAD:g}×)" for s, v in cells.items()]
    flat = [x for v in cells.values() for x in v]
    ok = sum(x <= GOAL_OVERHEAD for x in flat)
    verdict_ = "met" if ok == len(flat) else "not met" if ok == 0 else "partly met"
    return "; ".join(parts), verdict_


def section_overhead_cpu() -> str | None:
    records = overhead_records()
    if not records:
        return None
    ref = records[0][1]
    lines = [f"{setting_label(d)}: `{d.get('command', 'not recorded')}`" for _, d in records]
    machines = list(dict.fromkeys(d["machine"] for _, d in records))
    lines = ["Commands:", "", *[f"- {line}" for line in lines], "",
             *(["Machine: " + machines[0]] if len(machines) == 1 else
               ["Machines:", "", *[f"- {setting_label(d)}: {d['machine']}" for _, d in records]]), "",
             f"Reference record ({setting_label(ref)}, {ref['settings']['repeats']} repeats):", "",
             overhead_table(ref), "", "Mask step over dense step in every record:", "", ratio_table(records), ""]
    measured, verdict_ = overhead_measured(records)
    lines.append(f"Matched records, goal ≤ {GOAL_OVERHEAD:g}×: {measured}: **{verdict_}**.")
    return "\n".join(lines)


def section_overhead_cuda() -> str | None:
    data = load_results("relax_overhead_cuda")
    if data is None:
        return None
    measured, verdict_ = overhead_measured([("relax_overhead_cuda", data)])
    return "\n".join([*record_header(data), f"Device: {data.get('device_name', data['device'])}; "
                      f"{data['settings']['repeats']} repeats.", "", overhead_table(data), "",
                      f"Goal ≤ {GOAL_OVERHEAD:g}×: {measured}: **{verdict_}**."])


# ---------------------------------------------------------------- scale


def section_scale() -> str | None:
    records = [d for name in SCALE_RECORDS if (d := load_results(name)) is not None]
    if not records:
        return None
    lines = []
    for d in records:
        device = d["rows"][0]["device"]
        lines += [f"{device}: `{d.get('command', 'not recorded')}`", "",
                  f"{device} machine: {d['machine']}" + (f"; {d['device_name']}" if "device_name" in d else ""), ""]
    rows = [[r["student"], r["weights"], r["device"], d["settings"]["scale_steps"], r["steps"], num(r["steps/s"], 1),
             num(r["solve time s"], 1), num(r["peak memory MiB"], 0), num(r["objective"], 3)]
            for d in records for r in d["rows"]]
    lines.append(table(["student", "weights", "device", "steps per stage", "steps", "steps/s", "solve time s",
                        "peak memory MiB (CPU: RSS growth; CUDA: allocated)", "objective"], rows))
    return "\n".join(lines)


# ---------------------------------------------------------------- page and goals


def sections() -> dict[str, str]:
    """Block name -> markdown, for every block whose results exist."""
    blocks = {"relax_heldout": section_heldout(), "relax_quality": section_quality(),
              "relax_overhead_cpu": section_overhead_cpu(), "relax_overhead_cuda": section_overhead_cuda(),
              "relax_scale": section_scale()}
    return {name: f'<a id="{name}"></a>\n\n{body}' for name, body in blocks.items() if body is not None}


def across(values: list[tuple[str, float]], limit: float) -> tuple[str, str]:
    """(measured, verdict) of one bound over several records: met on all, none, or some."""
    ok = sum(v <= limit for _, v in values)
    verdict_ = "met" if ok == len(values) else "not met" if ok == 0 else "partly met"
    return "; ".join(f"{label} {num(100 * v)} %" for label, v in values), verdict_


def quality_goal_values() -> list[tuple[str, tuple[float, float, str]]]:
    """(record label, hierarchy (median, worst, worst instance)) of every quality record present."""
    out = []
    held = load_results("relax_heldout")
    if held is not None:
        out.append(("held-out set", gap_stats(held["rows"])))
    for label, d in quality_records():
        out.append((f"development set {label}", gap_stats(d["rows"])))
    return out


def goals() -> list[Goal]:
    out = []
    quality = quality_goal_values()
    if quality:
        # the median's evidence is the held-out set; the worst gap's spread is in the development set's records
        held, dev = load_results("relax_heldout") is not None, bool(quality_records())
        for i, (what, limit) in enumerate((("median", GOAL_MEDIAN), ("worst", GOAL_WORST))):
            prefer_dev = what == "worst" or not held
            section = "relax_quality" if prefer_dev and dev else "relax_heldout"
            measured, verdict_ = across([(label, s[i]) for label, s in quality], limit)
            out.append(Goal(AREA, f"`hierarchy` {what} gap to the proven optimum ≤ {100 * limit:g} % on every "
                                  "recorded instance set", measured, verdict_, section))
    for section, records, where in (("relax_overhead_cpu", overhead_records(), "CPU"),
                                    ("relax_overhead_cuda", overhead_records(("relax_overhead_cuda",)), "CUDA")):
        if records and cells_within(records):
            measured, verdict_ = overhead_measured(records)
            out.append(Goal(AREA, f"mask step ≤ {GOAL_OVERHEAD:g}× a dense step with the same optimizer, {where}",
                            measured, verdict_, section))
    scale = [d for name in SCALE_RECORDS if (d := load_results(name)) is not None]
    if scale:
        measured = "; ".join(f"{r['device']}: {num(r['steps/s'], 1)} steps/s, {num(r['peak memory MiB'], 0)} MiB peak"
                             for d in scale for r in d["rows"])
        out.append(Goal(AREA, "`hierarchy` on a ResNet-20 student", measured, "no goal", "relax_scale"))
    return out
