"""The experiment definitions of ``bench_headline.py`` (``experiments/headline.toml``) with the
shared MNIST-1D protocol (``experiments/tickets_mnist1d.toml``), as one frozen object that the
runs take as their first argument."""

from __future__ import annotations

from dataclasses import dataclass, field

from tickets_protocol import EXPERIMENTS, Mnist1dSetup, load_setup

from maskopt.config import read_toml


@dataclass(frozen=True)
class Headline:
    mnist1d: Mnist1dSetup
    targets: tuple[float, ...]
    baselines: tuple[str, ...]
    short_imp: tuple[str, ...]
    spread: tuple[str, ...]
    selection_methods: tuple[str, ...]
    validation_samples: int
    tune_trials: tuple[int, ...]
    variants: dict  # key -> (Budget keywords, results / section name, the section's sentence)
    tune_base: dict
    kdlts: dict  # KD-LTS base settings (tune_base with the first tuning's choice)
    first_tuning: dict  # targets, budget, configs
    tunings: dict  # key -> list of overrides
    kdimp_base: dict
    kdimp: dict  # kd-imp / imp-short settings (kdimp_base with the KD-IMP tuning's choice)
    kdimp_tuning: dict  # trials, configs
    hierarchy_warm: dict
    digits: dict  # hidden, budget, protocol, kdimp, kdlts, imp_schedule
    quick: dict = field(default_factory=dict)  # the --quick overrides ({} for a real run)

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method of the tables, in their row order."""
        return ("kd-lts", "kd-imp", "imp", "imp-short", *self.baselines)

    def tune_spec(self, key: str) -> tuple[str, dict, dict]:
        """(bench, Budget keywords, base settings) of the tuning ``key`` ("uniform", "erk", "digits")."""
        if key == "digits":
            return "digits", self.digits["budget"], self.digits["kdlts"]
        return "mnist1d", self.variants[key][0], self.kdlts


def variant_budgets(setup: Mnist1dSetup) -> dict[str, dict]:
    """The shared protocol's budgets a variant names."""
    return {"imp": setup.budget, "erk": setup.erk}


def load_headline(quick: bool = False) -> Headline:
    """``experiments/headline.toml``; ``quick``: with its ``[quick]`` overrides."""
    cfg = read_toml(EXPERIMENTS / "headline.toml")
    setup = load_setup(quick=quick)
    q = cfg["quick"] if quick else {}
    budgets = variant_budgets(setup)
    digits = dict(cfg["digits"])
    sched = digits["imp_schedule"]
    digits["imp_schedule"] = [1 - sched["keep"] ** k for k in range(1, sched["geometric_rounds"] + 1)] + sched["tail"]
    digits["hidden"] = q.get("digits_hidden", digits["hidden"])
    digits["protocol"] = {**digits["protocol"], **q.get("digits_protocol", {})}
    n = q.get("tune_configs")
    return Headline(
        mnist1d=setup, targets=tuple(q.get("targets", cfg["targets"])), baselines=tuple(cfg["baselines"]),
        short_imp=tuple(cfg["short_imp"]), spread=tuple(cfg["spread"]),
        selection_methods=tuple(cfg["selection_methods"]), validation_samples=cfg["validation_samples"],
        tune_trials=tuple(q.get("trials", cfg["tune_trials"])),
        variants={k: (budgets[v["budget"]], v["name"], v["text"]) for k, v in cfg["variants"].items()},
        tune_base=cfg["tune_base"], kdlts={**cfg["tune_base"], **cfg["kdlts"]},
        first_tuning={**cfg["first_tuning"], "configs": cfg["first_tuning"]["configs"][:n]},
        tunings={k: v[:n] for k, v in cfg["tunings"].items()},
        kdimp_base=cfg["kdimp_base"], kdimp={**cfg["kdimp_base"], **cfg["kdimp"]},
        kdimp_tuning={**cfg["kdimp_tuning"], "configs": cfg["kdimp_tuning"]["configs"][:n],
                      "trials": q.get("trials", cfg["kdimp_tuning"]["trials"])},
        hierarchy_warm={**cfg["hierarchy_warm"], **q.get("hierarchy_warm", {})}, digits=digits, quick=q,
    )
