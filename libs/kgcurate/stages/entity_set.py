"""``kgcurate entity-set SPEC.yaml``: compute an entity set from ``entities`` into ``entity_sets``.

The set's rows are replaced as a whole (``replaceWhere set_name = ...``), so re-running a spec,
or changing it, never leaves stale or duplicate members; other sets are untouched.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from kgcurate.context import Context, Summary
from kgcurate.entity_sets import load_spec, write_entity_set
from kgcurate.errors import UserError

JOB = "entity-set"


@dataclass
class EntitySetSummary(Summary):
    """The sets computed: name -> entities, in spec order."""

    sets: dict[str, int]
    seconds: float = 0.0


def _specs(cfg: dict[str, Any]) -> list[str]:
    value = cfg.get("entity_set", {}).get("specs")
    if not value:  # metadata.entity_sets may also name sets already computed: keep its YAML files
        value = [v for v in cfg.get("metadata", {}).get("entity_sets") or [] if str(v).endswith((".yaml", ".yml"))]
    return [value] if isinstance(value, str) else [str(v) for v in value]


def execute(ctx: Context, cfg: dict[str, Any]) -> EntitySetSummary:
    """Every configured spec (``entity_set.specs``, else ``metadata.entity_sets``) -> entity_sets."""
    spark = ctx.spark
    specs = [load_spec(p) for p in _checked_specs(cfg)]  # validate all before computing any
    sets: dict[str, int] = {}
    t0 = time.monotonic()
    for spec in specs:
        sets[spec.name] = write_entity_set(spark, cfg["lake"], spec)
    return EntitySetSummary(sets, round(time.monotonic() - t0, 2))


def _checked_specs(cfg: dict[str, Any]) -> list[str]:
    paths = _specs(cfg)
    if not paths:
        raise UserError("no entity set spec given: pass a YAML file such as conf/entity_sets/organisms.yaml, "
                        "or set entity_set.specs (or metadata.entity_sets) in the --config file")
    return paths


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    for p in _checked_specs(cfg):
        load_spec(p)  # a bad spec, or none, fails before Spark starts
    return {}


def report(summary: EntitySetSummary, args: argparse.Namespace) -> int:
    for name, n in summary.sets.items():
        print(f"{JOB}: {name}: {n:,} entities")
    print(f"{JOB}: done in {summary.seconds}s")
    return 0
