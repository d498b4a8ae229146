"""``kgcurate curated list|drop``: the curated sets kept side by side in the lake.

Every ``balance`` run keeps its set in its own ``curated`` partition (run_id), recorded in
``curation_runs``. ``list`` shows them newest first with their parameters, sizes and input
versions; ``drop RUN_ID`` removes one set (its run row first, so it is never half visible), under
the balance lease so it cannot race a balance. Later stages (download, training) read one run,
the newest by default (``balance.latest_curated``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from kgcurate import lake, tables
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError
from kgcurate.stages import balance

JOB = "curated"
COLUMNS = ("run_id", "created_at", "pairs_out", "t", "target_size", "tail_share", "seed", "per_qid", "pairs_in",
           "matched_pairs")


@dataclass
class CuratedSummary(Summary):
    """``list``: the recorded runs (newest first, as ``curation_runs`` rows plus ``rows``) and the orphan
    partitions; ``drop``: the run dropped and the rows removed."""

    action: str  # "list" or "drop"
    run_id: str | None = None
    rows_removed: int | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="list as JSON lines (every column)")


def list_runs(spark: SparkSession, root: str) -> list[dict[str, Any]]:
    """The recorded runs, newest first, with the rows each really has in ``curated``."""
    df = balance.runs(spark, root)
    if df is None:
        return []
    runs = [r.asDict() for r in df.collect()]  # one row per balance run: small
    if lake.exists(spark, root, tables.CURATED):
        sizes = {r[0]: r[1] for r in lake.read(spark, root, tables.CURATED).groupBy("run_id").count().collect()}
        for r in runs:
            r["rows"] = sizes.get(r["run_id"], 0)
    return runs


def execute(ctx: Context, cfg: dict[str, Any]) -> CuratedSummary:
    spark = ctx.spark
    root = cfg["lake"]
    c = cfg.get("curated") or {}
    if c.get("action") == "drop":
        run_id = c.get("run_id")
        if not run_id:
            raise UserError("curated drop needs a RUN_ID (see `kgcurate curated list`)")
        return CuratedSummary("drop", run_id=run_id, rows_removed=balance.drop_run(spark, root, run_id))
    if not lake.exists(spark, root, tables.CURATION_RUNS):
        raise UserError(f"no curated run in lake {root}: run `kgcurate balance --lake {root}` first")
    return CuratedSummary("list", runs=list_runs(spark, root), orphans=balance.orphan_runs(spark, root))


def format_runs(runs: list[dict[str, Any]]) -> str:
    head = f"{'run_id':<22} {'created_at (UTC)':<19} {'pairs_out':>12} {'t':>12} {'target_size':>12} " \
           f"{'tail_share':>10} {'seed':>6} {'per_qid':>7}  input versions"
    lines = [head]
    for r in runs:
        t = "-" if r["t"] is None else f"{r['t']:.6g}"
        versions = ",".join(f"{k}@{v}" for k, v in sorted((r["input_versions"] or {}).items()))
        lines.append(f"{r['run_id']:<22} {r['created_at']:%Y-%m-%d %H:%M:%S} {r['pairs_out']:>12,} {t:>12} "
                     f"{'-' if r['target_size'] is None else format(r['target_size'], ','):>12} "
                     f"{'-' if r['tail_share'] is None else format(r['tail_share'], '.4g'):>10} "
                     f"{r['seed']:>6} {str(bool(r['per_qid'])).lower():>7}  {versions}")
    return "\n".join(lines)


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    c = cfg["curated"]
    if c["action"] == "drop" and not c["run_id"]:
        raise UserError("curated drop needs a RUN_ID (see `kgcurate curated list`)")
    if c["action"] == "list" and c["run_id"]:
        raise UserError("curated list takes no RUN_ID")
    return {}


def report(s: CuratedSummary, args: argparse.Namespace) -> int:
    if s.action == "drop":
        print(f"curated: dropped run {s.run_id} ({s.rows_removed or 0:,} rows)")
        return 0
    if args.json:
        for r in s.runs:
            print(json.dumps(r, default=str, sort_keys=True))
    else:
        print(format_runs(s.runs))
        if s.orphans:
            print(f"({len(s.orphans)} partitions of killed balance runs are invisible; `kgcurate maintain` "
                  "removes them)")
    return 0
