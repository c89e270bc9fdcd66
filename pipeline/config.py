"""Stage parameters from defaults, a TOML file and ``--set stage.param=value``.

The TOML file has one table per stage (``[gradsal]\nsteps = 8``; ``[pool]\nmax_side = 1024``); a
``[run]`` table may hold the run options (pool, gt, priors, out, jobs, scheduler, device, threads:
:class:`pipeline.runner.RunOptions`). Precedence: defaults < file < ``--set`` (and command-line flags
over ``[run]``). Every unknown stage, unknown key or badly typed value is a :class:`ConfigError` that
names it; the ranges of the values are checked by the runner before a run starts
(:func:`pipeline.registry.param_problems`). An old stage name (``slic500``) still works, with a notice.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from pipeline import registry
from pipeline.runner import RUN_OPTION_KEYS

RUN_KEYS = set(RUN_OPTION_KEYS)


class ConfigError(ValueError):
    """A user error in the configuration: the message names the key and what is wrong."""


def _field_type(params_cls, name):
    hints = typing.get_type_hints(params_cls)
    return hints[name]


def _coerce(value: Any, tp, where: str):
    """Convert ``value`` (from TOML or a ``--set`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        items = value
        if isinstance(value, str):
            items = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else str
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def parse_set_option(text: str) -> tuple[str, str, str]:
    """Split ``stage.param=value``."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected STAGE.PARAM=VALUE")
    key, value = text.split("=", 1)
    stage, param = key.strip().split(".", 1)
    return stage, param, value.strip()


def build_params(
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    notices: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parameters of every registered stage, and the ``[run]`` options of the file.

    ``notices`` (optional) receives one line per deprecated stage name used.

    Returns
    -------
    params : dict
        Stage name -> params dataclass instance.
    run_options : dict
        The ``[run]`` table of the file (validated keys only).
    """
    stages = registry.all_stages()
    values: dict[str, dict[str, Any]] = {name: {} for name in stages}
    run_options: dict[str, Any] = {}

    def set_value(stage_name: str, key: str, raw: Any, where: str):
        if stage_name in registry.ALIASES:
            new = registry.canonical(stage_name)
            if notices is not None:
                notices.append(f"{where}: stage {stage_name} is now called {new}; the old name will be "
                               "removed in the next release")
            stage_name = new
        if stage_name not in stages:
            raise ConfigError(f"{where}: unknown stage {stage_name!r} (known: {', '.join(sorted(stages))})")
        field_names = {f.name for f in dataclasses.fields(stages[stage_name].params)}
        if key not in field_names:
            known = ", ".join(sorted(field_names)) or "none"
            raise ConfigError(f"{where}: unknown parameter {stage_name}.{key} (known: {known})")
        tp = _field_type(stages[stage_name].params, key)
        values[stage_name][key] = _coerce(raw, tp, f"{where}: {stage_name}.{key}")

    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
        for table, entries in data.items():
            if table == "run":
                if not isinstance(entries, dict):
                    raise ConfigError(f"{path}: [run] must be a table")
                for key, val in entries.items():
                    if key not in RUN_KEYS:
                        raise ConfigError(f"{path}: unknown key run.{key} (known: {', '.join(sorted(RUN_KEYS))})")
                    run_options[key] = val
                continue
            if not isinstance(entries, dict):
                raise ConfigError(f"{path}: {table!r} must be a table [{table}] of stage parameters")
            for key, val in entries.items():
                set_value(table, key, val, str(path))

    for text in overrides:
        stage_name, key, raw = parse_set_option(text)
        set_value(stage_name, key, raw, "--set")

    # A trainer guided by a prior map (ldps_fit) follows the prior of the stage it trains for
    # unless its own is set, so `--set ldps.prior=priors --set ldps.model=train` trains on --priors;
    # likewise a trainer follows the feature stage (lps.features) of the stage it trains for.
    for name, stage in stages.items():
        trainer = stages.get(stage.learned.trainer) if stage.learned is not None else None
        if trainer is None:
            continue
        for p in stage.prior_params + stage.feature_params:
            if (p in trainer.prior_params + trainer.feature_params and p in values[name]
                    and p not in values[trainer.name]):
                values[trainer.name][p] = values[name][p]
    # Likewise a prior-guided stage that another reads (crf_pseudo_gt, read by relearn and
    # relearn_fit) follows the reader's prior unless its own is set: the pseudo GT of the map promoted.
    for name, stage in stages.items():
        for dep in (d for d in stage.inputs if d in stages):
            for p in stage.prior_params:
                if p in stages[dep].prior_params and p in values[name] and p not in values[dep]:
                    values[dep][p] = values[name][p]

    params = {}
    for name, stage in stages.items():
        try:
            params[name] = stage.params(**values[name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"stage {name}: bad parameters ({exc})") from None
    return params, run_options
