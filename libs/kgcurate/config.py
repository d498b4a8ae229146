"""YAML configs (``conf/*.yaml``) merged with CLI flags: a flag given on the command line wins."""

from __future__ import annotations

import argparse
import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from kgcurate import paths, settings
from kgcurate.errors import UserError

# Derived from the sections declared in kgcurate.settings (one place for keys, defaults, types, flags).
DEFAULTS: dict[str, Any] = settings.defaults()
INT64 = (-(2**63), 2**63 - 1)
FREE_FORM = settings.FREE_FORM
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "a mapping"}


def _declared(dotted: str) -> tuple[type, str] | None:
    sec, _, name = dotted.partition(".")
    cls = settings.SECTIONS.get(sec)
    return (cls, name) if cls is not None and name else None


def _allowed(dotted: str, default: Any) -> tuple[type, ...]:
    declared = _declared(dotted)
    if declared is not None:
        return settings.value_types(*declared)
    return (type(default),) if default is not None else (object,)


class _Loader(yaml.SafeLoader):
    """YAML 1.1's float needs a dot (``2.0e4``): ``2e4`` and ``5e-4`` were strings, refused as "must be a
    number" though ``--t 2e4`` and ``--lr 5e-4`` are fine on the command line. Read as numbers here."""


_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT, list("-+0123456789"))


def _positive(dotted: str) -> bool:
    declared = _declared(dotted)
    return declared is not None and bool(settings.meta(*declared)["positive"])


def validate(data: dict[str, Any], where: str, defaults: dict[str, Any] = DEFAULTS, prefix: str = "") -> None:
    """Every key known, every value of its key's type, integers within int64: else one UserError line
    naming the key (and the nearest valid one), before any Spark session exists."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            near = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f" (did you mean '{prefix}{near[0]}'?)" if near else f" (valid: {', '.join(sorted(defaults))})"
            raise UserError(f"config file {where}: unknown key '{dotted}'{hint}")
        default = defaults[key]
        if dotted in FREE_FORM:
            if not isinstance(value, dict):
                raise UserError(f"config file {where}: '{dotted}' must be a mapping of settings, got {value!r}")
            for name, setting in value.items():  # Spark takes strings: a list or mapping reached the JVM as text
                if setting is None or isinstance(setting, list | dict):
                    raise UserError(f"config file {where}: '{dotted}.{name}' must be one value (a string, number or "
                                    f"boolean), got {setting!r}")
            continue
        if isinstance(default, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise UserError(f"config file {where}: section '{dotted}' must be a mapping of keys, "
                                f"got {type(value).__name__} {value!r}")
            validate(value, where, default, f"{dotted}.")
            continue
        if value is None:
            continue
        allowed = _allowed(dotted, default)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
            raise UserError(f"config file {where}: '{dotted}' must be {want}, got {value!r}")
        if _positive(dotted) and not value > 0:
            raise UserError(f"config file {where}: '{dotted}' must be > 0, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            raise UserError(f"config file {where}: '{dotted}' = {value} is out of range "
                            f"(allowed {INT64[0]} .. {INT64[1]})")
        declared = _declared(dotted)
        if declared is not None:
            _check_as_flag(settings.meta(*declared), dotted, value, where)


def _check_as_flag(meta: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """The checks the key's flag makes (its choices, its value type: a range, a finite number), so a YAML
    value cannot get past what the command line refuses (``download.shard_size: 20000`` failed every shard
    task after Spark started; ``train.gpus: 0`` divided by zero)."""
    choices = meta["choices"]
    if choices:
        wrong = [v for v in (value if isinstance(value, list) else [value]) if v not in choices]
        if wrong:
            raise UserError(f"config file {where}: '{dotted}' must be one of {', '.join(map(str, choices))}, "
                            f"got {wrong[0]!r}")
    parse = meta["type"]
    if parse is not None and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            parse(str(value))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UserError(f"config file {where}: '{dotted}': {exc}") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s values over it; a null (a key or section left empty in the YAML, its
    lines commented out) keeps the default, as an absent key does (every key that may be null defaults to it)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(path: str | Path | None) -> dict[str, Any]:
    """DEFAULTS overlaid with the YAML file (relative paths in it stay relative to the cwd)."""
    if path is None:
        return copy.deepcopy(DEFAULTS)
    p = Path(paths.expand_home(str(path)))  # --config=~/c.yaml reaches us unexpanded
    if not p.is_file():
        raise UserError(f"config file not found: {p} (pass an existing YAML file, e.g. conf/demo.yaml)")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except UnicodeDecodeError:
        raise UserError(f"config file {p} is not UTF-8 text: save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {p}{where} is not valid YAML: fix its syntax") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of sections (lake, wat, balance, ...)")
    for key in settings.TOP_LEVEL:
        if key in data and data[key] is None:
            raise UserError(f"config file {p}: '{key}' is empty: give it a value or leave the key out "
                            f"(default {settings.TOP_LEVEL[key]!r})")
    validate(data, str(p))
    return deep_merge(DEFAULTS, data)


def set_if_given(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply a CLI flag over the config only when the user actually passed it (not None)."""
    if value is None:
        return
    node = cfg
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
