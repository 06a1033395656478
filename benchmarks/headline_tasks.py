"""The runs of ``bench_headline.py``: teachers, the masks of every method, the tickets of one
seed, the objective study and the validation-split tunings (each returns result rows). Every
function takes the experiment definitions (:class:`headline_config.Headline`) first."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from headline_config import Headline
from tickets_protocol import all_params, selection, student, ticket
from tickets_tasks import imp_erk_task, run_trial

import maskopt as mo
from maskopt.baselines import ImpOptions, ImpRound, iterative_magnitude_pruning, problem_trainer
from maskopt.train import Trainer, train


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def steps_of(result) -> float:
    """A training run's compute in steps of 100 samples (a pass over digits' 1347 samples in
    batches of 100 is 13.47 of them, not its 14 optimizer steps), the unit of every method."""
    return result.samples / 100


def train_ensemble(data: mo.data.Dataset, cfg: dict, trial: int) -> tuple[list[torch.nn.Module], float, list]:
    """The teachers of ``cfg`` trained dense on ``data`` (seeds 1000 + 10·trial + i; Adam,
    batch 100 shuffled): (models, training steps of 100 samples, their final held-out accuracies)."""
    models, spent, accs = [], 0.0, []
    for i, spec in enumerate(cfg["teachers"]):
        name, kwargs = (spec, {}) if isinstance(spec, str) else spec
        seed = 1000 + 10 * trial + i
        torch.manual_seed(seed)
        result = train(mo.models.create(name, **kwargs), data, steps=cfg["teacher_steps"], batch_size=100,
                       lr=cfg["teacher_lr"], shuffle=True, seed=seed, eval_every=cfg["teacher_steps"],
                       verbose=False)
        models.append(result.model.eval())
        spent += steps_of(result)
        accs.append(result.final("test_acc"))
    return models, spent, accs


def teacher_cost(t_steps: float, teachers: list, data: mo.data.Dataset) -> float:
    """The teachers' training steps plus their forward passes over the training inputs, in steps of 100."""
    return t_steps + len(teachers) * data.x.shape[0] / 100


def evaluations(steps: int, every: int) -> int:
    """Hard-mask evaluations run_stage makes in a stage of ``steps`` mini-batch steps."""
    return sum(1 for s in range(steps) if s == steps - 1 or (s + 1) % every == 0)


def kdlts_masks(init, names, teachers, data: mo.data.Dataset, sparsity: float, cfg: dict, trial: int, budget: dict):
    """KD-LTS mask of ``init`` at ``sparsity``: (masks, search compute in steps of 100, result)."""
    prob = mo.DistillProblem(init, teachers, data.x, mo.Budget(sparsity=sparsity, **budget), loss="kl",
                             temperature=cfg["temperature"], labels=data.y if cfg["alpha"] > 0 else None,
                             alpha=cfg["alpha"], params=names)
    res = mo.solve(prob, method="hierarchy", steps=cfg["steps"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                   eval_every=cfg["eval_every"], seed=trial, device="cpu", verbose=False,
                   **{k: cfg[k] for k in ("init", "beta1", "lookahead", "lookahead_lr") if k in cfg})
    n = data.x.shape[0]
    evals = 3 * evaluations(cfg["steps"], cfg["eval_every"])  # each: k inner steps + the loss, per sample
    # + mo.solve's final objective + the teachers' targets
    samples = res.stats["gradient_samples"] + evals * n * (cfg.get("lookahead", 0) + 1) + n + len(teachers) * n
    return res.masks, samples / 100, res


def baseline_masks(method: str, init, names, data: mo.data.Dataset, sparsity: float, trial: int, budget: dict):
    """(masks, compute in steps of 100) of a pruning-at-init baseline (SNIP: cross-entropy on the labels)."""
    prob = mo.DistillProblem(init, [init], data.x, mo.Budget(sparsity=sparsity, **budget), loss="kl",
                             labels=data.y, alpha=1.0, params=names)  # alpha 1: the teacher plays no part
    res = mo.solve(prob, method=method, **({"seed": trial} if method == "random" else {}))
    return res.masks, res.stats["gradient_samples"] / 100


def short_imp_masks(method: str, init, names, teachers, data: mo.data.Dataset, sparsities: dict, cfg: dict,
                    trial: int, budget: dict) -> list[tuple[float, object, float]]:
    """``"kd-imp"`` (rounds trained on the teachers' ensemble: the DistillProblem objective) or
    ``"imp-short"`` (on the labels): one chain of ``cfg["rounds"]`` rounds of
    ``cfg["round_steps"]`` steps on a geometric density schedule to the largest of
    ``sparsities`` (target -> sparsity; the targets are rounds of it too), magnitude pruning of
    each scope unit, rewinding to init. Returns (target, masks, chain compute in steps of 100
    up to that round) for every target."""
    final = max(sparsities.values())
    geometric = 1.0 - np.geomspace(1.0, 1.0 - final, cfg["rounds"] + 1)[1:]
    schedule = sorted({round(float(s), 12) for s in [*geometric, *sparsities.values()]})
    prob = mo.DistillProblem(init, teachers if method == "kd-imp" else [init], data.x,
                             mo.Budget(sparsity=final, **budget), loss="kl", temperature=cfg["temperature"],
                             labels=data.y, params=names)
    opts = ImpOptions(batch_size=cfg["batch_size"], lr=cfg["lr"], seed=trial,
                      train_on="problem" if method == "kd-imp" else "labels")
    trainer = problem_trainer(prob, opts)
    trainer.options = {**{k: v for k, v in trainer.options.items() if k != "epochs"}, "steps": cfg["round_steps"]}
    spent, out = 0.0, []
    for item in iterative_magnitude_pruning(trainer, prob.allocation, schedule=schedule):
        result = item.result if isinstance(item, ImpRound) else item
        spent += steps_of(result)
        if isinstance(item, ImpRound) and item.round <= len(schedule):
            out += [(t, item.masks, spent) for t, s in sparsities.items() if abs(schedule[item.round - 1] - s) < 1e-9]
    return out


def sparsity_of(masks) -> float:
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def blind_classes(masks) -> int:
    """Output classes whose row of the last weight tensor keeps no weight: their logit ignores the input."""
    last = masks[[name for name in masks if name.endswith("weight")][-1]]
    return int((last.reshape(last.shape[0], -1).sum(1) == 0).sum())


def row(bench, trial, method, target, result, steps, masks=None, **extra) -> dict:
    return {"bench": bench, "trial": trial, "method": method, "sparsity": target,
            "actual sparsity": None if masks is None else sparsity_of(masks),
            "blind classes": None if masks is None else blind_classes(masks),
            "max test acc": result.best("test_acc"), "train steps": steps, **selection(result), **extra}


def short_imp_rows(h: Headline, trial: int, method: str, targets: tuple, cfg: dict, budget: dict,
                   protocol: dict, data, init, names) -> list[dict]:
    """kd-imp / imp-short rows of one seed: one chain through every target under a uniform
    allocation, else one chain per target (a chain's rounds keep the final allocation's floors)."""
    teachers, charged, extra = None, 0.0, {}
    if method == "kd-imp":
        teachers, t_steps, accs = train_ensemble(data, cfg, trial)
        charged, extra = teacher_cost(t_steps, teachers, data), {"teacher acc": accs}
    sparsities = {t: h.mnist1d.sparsity(t) for t in targets}
    uniform = budget.get("allocation", "uniform") == "uniform"
    chains = [sparsities] if uniform else [{t: s} for t, s in sparsities.items()]
    rows, t0 = [], time.perf_counter()
    for chain in chains:
        for target, masks, spent in short_imp_masks(method, init, names, teachers, data, chain, cfg, trial, budget):
            result = ticket(init, masks, data, protocol)
            steps = charged + spent + steps_of(result)
            rows.append(row("mnist1d", trial, method, target, result, steps, masks, **extra))
            log(f"mnist1d trial {trial} {method} {target}: {result.best():.1f} ({steps:.0f} steps, "
                f"{time.perf_counter() - t0:.0f} s)")
    return rows


def mnist1d_task(h: Headline, trial: int, method: str, targets: tuple, cfg: dict, budget: dict,
                 protocol: dict | None = None) -> list[dict]:
    """One seed of one method on MNIST-1D at every target sparsity (budgets ``Budget(s, **budget)``);
    tickets trained with ``protocol`` (default the shared one; with ``validation`` the rows carry
    ``selection``'s fields)."""
    torch.set_num_threads(1)
    protocol = protocol or h.mnist1d.protocol
    data = mo.data.mnist1d()
    init = student(h.mnist1d, trial)
    names = all_params(init)
    if method in h.short_imp:
        return short_imp_rows(h, trial, method, targets, cfg, budget, protocol, data, init, names)
    if method == "kd-lts":
        teachers, t_steps, accs = train_ensemble(data, cfg, trial)
    rows = []
    for target in targets:
        s, t0 = h.mnist1d.sparsity(target), time.perf_counter()
        if method == "kd-lts":
            masks, spent, res = kdlts_masks(init, names, teachers, data, s, cfg, trial, budget)
            extra = {"teacher steps": t_steps, "search steps": spent, "teacher acc": accs,
                     "objective": res.objective, "search seconds": time.perf_counter() - t0}
            spent += t_steps
        else:
            (masks, spent), extra = baseline_masks(method, init, names, data, s, trial, budget), {}
        result = ticket(init, masks, data, protocol)
        rows.append(row("mnist1d", trial, method, target, result, spent + steps_of(result), masks, **extra))
        log(f"mnist1d trial {trial} {method} {target}: {result.best():.1f} ({spent + steps_of(result):.0f} steps)")
    return rows


def objective_task(h: Headline, trial: int, target: float, lookahead: dict) -> list[dict]:
    """The KD-LTS objective (KL of the masked student at init to the teachers, over the training
    inputs) of several methods' masks at one sparsity, beside their tickets; ``lookahead``: the
    per-layer tuning's KD-LTS settings, also scored (and kd-imp's masks after the relaxation
    hierarchy warm-started from them)."""
    torch.set_num_threads(1)
    data, init = mo.data.mnist1d(), student(h.mnist1d, trial)
    names, s, budget = all_params(init), h.mnist1d.sparsity(target), h.mnist1d.budget
    teachers, _, _ = train_ensemble(data, h.kdimp, trial)
    prob = mo.DistillProblem(init, teachers, data.x, mo.Budget(sparsity=s, **budget), loss="kl",
                             temperature=h.kdlts["temperature"], params=names)
    plain = {**h.kdlts, **h.quick.get("kdlts", {})}
    candidates = {"kd-lts": kdlts_masks(init, names, teachers, data, s, plain, trial, budget)[0],
                  "kd-lts lookahead": kdlts_masks(init, names, teachers, data, s, lookahead, trial, budget)[0]}
    kdimp = {**h.kdimp, **h.quick.get("kdimp", {})}
    candidates["kd-imp"] = next(m for _, m, _ in short_imp_masks("kd-imp", init, names, teachers, data, {target: s},
                                                               kdimp, trial, budget))
    candidates["kd-imp + hierarchy"] = mo.solve(prob, method="hierarchy", warm_start=candidates["kd-imp"],
                                                seed=trial, verbose=False, **h.hierarchy_warm).masks
    for method in h.baselines:
        candidates[method] = baseline_masks(method, init, names, data, s, trial, budget)[0]
    rows = []
    for method, masks in candidates.items():
        rows.append({"trial": trial, "sparsity": target, "method": method, "objective": mo.evaluate(prob, masks),
                     "blind classes": blind_classes(masks),
                     "max test acc": ticket(init, masks, data, h.mnist1d.protocol).best()})
        log(f"objective trial {trial} {target} {method}: {rows[-1]['objective']:.0f}, {rows[-1]['max test acc']:.1f}")
    return rows


def digits_student(h: Headline, trial: int) -> torch.nn.Module:
    torch.manual_seed(42 + trial)
    return mo.models.create("mlp", in_features=64, hidden=h.digits["hidden"], num_classes=10)


def digits_imp_rows(h: Headline, trial: int, targets: tuple, data, names) -> list[dict]:
    """The dense row and IMP's rows on digits: 20 % per round with rounds placed at the targets."""
    schedule = [s for s in h.digits["imp_schedule"] if s <= max(targets) + 1e-9]
    init = digits_student(h, trial)
    trainer = Trainer(digits_student(h, trial), data, names, options=h.digits["protocol"])
    final = mo.Budget(sparsity=schedule[-1], **h.digits["budget"]).allocate(
        {n: tuple(p.shape) for n, p in init.named_parameters()})
    steps, rows = 0, []
    for item in iterative_magnitude_pruning(trainer, final, schedule=schedule):
        result = item.result if isinstance(item, ImpRound) else item
        steps += steps_of(result)
        if not isinstance(item, ImpRound):
            rows.append(row("digits", trial, "dense", 0.0, result, steps))
            continue
        for target in targets:  # imp_caps appends the budget's own caps as one more round when rounding differs
            if item.round <= len(schedule) and abs(schedule[item.round - 1] - target) < 1e-9:
                rows.append(row("digits", trial, "imp", target, result, steps, item.masks))
    log(f"digits trial {trial} imp done: " + ", ".join(f"{r['sparsity']}: {r['max test acc']:.1f}" for r in rows))
    return rows


def digits_task(h: Headline, trial: int, targets: tuple, cfg: dict) -> list[dict]:
    """One seed of every method (IMP included) on digits."""
    torch.set_num_threads(1)
    data, init = mo.data.digits(), digits_student(h, trial)
    names, budget, protocol = all_params(init), h.digits["budget"], h.digits["protocol"]
    rows = digits_imp_rows(h, trial, targets, data, names)
    teachers, t_steps, accs = train_ensemble(data, cfg, trial)
    for target in targets:
        for method in ("kd-lts", *h.baselines):
            if method == "kd-lts":
                masks, spent, _ = kdlts_masks(init, names, teachers, data, target, cfg, trial, budget)
                spent, extra = spent + t_steps, {"teacher acc": accs}
            else:
                (masks, spent), extra = baseline_masks(method, init, names, data, target, trial, budget), {}
            result = ticket(init, masks, data, protocol)
            rows.append(row("digits", trial, method, target, result, spent + steps_of(result), masks, **extra))
    kcfg = {**h.digits["kdimp"], **{k: cfg[k] for k in ("teachers", "teacher_steps", "teacher_lr")}}
    for method in h.short_imp:
        charged = teacher_cost(t_steps, teachers, data) if method == "kd-imp" else 0.0
        for target, masks, spent in short_imp_masks(method, init, names, teachers, data, {t: t for t in targets},
                                                    kcfg, trial, budget):
            result = ticket(init, masks, data, protocol)
            rows.append(row("digits", trial, method, target, result, charged + spent + steps_of(result), masks))
    log(f"digits trial {trial} done")
    return rows


def validation_split(h: Headline, bench: str = "mnist1d") -> mo.data.Dataset:
    """The tuning split of ``bench``'s training data: MNIST-1D's first 3200 training samples to
    train on and the last 800 held out; digits' first 1078 and the last 269 (a fifth, rounded down)."""
    full = mo.data.mnist1d() if bench == "mnist1d" else mo.data.digits()
    n = full.x.shape[0] - (h.validation_samples if bench == "mnist1d" else full.x.shape[0] // 5)
    return mo.data.Dataset(f"{bench}-val", full.x[:n], full.y[:n], full.x[n:], full.y[n:], 10)


def tune_kdimp_task(h: Headline, index: int, overrides: dict, trial: int) -> list[dict]:
    """Validation score of one KD-IMP configuration (one trial, 95 / 98 / 99 %)."""
    torch.set_num_threads(1)
    data, init = validation_split(h), student(h.mnist1d, trial)
    cfg = {**h.kdimp_base, **overrides, **h.quick.get("kdimp", {})}
    teachers, t_steps, _ = train_ensemble(data, cfg, trial)
    charged, rows = teacher_cost(t_steps, teachers, data), []
    sparsities = {t: h.mnist1d.sparsity(t) for t in h.mnist1d.erk_targets}
    for target, masks, spent in short_imp_masks("kd-imp", init, all_params(init), teachers, data, sparsities, cfg,
                                                trial, h.mnist1d.budget):
        result = ticket(init, masks, data, h.mnist1d.protocol)
        steps = charged + spent + steps_of(result)
        imp_steps = (h.mnist1d.retrain[target] + 1) * h.mnist1d.protocol["steps"]
        rows.append({"config": index, "trial": trial, "overrides": json.dumps(overrides), "sparsity": target,
                     "val acc": result.best(), "train steps": steps, "× IMP compute": round(steps / imp_steps, 4)})
        log(f"tune kd-imp config {index} trial {trial} {overrides} {target}: val {result.best():.1f}")
    return rows


def tune_reference_task(h: Headline, targets: tuple, budget: dict) -> list[dict]:
    """SynFlow and SNIP on the validation split: the first tuning's reference rows."""
    torch.set_num_threads(1)
    data, init = validation_split(h), student(h.mnist1d, 0)
    rows = []
    for target in targets:
        for method in ("synflow", "snip"):
            masks, spent = baseline_masks(method, init, all_params(init), data, h.mnist1d.sparsity(target), 0, budget)
            result = ticket(init, masks, data, h.mnist1d.protocol)
            rows.append({"config": method, "sparsity": target, "val acc": result.best(),
                         "train steps": spent + steps_of(result)})
    return rows


def tune_task(h: Headline, index: int, overrides: dict, targets: tuple, budget: dict, trial: int, base: dict,
              bench: str = "mnist1d") -> list[dict]:
    """Validation score of one KD-LTS configuration (``base`` with ``overrides``) on ``bench``
    (:func:`validation_split`: its held-out part is the "test" split of every training run here)."""
    torch.set_num_threads(1)
    data = validation_split(h, bench)
    cfg = {**base, **overrides, **h.quick.get("kdlts" if bench == "mnist1d" else "digits_kdlts", {})}
    if bench == "mnist1d":
        init, protocol = student(h.mnist1d, trial), h.mnist1d.protocol
    else:
        init, protocol = digits_student(h, trial), h.digits["protocol"]
    names, rows = all_params(init), []
    teachers, t_steps, accs = train_ensemble(data, cfg, trial)
    for target in targets:
        s = h.mnist1d.sparsity(target)
        t0 = time.perf_counter()
        masks, spent, res = kdlts_masks(init, names, teachers, data, s, cfg, trial, budget)
        result = ticket(init, masks, data, protocol)
        rows.append({"config": index, "trial": trial, "overrides": json.dumps(overrides), "sparsity": target,
                     "val acc": result.best(), "teacher val acc": float(np.mean(accs)),
                     "train steps": t_steps + spent + steps_of(result), "objective": res.objective,
                     "seconds": time.perf_counter() - t0})
        log(f"tune config {index} trial {trial} {overrides} {target}: val {result.best():.1f} teachers {accs}")
    return rows


def selection_imp_task(h: Headline, trial: int, allocation: str, target: float | None, protocol: dict) -> list[dict]:
    """maskopt's IMP (the shared protocol) from initialization ``trial``, its tickets trained with
    ``protocol``'s validation split: under ERK one chain to ``target``, else the per-layer chain,
    whose rows at the ERK goal sparsities are kept."""
    torch.set_num_threads(1)
    if allocation == "erk":
        rows = [imp_erk_task(h.mnist1d, trial, target, protocol)]
    else:
        rows = [r for r in run_trial(h.mnist1d, trial, mo.data.mnist1d(), ["imp"], protocol)
                if r["method"] == "imp" and r["sparsity"] in h.mnist1d.erk_targets]
    return [{"bench": "mnist1d", **r} for r in rows]
