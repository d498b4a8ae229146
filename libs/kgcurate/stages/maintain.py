"""``kgcurate maintain --lake L [--vacuum-hours H] [--dry-run]``: OPTIMIZE and VACUUM every table.

Policy (see docs/production.md): compaction after each refresh, because per-file ingest MERGEs and
incremental match appends leave many small files; VACUUM keeps ``H`` hours of history (default
168 = 7 days), so any curated version from the last week stays readable by time travel and a bad
run can be rolled back. Older versions become unreadable: ``curation_runs`` keeps their
parameters and input versions, not their files. Below 168 hours Delta's safety check is lifted for
this session only, because a shorter window can break a reader or writer still running.

Delta 4 ignores ``VACUUM ... RETAIN H HOURS`` for H > 0 and uses the table property
``delta.deletedFileRetentionDuration`` instead, so the window is set as that property (one extra
commit per table, only when it changes) and VACUUM then runs with the table's own setting.

Every curated run listed in ``curation_runs`` stays readable (runs live side by side in ``curated``
partitions, read at the current version); partitions that a killed balance left without a run row
are removed (under the balance lease). Also removes staging folders (``<lake>/_staging/*``) that a
killed ingest or match left behind, and a killed download's resume folders,
once their newest file is older than ``--staging-hours`` (default 24): a folder's own time says nothing on
S3 (s3a reports the listing's time) nor locally once its subfolders exist, while a run in progress keeps
writing files.
Maintain holds the lease of every stage that takes one (pairs' writers, build-metadata, match, balance,
download: :func:`writer_scopes`) for its whole run, so it never compacts or vacuums beside such a run
(on S3 two Spark drivers committing to one table can overwrite each other's log entry), and refuses
(exit 2, naming the holder) while one runs. ingest-wikidata and entity-set take no lease: do not run
them beside maintain. A dry run reports what would be compacted and deleted, changes nothing and takes
no lease. Tables are maintained
``--parallel-tables`` at once (default 4): a small table's OPTIMIZE and VACUUM wait on latency, not cores.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from kgcurate import lake, tables
from kgcurate.context import Context, Summary
from kgcurate.errors import ConcurrentRunError, UserError

JOB = "maintain"
log = logging.getLogger("kgcurate.maintain")


@dataclass
class MaintainSummary(Summary):
    """What OPTIMIZE and VACUUM did (or, with ``--dry-run``, would do) per table, the stale staging
    folders and orphan curated partitions removed."""

    lake: str
    vacuum_hours: float
    dry_run: bool
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> files/bytes before and after
    orphan_runs: list[str] = field(default_factory=list)
    stale_staging: list[str] = field(default_factory=list)
    seconds: float = 0.0
DEFAULT_VACUUM_HOURS = 168
DEFAULT_STAGING_HOURS = 24
# Tables maintained at once. Each table's OPTIMIZE and VACUUM is a series of small Spark jobs and two
# commits whose latency, not the cores, bounds a small table; on 2 cores, 12 small tables took 21.7 s
# one at a time, 15.5 s two at once, 13.6 s four at once. A large table's jobs use the cluster as before.
DEFAULT_PARALLEL_TABLES = 4
RETENTION_PROP = "delta.deletedFileRetentionDuration"
SAFE_HOURS = 168
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
# Delta records each VACUUM as two commits (VACUUM START, VACUUM END) on local, HDFS, Azure and GCS paths
# but not on S3, where a lake usually lives. maintain leaves them out everywhere unless the session sets
# this: the same log on every store, and no new table version from a VACUUM (0.9 s a table, not 1.45 s).
VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"


def stale_staging(spark: SparkSession, root: str, hours: float) -> list[str]:
    """Staging folders whose newest file (at any depth) is older than ``hours``; an empty folder by its
    own time."""
    fs, staging = lake.hadoop_fs(spark, lake.staging_path(root))
    if not fs.exists(staging):
        return []
    cutoff_ms = (time.time() - hours * 3600) * 1000
    return sorted(str(st.getPath().toString()) for st in fs.listStatus(staging) if _last_written_ms(fs, st) < cutoff_ms)


def _last_written_ms(fs: Any, status: Any) -> int:
    if not status.isDirectory():
        return int(status.getModificationTime())
    newest, files = None, fs.listFiles(status.getPath(), True)
    while files.hasNext():
        written = int(files.next().getModificationTime())
        newest = written if newest is None else max(newest, written)
    return int(status.getModificationTime()) if newest is None else newest


def _interval(hours: float) -> str:
    return f"interval {int(round(hours * 3600))} seconds"


def retention_of(spark: SparkSession, root: str, name: str) -> str | None:
    return lake.detail(spark, root, name)[2].get(RETENTION_PROP)


def set_retention(spark: SparkSession, root: str, name: str, hours: float,
                  properties: dict[str, str] | None = None) -> bool:
    """Make the table's own retention the window (Delta 4 reads it instead of RETAIN); True if changed.
    ``properties``: the table's, when the caller has just read them (:func:`lake.detail`)."""
    wanted = _interval(hours)
    current = properties.get(RETENTION_PROP) if properties is not None else retention_of(spark, root, name)
    if current == wanted:
        return False
    spark.sql(f"ALTER TABLE delta.`{lake.table_path(root, name)}` SET TBLPROPERTIES ('{RETENTION_PROP}' = '{wanted}')")
    return True


def check_hours(vacuum_hours: float, staging_hours: float) -> None:
    """Both windows finite (NaN or inf failed half way, after tables had been compacted); staging above 0
    (0 would delete the staging of runs in progress)."""
    if not (math.isfinite(vacuum_hours) and vacuum_hours >= 0):
        raise UserError(f"maintain: --vacuum-hours must be a finite number >= 0, got {vacuum_hours:g}")
    if not (math.isfinite(staging_hours) and staging_hours > 0):
        raise UserError(f"maintain: --staging-hours must be a finite number > 0, got {staging_hours:g}")


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """The windows checked before Spark starts (a YAML value skips argparse's check)."""
    m = cfg.get("maintain") or {}
    check_hours(float(m.get("vacuum_hours", DEFAULT_VACUUM_HOURS)),
                float(m.get("staging_hours", DEFAULT_STAGING_HOURS)))
    return {}


def vacuum_candidates(spark: SparkSession, root: str, name: str, hours: float) -> int:
    """Files VACUUM would delete (a dry run touches nothing, so for H > 0 this counts with the table's
    current retention property, which is what the next real run uses until it sets the new one)."""
    path = lake.table_path(root, name)
    clause = "RETAIN 0 HOURS " if hours == 0 else ""
    return int(spark.sql(f"VACUUM delta.`{path}` {clause}DRY RUN").count())


def maintain_table(spark: SparkSession, root: str, name: str, hours: float, dry: bool) -> dict[str, Any]:
    """One table: OPTIMIZE (skipped with at most one file: nothing to compact), the retention property,
    VACUUM; or, dry, what VACUUM would delete. Its metadata is read once: the files after are the files
    before less those OPTIMIZE removed plus those it added (VACUUM deletes only files no longer in the
    snapshot)."""
    files, size, properties = lake.detail(spark, root, name)
    info: dict[str, Any] = {"files_before": files, "bytes": size}
    if dry:
        info["vacuum_would_delete"] = vacuum_candidates(spark, root, name, hours)
        info["retention_now"] = properties.get(RETENTION_PROP)  # what that count used (for H > 0)
        return info
    try:
        info.update(lake.optimize(spark, root, name) if files > 1 else {"files_removed": 0, "files_added": 0})
    except ConcurrentRunError:
        if name != tables.LEASES:
            raise
        # the leases this run holds (and other hosts' trains) renew their rows meanwhile: the next run compacts
        log.info("%s: %s was written while being compacted; left as it is", JOB, name)
        info.update(files_removed=0, files_added=0)
    info["optimized"] = info["files_removed"] > 0
    if hours == 0:
        lake.vacuum(spark, root, name, 0)
    else:
        info["retention_set"] = set_retention(spark, root, name, hours, properties)
        lake.vacuum(spark, root, name)
    info["files_after"] = files - info["files_removed"] + info["files_added"]
    return info


def writer_scopes() -> tuple[str, ...]:
    """The lease scopes of the stages that take one: what maintain holds while it rewrites files."""
    from kgcurate import pairs_insert
    from kgcurate.stages import balance, build_metadata, download, match

    return (pairs_insert.SCOPE, build_metadata.JOB, match.JOB, balance.JOB, download.JOB)


def execute(ctx: Context, cfg: dict[str, Any]) -> MaintainSummary:
    spark = ctx.spark
    m = cfg.get("maintain") or {}
    hours = float(m.get("vacuum_hours", DEFAULT_VACUUM_HOURS))
    dry = bool(m.get("dry_run"))
    parallel = int(m.get("parallel_tables", DEFAULT_PARALLEL_TABLES))
    check_hours(hours, float(m.get("staging_hours", DEFAULT_STAGING_HOURS)))
    if parallel < 1:
        raise UserError(f"--parallel-tables must be >= 1, got {parallel}")
    root = cfg["lake"]
    names = [n for n in tables.SCHEMAS if lake.exists(spark, root, n)]
    if not names:
        raise UserError(f"no Delta table found in lake {root} (check --lake)")
    with contextlib.ExitStack() as stack:
        if not dry:
            from kgcurate import leases

            run_id = ctx.new_run_id()
            for scope in writer_scopes():  # one by one; refused at any: those taken are given back
                stack.enter_context(leases.held(root, scope, run_id))
        if hours < SAFE_HOURS:
            log.warning("%s: vacuum window %.0fh is below %dh: time travel beyond it breaks, and a job still "
                        "running for longer could lose files", JOB, hours, SAFE_HOURS)
            stack.enter_context(lake.session_conf(spark, RETENTION_CHECK, "false"))
        if spark.conf.get(VACUUM_LOGGING, None) is None:
            stack.enter_context(lake.session_conf(spark, VACUUM_LOGGING, "false"))
        t0 = time.monotonic()
        summary = MaintainSummary(lake=root, vacuum_hours=hours, dry_run=dry)
        if tables.CURATED in names:  # partitions of killed balances (no run row): invisible, removed here
            from kgcurate.stages import balance

            summary.orphan_runs = balance.orphan_runs(spark, root) if dry else balance.remove_orphans(spark, root)
        with ThreadPoolExecutor(min(parallel, len(names)), thread_name_prefix="maintain") as pool:
            done = pool.map(lambda name: maintain_table(spark, root, name, hours, dry), names)
            summary.tables = dict(zip(names, done, strict=True))
        stale = stale_staging(spark, root, float(m.get("staging_hours", DEFAULT_STAGING_HOURS)))
        summary.stale_staging = stale
        if not dry:
            for path in stale:
                fs, hpath = lake.hadoop_fs(spark, path)
                fs.delete(hpath, True)
    summary.seconds = round(time.monotonic() - t0, 2)
    return summary


def report(s: MaintainSummary, args: argparse.Namespace) -> int:
    verb = "would" if s.dry_run else "did"
    for name, info in s.tables.items():
        if s.dry_run:
            counted = "" if s.vacuum_hours == 0 else \
                f" (counted with its retention now, {info.get('retention_now') or 'Delta default 7 days'})"
            print(f"  {name}: {info['files_before']} files, {info['bytes'] / 1e6:.1f} MB; "
                  f"VACUUM would delete {info['vacuum_would_delete']} files{counted}")
        else:
            print(f"  {name}: {info['files_before']} -> {info['files_after']} files "
                  f"(compacted {info['files_removed']} into {info['files_added']})")
    print(f"maintain ({verb} run): {len(s.tables)} tables, VACUUM keeps {s.vacuum_hours:g}h of history, "
          f"{len(s.stale_staging)} stale staging folders {'to remove' if s.dry_run else 'removed'}, "
          f"{len(s.orphan_runs)} curated partitions of killed balances "
          f"{'to remove' if s.dry_run else 'removed'}")
    return 0
