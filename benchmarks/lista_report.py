"""The unrolled-solvers page (``docs/benchmarks/unrolled.md``): its generated blocks and
goals, built only from the ``lista_*`` results JSON that ``bench_lista.py`` writes.

Blocks: ``lista_noise_free`` (every method's 16-layer NMSE, preparation time and the FISTA
iterations it takes to match it; the best NMSE of each FISTA schedule) and ``lista_snr40``
(SNR 40 dB against the oracle-support least-squares floor).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Goal, load_results, table  # noqa: E402

from maskopt.solvers.unrolled import iterations_to_reach  # noqa: E402

PAGE = "unrolled"
AREA = "Unrolled solvers"
ORDER = ("alista", "lista-cpss", "hyperlista", "lista-cp", "lista", "fista", "ista")
GOAL_MODELS = ("alista", "lista-cpss", "hyperlista")  # the models the goals name
OPEN_L2O = {"alista": -78.0, "lista-cpss": -63.0, "lista": -35.0}  # published: 256×512, 16 layers, noise-free
GOAL_DB = {"alista": -60.0, "lista-cpss": -50.0}  # noise-free NMSE goals
GOAL_HYPER_GAP = 3.0  # HyperLISTA within 3 dB of ALISTA
GOAL_CPU_MIN = 30.0  # preparation under 30 CPU-minutes
GOAL_FISTA_RATIO = 100  # FISTA needs ≥ 100× the layers
GOAL_FLOOR_GAP = 1.0  # SNR 40: within 1 dB of the oracle floor


def name(method: str, snr: float) -> str:
    """The results name of ``method`` at SNR ``snr`` dB (``inf``: noise-free)."""
    return f"lista_{method}_snr{'inf' if math.isinf(snr) else int(snr)}"


def final(record: dict) -> float:
    """The test NMSE (dB, aggregate) after the last layer."""
    return record["nmse_db"][-1]


def clean_records() -> list[dict]:
    return [r for m in ORDER if (r := load_results(name(m, math.inf)))]


def noisy_records(snr: float = 40.0) -> list[dict]:
    """The SNR-``snr`` records: trained models, the noise-free model transferred, the refit
    and the LASSO reference, in table order."""
    return [r for m in (*ORDER, "lasso") for n in (name(m, snr), f"{name(m, snr)}_transfer", f"{name(m, snr)}_refit")
            if (r := load_results(n))]


def command(record: dict) -> str:
    """The command that produced ``record`` (the reference estimators record their own)."""
    if "command" in record:
        return record["command"]
    snr = "inf" if math.isinf(record["snr_db"]) else f"{record['snr_db']:g}"
    if "noise-free" in record["method"]:
        return f"transfer --method {record['method'].split()[0]} --snr {snr}"
    return f"train --method {record['method']} --snr {snr}"


def settings_text(record: dict) -> str:
    """The settings column: λ, the debiasing thresholds, HyperLISTA's search or the training budget."""
    s = record["settings"]
    if "lam" in s:
        return f"λ={s['lam']} (best on validation)"
    if "threshold" in s:
        plain = s["plain_refit"]
        return (f"HyperLISTA (c_θ={s['c_theta']:.3g}, c_β={s['c_beta']:.3g}, c_p={s['c_p']:.3g}), then least squares "
                f"on S = {{i : \\|x̂_i\\| > {s['threshold']:g}}}, drop \\|z_i\\| ≤ {s['prune']:g}, least squares again "
                f"(best on validation; one stage alone, t = {plain['threshold']:g}: {plain['test_nmse_db']:.2f} dB)")
    if "c_theta" in s:
        g = s.get("search")
        how = (f"grid {g['points']}³ × {g['rounds']} rounds + {g['local_evals']} Nelder–Mead evaluations on "
               f"{g['validation_samples']} validation samples" if g else "grid search")
        return f"c_θ={s['c_theta']:.3g}, c_β={s['c_beta']:.3g}, c_p={s['c_p']:.3g} ({how})"
    c = s["config"]
    init = s["model_options"].get("init")
    scalar = "" if c.get("scalar_lr") is None else f" (thresholds {c['scalar_lr']:g})"
    return (f"lr {c['lr']:g}{scalar}, batch {c['batch_size']}, ≤{c['max_steps']} steps/stage, {s['steps']} steps"
            + (f", init {init}" if init else "") + ("" if s["completed"] else ", time limit hit"))


def machines(records: list[tuple[str, dict]]) -> list[str]:
    """One line per machine: the machine and the runs it produced."""
    runs: dict[str, list[str]] = {}
    for label, r in records:
        runs.setdefault(r.get("machine", "not recorded"), []).append(label)
    return [f"- {m}: {', '.join(labels)}" for m, labels in runs.items()]


def fista_targets(clean: list[dict], fista_iters: dict | None) -> dict[str, dict]:
    """Method -> {"continuation" | "fixed": (iterations, schedule)}: the fewest FISTA
    iterations of each schedule kind that reach the method's last-layer NMSE."""
    if not fista_iters:
        return {}
    return {r["method"]: {kind: iterations_to_reach(
        {run: c for run, c in fista_iters["curves"].items() if run.startswith(kind)}, final(r))
        for kind in ("continuation", "fixed")} for r in clean if r["method"] not in ("fista", "ista")}


def ratio_range(targets: dict, kind: str, layers: int) -> tuple[float, float] | None:
    """(min, max) of FISTA iterations / layers over the goal models that FISTA reached."""
    r = [t[kind][0] / layers for m, t in targets.items() if t[kind][0] and m in GOAL_MODELS]
    return (min(r), max(r)) if r else None


def match_cell(target: tuple[int | None, str | None], layers: int, max_iters: int) -> str:
    its, run = target
    return f"{its} (×{its / layers:.0f}; {run})" if its else f"> {max_iters} (×>{max_iters // layers})"


def noise_free_table(clean: list[dict], targets: dict, max_iters: int) -> str:
    rows = []
    for r in clean:
        t, ref, layers = targets.get(r["method"]), OPEN_L2O.get(r["method"]), r["layers"]
        rows.append([r["method"], f"{final(r):.2f}", f"{r['nmse_db_per_sample'][-1]:.2f}",
                     f"{r['prepare_cpu_s']:.0f} / {r['prepare_time_s']:.0f}",
                     match_cell(t["continuation"], layers, max_iters) if t else "—",
                     match_cell(t["fixed"], layers, max_iters) if t else "—", "" if ref is None else ref,
                     settings_text(r)])
    return table(["method", "test NMSE dB (aggregate)", "per-sample mean dB", "prep. CPU s / wall s",
                  "FISTA iterations to match, λ continuation", "same, best fixed λ", "Open-L2O (256×512)",
                  "settings"], rows)


def section_noise_free() -> str | None:
    clean = clean_records()
    if not clean:
        return None
    fista_iters = load_results("lista_fista_iters")
    targets = fista_targets(clean, fista_iters)
    first = clean[0]
    runs = [(f"{r['method']} at SNR inf", r) for r in clean] + [(f"{r['method']} at SNR 40", r)
                                                                  for r in noisy_records()]
    lines = ["Commands (`python benchmarks/bench_lista.py ...`):", "", "```",
             *[command(r) for r in clean], *[command(r) for r in noisy_records()],
             *(["fista"] if fista_iters else []), "```", "", "Machines:", "",
             *machines(runs + ([("FISTA iteration curves", fista_iters)] if fista_iters else [])), "",
             f"Problem: A {first['m']}×{first['n']} (seed {first['seed']}), {first['layers']} layers, "
             f"{first['test_size']} test samples.", "", noise_free_table(clean, targets, (fista_iters or {}).get(
                 "max_iters", 0))]
    if fista_iters:
        best = table(["FISTA schedule", "best NMSE dB", "iterations run"],
                     [[run, f"{min(c):.1f}", len(c)] for run, c in fista_iters["curves"].items()])
        lines += ["", f"FISTA on the same {fista_iters['test_samples']} test samples, from x = 0:", "", best]
    grid = [(r, n) for n in (name("hyperlista", math.inf), name("hyperlista", 40.0))
            if (r := load_results(n)) and "grid_only_test_nmse_db" in r]
    if grid:
        lines += ["", "hyperlista, grid phase of the search alone (before Nelder–Mead): " + "; ".join(
            f"SNR {r['snr_db']:g}: {r['grid_only_test_nmse_db']:.2f} dB" for r, _ in grid) + "."]
    return "\n".join(lines)


def section_snr40() -> str | None:
    noisy = noisy_records()
    if not noisy:
        return None
    rows = [[r["method"], f"{final(r):.2f}", f"{r['noise_floor_db']:.2f}", f"{final(r) - r['noise_floor_db']:.2f}",
             f"{r['prepare_cpu_s']:.0f} / {r['prepare_time_s']:.0f}", settings_text(r)] for r in noisy]
    lines = [table(["method", "test NMSE dB", "noise floor dB (oracle support LS)", "gap dB", "prep. CPU s / wall s",
                    "settings"], rows)]
    refit = next((r for r in noisy if "noise_std" in r), None)
    if refit is not None:
        lines += ["", f"Measurement noise std at this SNR: {refit['noise_std']:.2g}."]
    return "\n".join(lines)


def sections() -> dict[str, str]:
    """Block name -> markdown, for every block whose results exist."""
    blocks = {"lista_noise_free": section_noise_free(), "lista_snr40": section_snr40()}
    return {k: f'<a id="{k}"></a>\n\n{v}' for k, v in blocks.items() if v is not None}


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def noise_free_goals(clean: dict[str, dict], targets: dict) -> list[Goal]:
    out = []
    for m, limit in GOAL_DB.items():
        if m in clean:
            out.append(Goal(AREA, f"{m} ≤ {limit:g} dB noise-free", f"{final(clean[m]):.2f} dB",
                            verdict(final(clean[m]) <= limit), "lista_noise_free"))
    if "hyperlista" in clean and "alista" in clean:
        gap = final(clean["hyperlista"]) - final(clean["alista"])
        out.append(Goal(AREA, f"hyperlista (non-oracle) within {GOAL_HYPER_GAP:g} dB of alista", f"{gap:+.2f} dB",
                        verdict(gap <= GOAL_HYPER_GAP), "lista_noise_free"))
    prepared = [(m, clean[m]["prepare_cpu_s"] / 60) for m in GOAL_MODELS if m in clean]
    if prepared:
        out.append(Goal(AREA, f"{', '.join(m for m, _ in prepared)} each prepared in < {GOAL_CPU_MIN:g} CPU-minutes",
                        " / ".join(f"{v:.1f}" for _, v in prepared) + " CPU-min (one thread)",
                        verdict(all(v < GOAL_CPU_MIN for _, v in prepared)), "lista_noise_free"))
    layers = next(iter(clean.values()))["layers"]
    cont, fixed = ratio_range(targets, "continuation", layers), ratio_range(targets, "fixed", layers)
    if cont:
        extra = f" (best fixed λ: {fixed[0]:.0f}–{fixed[1]:.0f}×)" if fixed else ""
        out.append(Goal(AREA, f"FISTA with λ continuation needs ≥ {GOAL_FISTA_RATIO}× the layers to match the "
                              "unrolled models", f"{cont[0]:.0f}–{cont[1]:.0f}×{extra}",
                        verdict(cont[0] >= GOAL_FISTA_RATIO), "lista_noise_free"))
    return out


def snr40_goals(noisy: list[dict]) -> list[Goal]:
    out = []
    models = [r for r in noisy if "command" not in r and r["method"] not in ("fista", "ista")]
    if models:
        gaps = [(r["method"], final(r) - r["noise_floor_db"]) for r in models]
        out.append(Goal(AREA, f"SNR 40: unrolled models within {GOAL_FLOOR_GAP:g} dB of the oracle-support floor",
                        "; ".join(f"{m} {g:+.2f} dB" for m, g in gaps),
                        verdict(any(g <= GOAL_FLOOR_GAP for _, g in gaps)), "lista_snr40"))
    for r in noisy:
        if r.get("command", "").startswith("refit"):
            gap = final(r) - r["noise_floor_db"]
            out.append(Goal(AREA, f"SNR 40: {r['method']} (y and A only) within {GOAL_FLOOR_GAP:g} dB of the floor",
                            f"{gap:+.2f} dB", verdict(gap <= GOAL_FLOOR_GAP), "lista_snr40"))
    return out


def goals() -> list[Goal]:
    clean = {r["method"]: r for r in clean_records()}
    targets = fista_targets(list(clean.values()), load_results("lista_fista_iters"))
    return (noise_free_goals(clean, targets) if clean else []) + snr40_goals(noisy_records())
