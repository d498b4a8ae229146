"""YAML configs (``conf/*.yaml``) merged with CLI flags: a flag given on the command line wins."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from kgcurate.errors import UserError

DEFAULTS: dict[str, Any] = {
    "lake": "./lake",
    "spark": {"conf": {}},
    "wat": {
        "crawl": None,
        "inputs": [],
        "listing_base": None,  # None: the listing's own folder, or the bucket root for s3 listings
        "min_text_length": 1,
        "max_text_length": 2000,
        "text_sources": ["alt", "title"],
        "force": False,
        "decode_all": False,  # JSON-decode payloads without image links too (stricter bad-record detection)
        # Who writes the parsed pairs to staging: "task" (the Python task, with pyarrow: local and s3
        # lakes), "spark" (through the JVM: any lake), "auto" (task where the lake allows it).
        "pairs_staging": "auto",
        "progress_interval": 10.0,  # seconds between progress lines
    },
    "wikidata": {"input": None, "languages": ["en"], "format": None},  # format: json | nt | None (by suffix)
    "metadata": {
        "wordnet": True,
        "wordnet_dir": None,
        "metaclip_metadata": None,
        "entity_sets": [],
        "replace_all": False,
        "min_length": 3,
        "min_length_cjk": 1,
        "stop_words": True,
        "extra_stop_words": [],
        "shared_alias": "keep_most_sitelinks",
        "shared_alias_min_qids": 2,
    },
    "match": {"lowercase": False, "full": False},
    "balance": {"t": None, "target_size": None, "tail_share": None, "seed": 0, "per_qid": False},
    "report": {"out": "./reports/latest"},
    "refresh": {"crawl": None, "listing_base": None},
    "maintain": {"vacuum_hours": 168.0, "staging_hours": 24.0, "dry_run": False},
    "entity_set": {"specs": []},
    "curated": {"action": "list", "run_id": None},
    "sample": {"out": "samples", "files": 4, "records": 400, "seed": 0, "corrupt": True, "gzip": True,
               "size_mb": None},
}


INT64 = (-(2**63), 2**63 - 1)
# Keys whose default is None: the types a value may have (None always allowed).
NULLABLE_TYPES: dict[str, tuple[type, ...]] = {
    "wat.crawl": (str,), "wat.listing_base": (str,), "wikidata.input": (str, list), "wikidata.format": (str,),
    "metadata.wordnet_dir": (str,), "metadata.metaclip_metadata": (str,), "balance.t": (int, float),
    "balance.target_size": (int,), "balance.tail_share": (int, float), "sample.size_mb": (int, float),
    "refresh.crawl": (str,), "refresh.listing_base": (str,), "curated.run_id": (str,),
}
FREE_FORM = {"spark.conf"}  # any Spark setting
POSITIVE = {"wat.progress_interval"}  # 0 would busy-loop
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "a mapping"}


def _allowed(dotted: str, default: Any) -> tuple[type, ...]:
    if default is None:
        return NULLABLE_TYPES.get(dotted, (object,))
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, float):
        return (int, float)
    return (type(default),)


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
        if dotted in POSITIVE and not value > 0:
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
        data = yaml.safe_load(p.read_text()) or {}
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
