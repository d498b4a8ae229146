"""YAML configs (``conf/*.yaml``) merged with CLI flags: a flag given on the command line wins."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from kgcurate import settings
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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(path: str | Path | None) -> dict[str, Any]:
    """DEFAULTS overlaid with the YAML file (relative paths in it stay relative to the cwd)."""
    if path is None:
        return copy.deepcopy(DEFAULTS)
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p} (pass an existing YAML file, e.g. conf/demo.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"config file {p} is not UTF-8 text: save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {p}{where} is not valid YAML: fix its syntax") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of sections (lake, wat, balance, ...)")
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
