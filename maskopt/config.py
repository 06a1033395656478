"""TOML experiment configs for ``maskopt solve`` / ``maskopt compare``: validation and
building the problem they describe. Every section and key is documented in
``examples/README.md``; an unknown key or a bad value raises :class:`ConfigError` naming it
and what is allowed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from maskopt.report import atomic_path

DATASETS = ("digits", "mnist1d", "planted", "mnist", "cifar10")
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "data": {"name": (str,), "root": (str,), "samples": (int,), "seed": (int,)},
    "student": {"model": (str,), "kwargs": (dict,), "seed": (int,)},
    "teachers": {"models": (list,), "seeds": (list,), "epochs": (int, float), "lr": (int, float),
                 "batch_size": (int,), "path": (str,)},
    "budget": {"sparsity": (int, float), "density": (int, float), "k": (int,), "scope": (str,),
               "allocation": (str,)},
    "problem": {"loss": (str,), "temperature": (int, float), "alpha": (int, float)},
    "solve": {"method": (str,), "options": (dict,)},
    "compare": {"methods": (list,), "seeds": (list,), "options": (dict,), "certify": (bool,),
                "certify_time_limit": (int, float)},
    "ticket": {"epochs": (int, float), "steps": (int,), "lr": (int, float), "batch_size": (int,),
               "optimizer": (str,), "weight_decay": (int, float)},
    "model": {"model": (str,), "kwargs": (dict,), "seed": (int,), "epochs": (int, float), "steps": (int,),
              "lr": (int, float), "batch_size": (int,), "path": (str,)},
    "prune": {"method": (str,), "options": (dict,), "calibration": (int,), "loss": (str,), "inputs": (str,),
              "refit": (bool,)},
}
REQUIRED = ("data", "student", "teachers", "budget")
PRUNE_REQUIRED = ("data", "model", "budget", "prune")  # maskopt prune: a trained model, no student or teachers


class ConfigError(ValueError):
    """A config that cannot be run: the message names the key and what is allowed."""


def read_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; a missing file or a syntax error raises :class:`ConfigError` naming it."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None


def load(path: str | os.PathLike) -> dict:
    """Read and validate a TOML config (see :data:`SCHEMA`)."""
    config = read_toml(path)
    validate(config)
    return config


def validate(config: Mapping) -> None:
    """Raise :class:`ConfigError` for unknown sections/keys, wrong types, missing sections."""
    for section, body in config.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}]; allowed sections: {', '.join(SCHEMA)}.")
        if not isinstance(body, Mapping):
            raise ConfigError(f"[{section}] must be a table of keys; allowed keys: {', '.join(SCHEMA[section])}.")
        for key, value in body.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"unknown key {section}.{key}; allowed keys in [{section}]: "
                                  f"{', '.join(SCHEMA[section])}.")
            types = SCHEMA[section][key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                names = " or ".join(t.__name__ for t in types)
                raise ConfigError(f"{section}.{key} must be a {names}; got {value!r}.")
    pruning = "prune" in config
    missing = [s for s in (PRUNE_REQUIRED if pruning else REQUIRED) if s not in config]
    if missing:
        raise ConfigError(f"missing section(s) {', '.join(f'[{s}]' for s in missing)}; see examples/README.md.")
    name = config["data"].get("name")
    if name not in DATASETS:
        raise ConfigError(f"data.name must be one of {', '.join(DATASETS)}; got {name!r}.")
    if name in ("mnist", "cifar10") and "root" not in config["data"]:
        raise ConfigError(f"data.name = {name!r} reads a local folder: set data.root to it.")
    if pruning:
        _validate_prune(config)
        return
    if "model" not in config["student"]:
        raise ConfigError("student.model is required: a name from maskopt.models.names().")
    for i, spec in enumerate(config["teachers"].get("models", [])):
        if not isinstance(spec, Mapping) or "model" not in spec or set(spec) - {"model", "kwargs"}:
            raise ConfigError(f"teachers.models[{i}] must be a table {{model = NAME, kwargs = {{...}}}}; got {spec!r}.")
    if "models" not in config["teachers"] and "path" not in config["teachers"]:
        raise ConfigError("[teachers] needs models = [...] to train, or path = to load a saved ensemble.")
    for key, uses in (("root", ("mnist", "cifar10")), ("seed", ("digits", "planted"))):
        if key in config["data"] and name not in uses:
            raise ConfigError(f"data.{key} applies to data.name = {' or '.join(map(repr, uses))}; "
                              f"{name!r} does not use it: remove it.")
    for section, key, kind in (("teachers", "seeds", int), ("compare", "seeds", int), ("compare", "methods", str)):
        values = config.get(section, {}).get(key, [])
        if any(not isinstance(v, kind) or isinstance(v, bool) for v in values):
            raise ConfigError(f"{section}.{key} must be a list of {kind.__name__}s; got {values!r}.")
    for section, key in (("teachers", "epochs"), ("ticket", "epochs"), ("compare", "certify_time_limit")):
        value = config.get(section, {}).get(key)
        if value is not None and not value > 0:
            raise ConfigError(f"{section}.{key} must be > 0; got {value}.")
    if {"epochs", "steps"} <= set(config.get("ticket", {})):
        raise ConfigError("give ticket.epochs or ticket.steps, not both.")
    if "path" in config["teachers"] and Path(config["teachers"]["path"]).is_dir():
        raise ConfigError(f"teachers.path {config['teachers']['path']} is a folder; name a file in it.")
    _validate_options(config)


def _validate_prune(config: Mapping) -> None:
    """The sections of ``maskopt prune``: [model] names a model to train (or a saved state
    dict to load), [prune] the method; [student], [teachers], [solve], [compare] do not apply."""
    extra = [s for s in config if s not in PRUNE_REQUIRED]
    if extra:
        raise ConfigError(f"maskopt prune takes sections {', '.join(f'[{s}]' for s in PRUNE_REQUIRED)}; "
                          f"remove {', '.join(f'[{s}]' for s in extra)}.")
    if "model" not in config["model"]:
        raise ConfigError("model.model is required: a name from maskopt.models.names().")
    if {"epochs", "steps"} <= set(config["model"]):
        raise ConfigError("give model.epochs or model.steps, not both.")
    if "method" not in config["prune"]:
        raise ConfigError("[prune] needs method = NAME (e.g. \"wanda\", \"obs\", \"swap\", \"exact\").")
    for key in NOT_IN_TOML:
        if key in config["prune"].get("options", {}):
            raise ConfigError(f"prune.options.{key} takes a Python object, which a TOML config cannot give; use "
                              "maskopt.prune_layerwise for it.")


NOT_IN_TOML = ("warm_start", "scores", "loader")  # options that take Python objects


def _validate_options(config: Mapping) -> None:
    """[solve.options] and [compare.options.METHOD] are tables of a method's options; compare's
    name methods in compare.methods (a typo would silently leave a method at its defaults)."""
    tables = [("solve.options", config.get("solve", {}).get("options", {}))]
    compare = config.get("compare", {})
    for method, table in compare.get("options", {}).items():
        if "methods" in compare and method not in compare["methods"]:
            raise ConfigError(f"compare.options.{method} names no method of compare.methods "
                              f"({', '.join(compare['methods'])}); fix the name or add the method.")
        if not isinstance(table, Mapping):
            raise ConfigError(f"compare.options.{method} must be a table of {method}'s options; got {table!r}.")
        tables.append((f"compare.options.{method}", table))
    for where, table in tables:
        for key in NOT_IN_TOML:
            if key in table:
                raise ConfigError(f"{where}.{key} takes a Python object (masks, scores or a DataLoader), which a "
                                  "TOML config cannot give; use the Python API (maskopt.solve) for it.")


def require(config: Mapping, command: str) -> None:
    """Refuse, before anything is trained, a config without the section ``command`` runs:
    ``[solve]`` with ``method`` for ``"solve"``, ``[compare]`` with ``methods`` for ``"compare"``."""
    import maskopt as mo

    key = "method" if command == "solve" else "methods"
    if key not in config.get(command, {}):
        example = "method = NAME" if command == "solve" else "methods = [...]"
        raise ConfigError(f"maskopt {command} needs [{command}] with {example}; methods: {', '.join(mo.methods())}")


@dataclass
class Experiment:
    """What a config describes: the data, the student at initialization, the teachers and the
    problem; ``ticket`` holds train_ticket options (with ``data``) or None."""

    data: object
    student: torch.nn.Module
    teachers: list[torch.nn.Module]
    problem: object
    ticket: dict | None


def build(config: Mapping, seed: int = 0, device: str = "cpu", verbose: bool = True) -> Experiment:
    """Load the data, build the student, train (or load) the teachers and build the
    :class:`~maskopt.DistillProblem`. ``seed`` is the default of every seed not set."""
    import maskopt as mo
    from maskopt.train import load_teachers, train_teachers

    data = _load_data(config, seed)
    student = _create(config, "student", data, seed)
    tc = config["teachers"]
    if "path" in tc and Path(tc["path"]).is_file():
        try:
            teachers = load_teachers(tc["path"])
        except ValueError as err:
            raise ConfigError(f"teachers.path: {err}") from None
    else:
        if "models" not in tc:
            raise ConfigError(f"teachers.path {tc['path']} does not exist and no teachers.models are given to train.")
        if "path" in tc and not Path(tc["path"]).parent.is_dir():
            raise ConfigError(f"teachers.path {tc['path']}: its folder does not exist; create it or name another.")
        try:
            with torch.random.fork_rng(devices=[]):  # a throw-away model: leave the global RNG as it was
                for i, t in enumerate(tc["models"]):
                    model = mo.models.create(t["model"], **t.get("kwargs", {}))
                    _check_fits(model, data.x, f"teachers.models[{i}]")
            teachers = train_teachers(
                data, [(t["model"], t.get("kwargs", {})) for t in tc["models"]], seeds=tc.get("seeds", [seed]),
                epochs=tc.get("epochs", 20), lr=tc.get("lr", 1e-3), batch_size=tc.get("batch_size", 128),
                path=tc.get("path"), device=device, verbose=verbose)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"[teachers]: {err}") from None
    try:
        budget = mo.Budget(**config["budget"])
    except (ValueError, TypeError) as err:
        raise ConfigError(f"[budget]: {err}") from None
    n = config["data"].get("samples", data.x.shape[0])
    if not 1 <= n <= data.x.shape[0]:
        raise ConfigError(f"data.samples must lie in [1, {data.x.shape[0]}]; got {n}.")
    pc = config.get("problem", {})
    try:
        problem = mo.DistillProblem(student, teachers, data.x[:n], budget, labels=data.y[:n], **pc)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"[problem]: {err}") from None
    ticket = None
    if "ticket" in config:  # validate() refuses epochs and steps together
        ticket = {"data": data, "device": device, **config["ticket"]}
        if "steps" in ticket:
            ticket["epochs"] = None
    return Experiment(data, student, teachers, problem, ticket)


@dataclass
class Pruning:
    """What a ``maskopt prune`` config describes: the data, the trained model, the
    calibration inputs, the budget and :func:`~maskopt.prune_layerwise`'s keyword options."""

    data: object
    model: torch.nn.Module
    calibration: torch.Tensor
    budget: object
    options: dict


def build_prune(config: Mapping, seed: int = 0, device: str = "cpu", verbose: bool = True) -> Pruning:
    """Load the data, train (or load from ``model.path``) the model and collect the options."""
    import maskopt as mo

    data = _load_data(config, seed)
    mc = config["model"]
    model = _create(config, "model", data, seed)
    path = Path(mc["path"]) if "path" in mc else None
    if path is not None and path.is_file():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
        except (RuntimeError, OSError) as err:
            raise ConfigError(f"model.path {path}: not a state dict of this model ({err}).") from None
    else:
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"model.path {path}: its folder does not exist; create it or name another.")
        steps = {"steps": mc["steps"], "epochs": None} if "steps" in mc else {"epochs": mc.get("epochs", 20)}
        mo.train(model, data, lr=mc.get("lr", 1e-3), batch_size=mc.get("batch_size", 128), device=device,
                 verbose=verbose, **steps)
        model.cpu()
        if path is not None:
            with atomic_path(path) as tmp:
                torch.save(model.state_dict(), tmp)
    try:
        budget = mo.Budget(**config["budget"])
    except (ValueError, TypeError) as err:
        raise ConfigError(f"[budget]: {err}") from None
    pc = dict(config["prune"])
    n = pc.pop("calibration", min(1000, data.x.shape[0]))
    if not 1 <= n <= data.x.shape[0]:
        raise ConfigError(f"prune.calibration must lie in [1, {data.x.shape[0]}]; got {n}.")
    return Pruning(data, model.eval(), data.x[:n], budget, pc)


def _create(config: Mapping, section: str, data, seed: int) -> torch.nn.Module:
    """The model of ``[section]`` (model, kwargs, seed), checked to take the data's inputs."""
    import maskopt as mo

    sc = config[section]
    try:
        model = mo.models.create(sc["model"], seed=sc.get("seed", seed), **sc.get("kwargs", {}))
        _check_fits(model, data.x, section)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"[{section}]: {err}") from None
    return model


def _load_data(config: Mapping, seed: int):
    import maskopt as mo

    dc = config["data"]
    name = dc["name"]
    if name == "digits":
        return mo.data.digits(seed=dc.get("seed", seed))
    if name == "mnist1d":
        return mo.data.mnist1d()
    if name == "planted":
        return mo.data.planted_classification(seed=dc.get("seed", seed))[0]
    return getattr(mo.data, name)(dc["root"])


def _check_fits(model: torch.nn.Module, x: torch.Tensor, where: str) -> None:
    """Raise ValueError when ``model`` cannot take inputs shaped like ``x`` (N, ...)."""
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(x[:2].to(next(model.parameters()).dtype))
    except RuntimeError as err:
        raise ValueError(f"{where} cannot take the data's inputs of shape {tuple(x.shape[1:])} per sample "
                         f"(check its kwargs, e.g. in_features): {err}") from None
    finally:
        model.train(training)
