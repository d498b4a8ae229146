"""YAML configs (``conf/*.yaml``) merged with CLI flags: a flag given on the command line wins."""

from __future__ import annotations

import copy
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
    "sample": {"out": "samples", "files": 4, "records": 400, "seed": 0, "corrupt": True, "gzip": True,
               "size_mb": None},
}


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
