"""``kgcurate ingest-wat``: CommonCrawl WAT files -> ``pairs``, ``ingest_log``, ``bad_records``.

Whole files are the unit of work (gzip is not splittable): one Spark task per file, each
streaming its file through :class:`kgcurate.wat.parse.WatParser`. The task writes its pairs as
Parquet into the run's staging folder itself (:mod:`kgcurate.staging`, local and S3 lakes; on
other file systems, or with ``wat.pairs_staging: spark``, they go to the JVM as Arrow batches
instead) and hands the JVM only its bad records and one log row per file, staged as Parquet in
one tagged schema. Then the tables are committed one by one: pairs by an insert-only MERGE on
(image_url, text) that reads only the table's pair_id column plus the rows sharing a pair_id with
the run's, or an append when none does (:mod:`kgcurate.pairs_insert`), bad records by an
insert-only MERGE on (source_file, offset, reason), and the log last, so a file counts as done only
after its rows are in. A killed run therefore leaves every table at a committed version, and a
re-run neither duplicates rows nor skips work.

File statuses in ``ingest_log`` (see docs/wat.md): ``ok`` (every record read), ``partial`` (damage
to the container was skipped, each damaged span is a bad record, every other record was read),
``failed`` (not read, or not to its end). ``ok`` and ``partial`` files are done: a re-run cannot
recover damaged bytes, so only ``failed`` files are retried (``--force`` re-reads everything), and a local
file whose size changed since its done read (:func:`done_files`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from kgcurate import ids, lake, pairs_insert, run_ids, settings, tables, units
from kgcurate import staging as staging_mod
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError
from kgcurate.wat.inputs import (
    FILE_URI_PATTERN,
    S3_ALIAS_PATTERN,
    display_name,
    expand_inputs,
    local_size,
    same_file_key,
)

JOB = "ingest-wat"
log = logging.getLogger("kgcurate.ingest_wat")


@dataclass
class IngestWatSummary(Summary):
    """One ingest-wat run: files read (by status), records, pairs, timings; the counts are 0 when every
    input was already done. ``failed`` and ``partial_files`` name the first 20 (path, error)."""

    run_id: str
    inputs: int
    skipped_done: int
    pairs_staging: str | None = None  # "task" or "spark" (None: nothing read)
    parse_seconds: float | None = None  # read + parse + stage, before the commits
    files: int = 0
    ok: int = 0
    partial: int = 0
    records: int = 0
    rows_out: int = 0
    bad_records: int = 0
    filtered: int = 0
    bytes: int = 0
    pairs_inserted: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    partial_files: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    allow_failed_files: bool = False  # wat.allow_failed_files: failed files are a warning and exit 0

    @property
    def failed_count(self) -> int:
        return self.files - self.ok - self.partial

    @property
    def failures_allowed(self) -> bool:
        """``allow_failed_files`` and some input in (read now or done before): every input failing is a bad
        run, not a bad file."""
        return self.allow_failed_files and self.failed_count < self.files + self.skipped_done

# One tagged schema for everything a task emits: kind = pair | bad | log.
STAGED = pa.schema([
    ("kind", pa.string()),
    ("source_file", pa.string()),
    ("crawl", pa.string()),
    ("image_url", pa.string()),
    ("text", pa.string()),
    ("text_source", pa.string()),
    ("page_url", pa.string()),
    ("offset", pa.int64()),
    ("reason", pa.string()),
    ("sample", pa.string()),
    ("status", pa.string()),
    ("records", pa.int64()),
    ("rows_out", pa.int64()),
    ("bad_records", pa.int64()),
    ("filtered", pa.int64()),
    ("bytes", pa.int64()),
    ("error", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
])
# Pairs as parse tasks write them themselves (kgcurate.staging), when the lake allows it.
PAIRS_STAGED = pa.schema([
    ("source_file", pa.string()), ("crawl", pa.string()), ("image_url", pa.string()), ("text", pa.string()),
    ("text_source", pa.string()), ("page_url", pa.string()),
])
# The Spark side of the two schemas above, derived (declared once, in Arrow).
PAIRS_STAGED_SPARK = tables.from_arrow(PAIRS_STAGED)
STAGED_SPARK = tables.from_arrow(STAGED)


def _batch(columns: dict[str, Any], n: int) -> pa.RecordBatch:
    """A STAGED batch of ``n`` rows. A column value is a list (one value per row), or a scalar
    repeated on every row (``pa.repeat``: building ``[path] * n`` as Python strings cost more than
    the parse itself); absent columns are all-null (``pa.nulls``, no Python objects)."""
    arrays = []
    for field in STAGED:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(n, field.type))
        elif isinstance(values, pa.Array):
            arrays.append(values)
        elif isinstance(values, list):
            arrays.append(pa.array(values, type=field.type))
        else:
            arrays.append(pa.repeat(pa.scalar(values, type=field.type), n))
    return pa.RecordBatch.from_arrays(arrays, schema=STAGED)


def _pages(pages: list[str | None], rows: list[int]) -> pa.Array:
    """One page URL per pair: each page's string encoded once, repeated by an Arrow ``take``."""
    index = np.repeat(np.arange(len(pages), dtype=np.int32), np.asarray(rows, dtype=np.int64))
    return pa.array(pages, pa.string()).take(index)


def _pair_columns(path: str, crawl: str | None, b: Any) -> dict[str, pa.Array]:
    """The PAIRS_STAGED columns of one parser batch (both staging routes use them)."""
    n = len(b.image_url)
    return {
        "source_file": pa.repeat(pa.scalar(path, pa.string()), n), "crawl": pa.repeat(pa.scalar(crawl, pa.string()), n),
        "image_url": pa.array(b.image_url, pa.string()), "text": pa.array(b.text, pa.string()),
        "text_source": pa.array(b.text_source, pa.string()), "page_url": _pages(b.pages, b.page_rows),
    }


def parse_files(files: Iterator[tuple[int, str]], crawl: str | None, options: Any,
                pairs_dir: str | None = None) -> Iterator[pa.RecordBatch]:
    """Executor side: parse each (file number, path) and yield staged Arrow batches.

    With ``pairs_dir`` the task writes its pairs there itself, one Parquet file per batch named
    by file number and batch number (see :mod:`kgcurate.staging`), and yields only the bad-record
    and log rows; without it the pairs are yielded too (``kind = pair``).
    """
    from kgcurate.wat.inputs import open_input
    from kgcurate.wat.parse import FileStats, WatParser, crawl_from_path

    for file_no, path in files:
        started = datetime.now(timezone.utc)
        file_crawl = crawl or crawl_from_path(path)
        parser = WatParser(options)
        error: str | None = None
        part = 0
        try:
            with open_input(path) as stream:
                for b in parser.parse(stream):
                    n = len(b.image_url)
                    if n and pairs_dir is not None:
                        staging_mod.write_parquet(f"{pairs_dir}/part-{file_no:06d}-{part:05d}.parquet",
                                                  pa.table(_pair_columns(path, file_crawl, b), schema=PAIRS_STAGED))
                        part += 1
                        yield _batch({"kind": "pairs_written", "source_file": path, "rows_out": n}, 1)
                    elif n:
                        yield _batch({"kind": "pair", **_pair_columns(path, file_crawl, b)}, n)
                    if b.bad:
                        m = len(b.bad)
                        yield _batch({
                            "kind": "bad", "source_file": path,
                            "offset": [o for o, _, _ in b.bad], "reason": [r for _, r, _ in b.bad],
                            "sample": [s for _, _, s in b.bad],
                        }, m)
        except Exception as exc:  # noqa: BLE001 - unreadable file: logged as failed, the job goes on
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        stats = getattr(parser, "stats", None) or FileStats()
        status = "failed" if error else stats.status
        if status == "partial":
            error = (f"partial: {stats.damaged} damaged part(s) skipped (each a bad record), the rest read; "
                     f"first: {stats.error}")
        error = (error or stats.error or "")[:500] or None
        yield _batch({
            "kind": ["log"], "source_file": [path], "crawl": [file_crawl],
            "status": [status], "records": [stats.records], "rows_out": [stats.rows_out],
            "bad_records": [stats.bad_records], "filtered": [stats.filtered], "bytes": [stats.bytes],
            "error": [error], "started_at": [started], "finished_at": [datetime.now(timezone.utc)],
        }, 1)


def check_options(wat_cfg: dict[str, Any]) -> None:
    """Text-length bounds that can keep a text at all: else every pair would be filtered and the files
    logged as done, so a re-run would not read them again. Called before Spark starts."""
    lo, hi = _text_bounds(wat_cfg)
    if lo < 0 or hi < 1 or lo > hi:
        raise UserError(f"wat.min_text_length={lo} and wat.max_text_length={hi} keep no text: use "
                        "0 <= --min-text-length <= --max-text-length and --max-text-length >= 1")
    route = wat_cfg.get("pairs_staging") or "auto"
    if route not in ("auto", "task", "spark"):
        raise UserError(f"wat.pairs_staging must be auto, task or spark, got {route!r}")
    _text_sources(wat_cfg)


TEXT_SOURCES = ("alt", "title")


def _text_sources(wat_cfg: dict[str, Any]) -> tuple[str, ...]:
    """Which texts make pairs. An unknown name or an empty list would keep no pair and log every file as
    done (a re-run would not read them again), so both are refused before Spark starts; unset is both."""
    sources = wat_cfg.get("text_sources")
    if sources is None:
        return TEXT_SOURCES
    wrong = isinstance(sources, str) or [s for s in sources if s not in TEXT_SOURCES]
    if wrong or not sources:
        raise UserError(f"wat.text_sources must name alt, title or both, got {sources!r}: "
                        "e.g. text_sources: [alt, title] (or --no-title for alt texts only)")
    return tuple(dict.fromkeys(sources))


def _text_bounds(wat_cfg: dict[str, Any]) -> tuple[int, int]:
    """(min, max) text length; a key left empty in the YAML takes its default."""
    opts = settings.WatOptions
    lo, hi = wat_cfg.get("min_text_length"), wat_cfg.get("max_text_length")
    return int(opts.min_text_length if lo is None else lo), int(opts.max_text_length if hi is None else hi)


def _parse_options(wat_cfg: dict[str, Any]):
    from kgcurate.wat.parse import ParseOptions

    check_options(wat_cfg)
    lo, hi = _text_bounds(wat_cfg)
    return ParseOptions(
        min_text_length=lo,
        max_text_length=hi,
        text_sources=_text_sources(wat_cfg),
        decode_all=bool(wat_cfg.get("decode_all", False)),
    )


def file_key_column(column: str = "source_file") -> Column:
    """:func:`same_file_key` as a Spark expression (``s3a://`` and ``s3n://`` are the ``s3://`` object, a
    ``file:`` URI its path)."""
    return F.regexp_replace(F.regexp_replace(column, S3_ALIAS_PATTERN, "s3://"), FILE_URI_PATTERN, "")


def done_files(spark: SparkSession, lake_root: str, files: list[str], force: bool) -> set[str]:
    """Which of ``files`` ingest_log records as done: the file's latest row (by ``finished_at``) is ``ok``
    or ``partial`` (:data:`kgcurate.units.DONE`), so a forced re-read that failed is read again. Files
    are compared by :func:`same_file_key` (``s3a://`` is the ``s3://`` object). A local file whose size is
    not the ``bytes`` its row read (every done read consumes the whole file) changed since: a mirror's file
    read while still being copied was ``partial`` (cut in a member) or ``ok`` (cut between members), and its
    rest was never read. The file list is already on the driver (it is the job's input); the log is joined
    in Spark, not collected."""
    if force or not lake.exists(spark, lake_root, tables.INGEST_LOG):
        return set()
    wanted = spark.createDataFrame([(f, same_file_key(f), local_size(f)) for f in files],
                                   "source_file string, file_key string, size long")
    key = file_key_column()
    latest = (
        lake.read(spark, lake_root, tables.INGEST_LOG)
        .where(F.col("job") == JOB)
        .select(key.alias("file_key"), F.struct("finished_at", "status", "bytes").alias("last"))
        .groupBy("file_key").agg(F.max("last").alias("last"))
        .where(F.col("last.status").isin(*units.DONE))
        .select("file_key", F.col("last.bytes").alias("read"))
    )
    same = F.col("size").isNull() | F.col("read").isNull() | (F.col("size") == F.col("read"))
    return {r[0] for r in wanted.join(latest, "file_key").where(same).select("source_file").collect()}


def progress_line(total: int, accs: tuple, started: float, done: int) -> str:
    """Files done of total (Spark's task counts), pairs and bad records so far, read throughput."""
    pairs, bad, read = accs
    secs = max(time.monotonic() - started, 1e-9)
    return (f"{JOB}: {done}/{total} files, {pairs.value:,} pairs, {bad.value:,} bad records, "
            f"{read.value / secs / 1e6:.1f} MB/s, {secs:.0f}s")


def parse_task(crawl: str | None, options: Any, accs: tuple, pairs_dir: str | None = None):
    """The ``mapInArrow`` function of the one-task-per-file parse: (file_no, source_file) rows ->
    tagged rows; with ``pairs_dir`` the tasks write the pairs there themselves."""
    pairs_acc, bad_acc, bytes_acc = accs
    rows_out = STAGED.get_field_index("rows_out")

    def run_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            todo = zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)
            for out in parse_files(todo, crawl, options, pairs_dir):
                if out.num_rows:
                    kind = out.column(0)[0].as_py()
                    if kind == "pair":
                        pairs_acc.add(out.num_rows)
                    elif kind == "pairs_written":
                        pairs_acc.add(out.column(rows_out)[0].as_py())
                    elif kind == "bad":
                        bad_acc.add(out.num_rows)
                    else:
                        bytes_acc.add(out.column(STAGED.get_field_index("bytes"))[0].as_py() or 0)
                yield out

    return run_partition


def commit(spark: SparkSession, lake_root: str, staging: str, run_id: str,
           pairs_dir: str | None = None) -> dict[str, Any]:
    """Staged rows -> the three tables, pairs first and the log last.

    The run's totals come from the staged log rows (one per file, collected once) before anything is
    written, so a table with nothing to add costs no Delta operation (each costs seconds of fixed
    overhead); the files' statuses are :func:`kgcurate.units.tally` of those rows.
    """
    staged = spark.read.parquet(staging)
    logs = staged.where(F.col("kind") == "log").select(
        F.lit(JOB).alias("job"), F.lit(run_id).alias("run_id"), "source_file", "status", "records", "rows_out",
        "bad_records", "filtered", "bytes", "error", "started_at", "finished_at",
    )
    counted = ("records", "rows_out", "bad_records", "filtered", "bytes")
    per_file = logs.select("source_file", "status", "error", *counted).collect()  # one small row per file
    tally = units.tally(sorted(units.results(per_file), key=lambda r: r.key))
    summary: dict[str, Any] = {"files": tally.total, "ok": tally.ok, "partial": tally.partial,
                               **{k: sum(int(r[k] or 0) for r in per_file) for k in counted},
                               "failed": tally.failed_units, "partial_files": tally.partial_units}
    summary["pairs_inserted"] = 0
    # a file's rows_out counts the pairs it parsed: when every task's pair write failed (say the staging
    # store refused them) no pair file exists, and reading the folder would end the job before its log
    staged_pairs = summary["rows_out"] and (pairs_dir is None or lake.path_exists(spark, pairs_dir))
    if staged_pairs:
        pairs = (spark.read.schema(PAIRS_STAGED_SPARK).parquet(pairs_dir) if pairs_dir
                 else staged.where(F.col("kind") == "pair"))
        # One row per (image_url, text); the earliest (source_file, page_url) wins, so the choice is
        # the same whatever the partitioning. The min of a struct of strings makes this a sort-based
        # aggregate; pair_id (a function of the other two) leads the key so rows sort on a long, not
        # on URLs that share their first bytes (same groups; map side 8.3 vs 10.7 executor-s on 500 MB).
        first = F.min(F.struct("source_file", "page_url", "text_source", "crawl"))
        distinct_pairs = (
            pairs.withColumn("pair_id", ids.pair_id())
            .groupBy("pair_id", "image_url", "text").agg(first.alias("m"))
            .select("pair_id", "image_url", "text", "m.*")
            .withColumn("run_id", F.lit(run_id))
        )
        # the run's pair_ids straight from the staged rows: 8 bytes a row, not the dedup again, and
        # with repeats (the broadcast takes them; a distinct was a shuffle of every id)
        source_ids = pairs.select(ids.pair_id().alias("pair_id"))
        summary["pairs_inserted"] = pairs_insert.insert_new(spark, lake_root, distinct_pairs, run_id,
                                                            source_ids, at_most=summary["rows_out"]).inserted
    else:
        lake.ensure(spark, lake_root, tables.PAIRS)  # later stages find the table, empty
    # the staged bad rows are exactly the files' bad_records
    lake.record_bad_input(spark, lake_root, JOB, run_id, staged.where(F.col("kind") == "bad").select(
        "source_file", "offset", "reason", "sample") if summary["bad_records"] else [])
    lake.append(spark, lake_root, tables.INGEST_LOG, logs)
    return summary


def execute(ctx: Context, cfg: dict[str, Any], files: list[str] | None = None) -> IngestWatSummary:
    """Ingest ``wat.inputs`` (or ``files``, when the caller expanded them already)."""
    spark = ctx.spark
    wat = cfg["wat"]
    lake_root = cfg["lake"]
    inputs = wat.get("inputs") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    files = files if files is not None else expand_inputs(inputs, wat.get("listing_base"))
    force = bool(wat.get("force"))
    plan = units.plan(files, done_files(spark, lake_root, files, force), force=force)
    todo = plan.todo
    run_id = run_ids.new(JOB)
    summary = IngestWatSummary(run_id=run_id, inputs=len(files), skipped_done=plan.skipped,
                               allow_failed_files=bool(wat.get("allow_failed_files")))
    if not todo:
        log.info("%s: all %d files already ingested (`kgcurate ingest-wat --force` re-reads them)", JOB, len(files))
        return summary
    log.info("%s: %d files to read (%d already ok)", JOB, len(todo), summary.skipped_done)
    staging = lake.staging_path(lake_root, run_id)
    sc = spark.sparkContext
    accs = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))
    options = _parse_options(wat)
    route = wat.get("pairs_staging") or "auto"
    if route == "task" and not staging_mod.supported(staging):
        raise UserError(f"wat.pairs_staging=task needs a local or s3 lake, not {lake_root}: use auto or spark")
    pairs_dir = f"{staging}/pairs" if route == "task" or (route == "auto" and staging_mod.supported(staging)) else None
    summary.pairs_staging = "task" if pairs_dir else "spark"
    t0 = time.monotonic()
    with lake.staging_folder(spark, lake_root, run_id):
        line = functools.partial(progress_line, len(todo), accs, time.monotonic())
        ctx.run_units(list(enumerate(todo)), parse_task(wat.get("crawl"), options, accs, pairs_dir), STAGED_SPARK,
                      f"{staging}/rows", line, float(wat.get("progress_interval", 10)),
                      columns="file_no int, source_file string")
        summary.parse_seconds = round(time.monotonic() - t0, 2)  # read + parse + stage, before commits
        for k, v in commit(spark, lake_root, f"{staging}/rows", run_id, pairs_dir).items():
            setattr(summary, k, v)
    summary.seconds = round(time.monotonic() - t0, 2)
    return summary



def skip_reason(cfg: dict[str, Any]) -> str | None:
    """``kgcurate run`` skips this stage when no WAT input is configured."""
    return None if cfg["wat"].get("inputs") else "no wat.inputs configured"


def print_summary(s: IngestWatSummary) -> None:
    if not s.files:
        print(f"{JOB}: nothing to do: {s.inputs} files, all already ingested (use --force to re-read)")
        return
    mb = s.bytes / 1e6
    print(f"{JOB}: {s.files} files read ({s.ok} ok, {s.partial} partial, {s.failed_count} failed, "
          f"{s.skipped_done} skipped "
          f"as done), {s.records:,} records, {s.rows_out:,} pairs extracted, {s.pairs_inserted:,} new pairs, "
          f"{s.bad_records:,} bad records, {s.filtered:,} texts filtered, {mb:.1f} MB in {s.seconds}s")
    for path, error in s.partial_files:
        print(f"  partial: {display_name(path)}: {error}")
    for path, error in s.failed:
        print(f"  failed: {display_name(path)}: {error}")


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """Expand the inputs (and fail on a bad path) before Spark starts; execute reuses the list."""
    if not cfg["wat"].get("inputs"):
        raise UserError("no input given: pass WAT files, directories, globs or a wat.paths.gz listing")
    check_options(cfg["wat"])
    return {"files": expand_inputs(cfg["wat"]["inputs"], cfg["wat"].get("listing_base"))}


def report(summary: IngestWatSummary, args: argparse.Namespace) -> int:
    print_summary(summary)
    files, partial, failed = summary.files, summary.partial, summary.failed_count
    if files and failed:
        rest = "the others were ingested" if failed < files else "nothing was ingested"
        names = ", ".join(display_name(p) for p, _ in summary.failed[:5]) + (", ..." if failed > 5 else "")
        allowed = summary.failures_allowed
        print(f"kgcurate: {'warning' if allowed else 'error'}: {failed} of {files} input files failed ({names}; "
              f"see table ingest_log); {rest}; re-run to retry the failed ones", file=sys.stderr)
        return 0 if allowed else 1
    if partial:
        names = ", ".join(display_name(p) for p, _ in summary.partial_files[:5]) + (", ..." if partial > 5 else "")
        print(f"kgcurate: warning: {partial} of {files} input files were damaged and read in part ({names}): "
              "the damaged spans are in bad_records, every other record is in; they count as done "
              "(status partial in ingest_log), --force re-reads them", file=sys.stderr)
    return 0
