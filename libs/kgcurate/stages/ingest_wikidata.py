"""``kgcurate ingest-wikidata``: a Wikidata JSON or truthy N-Triples dump -> ``entities``.

Reading goes through Spark's text source, so a ``.bz2`` dump is split across the cluster (a
``.gz`` one is read by one task per file: gzip is not splittable). Lines are parsed in Arrow
batches by the pure readers in :mod:`kgcurate.wikidata`. Everything a task emits (entity rows or
N-Triples facts, bad records, per-file counts) is staged once as Parquet, then committed: the
entities by an upsert MERGE on ``qid`` (re-ingesting replaces, never duplicates), bad records by
an insert-only MERGE, and one ``ingest_log`` row per input file last.

Offsets of bad records: Spark's text source does not expose byte offsets, so ``offset`` is the
line's index within its input split plus the split's start byte (``_metadata.file_block_start``).
For an input read as one split (``.gz`` files, files under 128 MB) that is exactly the 0-based
line number in the file; for a split ``.bz2``/plain dump it is ``split start + line index``.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import config, lake, tables
from kgcurate.errors import UserError
from kgcurate.session import get_spark
from kgcurate.wikidata import P_COMMON_NAME, P_IMAGE, P_INSTANCE_OF, P_PARENT_TAXON, P_SUBCLASS_OF, P_TAXON_NAME
from kgcurate.wikidata import language_order as _language_order

JOB = "ingest-wikidata"
log = logging.getLogger("kgcurate.ingest_wikidata")

JSON_SUFFIXES = (".json", ".json.gz", ".json.bz2", ".jsonl", ".jsonl.gz", ".jsonl.bz2")
NT_SUFFIXES = (".nt", ".nt.gz", ".nt.bz2")
# Wikidata JSON lines average tens of kB (some are MBs): small Arrow batches bound worker memory.
JSON_BATCH_ROWS = 256
NT_BATCH_ROWS = 20000

STR_LIST = pa.list_(pa.string())
# One tagged schema for everything a parse task emits: kind = entity | fact | bad | stat.
STAGED = pa.schema([
    ("kind", pa.string()), ("source_file", pa.string()),
    ("qid", pa.string()), ("label", pa.string()), ("description", pa.string()), ("aliases", STR_LIST),
    ("common_names", STR_LIST), ("taxon_name", pa.string()), ("sitelinks", pa.int32()),
    ("instance_of", STR_LIST), ("subclass_of", STR_LIST), ("parent_taxon", STR_LIST), ("has_image", pa.bool_()),
    ("subject", pa.string()), ("fact", pa.string()), ("value", pa.string()), ("rank", pa.int32()),
    ("offset", pa.int64()), ("reason", pa.string()), ("sample", pa.string()),
    ("records", pa.int64()), ("skipped", pa.int64()), ("bytes", pa.int64()),
])
STAGED_DDL = (
    "kind string, source_file string, qid string, label string, description string, aliases array<string>, "
    "common_names array<string>, taxon_name string, sitelinks int, instance_of array<string>, "
    "subclass_of array<string>, parent_taxon array<string>, has_image boolean, subject string, fact string, "
    "value string, rank int, offset bigint, reason string, sample string, records bigint, skipped bigint, "
    "bytes bigint"
)
ENTITY_COLUMNS = ("qid", "label", "description", "aliases", "common_names", "taxon_name", "sitelinks",
                  "instance_of", "subclass_of", "parent_taxon", "has_image")


def _batch(columns: dict[str, list[Any]], n: int) -> pa.RecordBatch:
    arrays = []
    for f in STAGED:
        values = columns.get(f.name)
        arrays.append(pa.array(values if values is not None else [None] * n, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=STAGED)


def _bad_batch(source: str, bad: list[tuple[int, str, str]], base: list[int]) -> pa.RecordBatch:
    n = len(bad)
    return _batch({"kind": ["bad"] * n, "source_file": [source] * n, "offset": [base[i] for i, _, _ in bad],
                   "reason": [r for _, r, _ in bad], "sample": [s for _, _, s in bad]}, n)


def _stat_batch(stats: dict[str, list[int]]) -> pa.RecordBatch:
    files = list(stats)
    return _batch({"kind": ["stat"] * len(files), "source_file": files,
                   "records": [stats[f][0] for f in files], "skipped": [stats[f][1] for f in files],
                   "bytes": [stats[f][2] for f in files]}, len(files))


def _runs(paths: list[str], starts: list[int]) -> Iterator[tuple[int, int]]:
    """[begin, end) index ranges of consecutive rows from the same (file, split)."""
    begin = 0
    for i in range(1, len(paths) + 1):
        if i == len(paths) or paths[i] != paths[begin] or starts[i] != starts[begin]:
            yield begin, i
            begin = i


def make_line_parser(fmt: str, languages: tuple[str, ...]):
    """The mapInArrow function: (value, file_path, block_start, file_size) batches -> staged rows.

    A partition reads its splits in order, so a per-(file, split) counter numbers the lines.
    """

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from kgcurate.wikidata.json_entity import parse_lines
        from kgcurate.wikidata.ntriples import parse_nt_lines

        seen: dict[tuple[str, int], int] = {}
        stats: dict[str, list[int]] = {}
        for batch in batches:
            lines = batch.column(0).to_pylist()
            paths = batch.column(1).to_pylist()
            starts = batch.column(2).to_pylist()
            sizes = batch.column(3).to_pylist()
            for begin, end in _runs(paths, starts):
                source, start = paths[begin], starts[begin]
                first = seen.get((source, start), 0)
                seen[(source, start)] = first + (end - begin)
                base = [start + first + i for i in range(end - begin)]
                st = stats.setdefault(source, [0, 0, sizes[begin] or 0])
                chunk = lines[begin:end]
                if fmt == "json":
                    res = parse_lines(chunk, languages)
                    st[0] += res.records
                    st[1] += res.skipped
                    if res.rows:
                        n = len(res.rows)
                        cols = {c: [r[c] for r in res.rows] for c in ENTITY_COLUMNS}
                        yield _batch({"kind": ["entity"] * n, "source_file": [source] * n, **cols}, n)
                else:
                    res = parse_nt_lines(chunk, languages)
                    st[0] += res.records
                    st[1] += res.skipped
                    if res.facts:
                        n = len(res.facts)
                        yield _batch({"kind": ["fact"] * n, "source_file": [source] * n,
                                      "subject": [f[0] for f in res.facts], "fact": [f[1] for f in res.facts],
                                      "value": [f[2] for f in res.facts], "rank": [f[3] for f in res.facts]}, n)
                if res.bad:
                    yield _bad_batch(source, res.bad, base)
        if stats:
            yield _stat_batch(stats)

    return parse


def make_document_parser(languages: tuple[str, ...]):
    """mapInArrow function for whole pretty-printed JSON files (one row per file)."""

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from kgcurate.wikidata.json_entity import parse_document

        for batch in batches:
            for text, source, size in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(),
                                          batch.column(3).to_pylist(), strict=True):
                res = parse_document(text, languages)
                if res.rows:
                    n = len(res.rows)
                    cols = {c: [r[c] for r in res.rows] for c in ENTITY_COLUMNS}
                    yield _batch({"kind": ["entity"] * n, "source_file": [source] * n, **cols}, n)
                if res.bad:
                    yield _bad_batch(source, res.bad, list(range(res.records)))
                yield _stat_batch({source: [res.records, res.skipped, size or 0]})

    return parse


def input_format(path: str, forced: str | None) -> str:
    if forced:
        return forced
    name = path.lower().rstrip("/")
    if name.endswith(NT_SUFFIXES):
        return "nt"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    raise UserError(f"cannot tell the format of {path}: name it *.json(.gz|.bz2) or *.nt(.bz2), "
                    "or pass --format json|nt")


def check_inputs(inputs: list[str]) -> None:
    """Fail early, with one line, on a local input that is not there."""
    import glob
    import os

    for path in inputs:
        if "://" in path and not path.startswith("file:"):
            continue
        local = path.split(":", 1)[1] if path.startswith("file:") else path
        if any(ch in local for ch in "*?[") and glob.glob(local):
            continue
        if not os.path.exists(local):
            raise UserError(f"Wikidata input not found: {path} (pass a .json(.gz|.bz2) or .nt(.bz2) dump)")
        if os.path.isfile(local) and not os.access(local, os.R_OK):
            raise UserError(f"Wikidata input not readable: {path} (check its permissions)")


def _read_text(spark: SparkSession, paths: list[str], wholetext: bool = False) -> DataFrame:
    reader = spark.read.format("text")
    if wholetext:
        reader = reader.option("wholetext", "true")
    return reader.load(paths).select(
        "value", F.col("_metadata.file_path").alias("file_path"),
        F.col("_metadata.file_block_start").alias("block_start"),
        F.col("_metadata.file_size").alias("file_size"),
    )


def is_line_per_entity(spark: SparkSession, path: str) -> bool:
    """Look at a JSON input's first lines (a bounded read): dump/JSONL, or one pretty document?"""
    from kgcurate.wikidata.json_entity import looks_line_per_entity

    head = [r[0] for r in spark.read.text(path).limit(5).collect()]
    return looks_line_per_entity(head)


def stage_output(spark: SparkSession, inputs: list[str], forced: str | None, languages: tuple[str, ...],
                 staging: str) -> None:
    """Parse every input into the staged Parquet folder (one Spark job per input group)."""
    groups: dict[str, list[str]] = {"json": [], "nt": [], "document": []}
    for path in inputs:
        fmt = input_format(path, forced)
        if fmt == "json" and not is_line_per_entity(spark, path):
            fmt = "document"
        groups[fmt].append(path)
    conf = spark.conf
    previous = conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    first = True
    try:
        for fmt, paths in groups.items():
            if not paths:
                continue
            if fmt == "document":
                frame = _read_text(spark, paths, wholetext=True).mapInArrow(
                    make_document_parser(languages), STAGED_DDL)
            else:
                conf.set("spark.sql.execution.arrow.maxRecordsPerBatch",
                         str(JSON_BATCH_ROWS if fmt == "json" else NT_BATCH_ROWS))
                text = _read_text(spark, paths)
                if fmt == "json":
                    text = text.withColumn("value", F.col("value").cast("binary"))
                frame = text.mapInArrow(make_line_parser(fmt, languages), STAGED_DDL)
            frame.write.mode("overwrite" if first else "append").parquet(staging)
            first = False
    finally:
        conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous)


def assemble_facts(facts: DataFrame) -> DataFrame:
    """N-Triples facts -> entity rows, grouped by subject with built-in aggregates only.

    Same rules as :func:`kgcurate.wikidata.ntriples.assemble` (the single-machine reference).
    """
    kind = F.col("fact")

    def best_text(k: str):
        return F.min(F.when(kind == k, F.struct("rank", "value")))["value"]

    def sorted_set(k: str):
        return F.array_sort(F.collect_set(F.when(kind == k, F.col("value"))))

    about = facts.where(kind == "about").select(F.col("subject").alias("node"), F.col("value").alias("qid"))
    counts = facts.where(kind == "sitelinks").select(
        F.col("subject").alias("node"), F.col("value").cast("int").alias("n"), F.col("source_file").alias("sl_src"))
    sitelinks = counts.join(about, "node").groupBy("qid").agg(
        F.max("n").alias("sitelinks"), F.min("sl_src").alias("sl_src"))
    grouped = facts.where(~kind.isin("about", "sitelinks")).groupBy(F.col("subject").alias("qid")).agg(
        best_text("label").alias("label"),
        best_text("description").alias("description"),
        sorted_set("alias").alias("aliases"),
        sorted_set(P_COMMON_NAME).alias("common_names"),
        F.min(F.when(kind == P_TAXON_NAME, F.col("value"))).alias("taxon_name"),
        sorted_set(P_INSTANCE_OF).alias("instance_of"),
        sorted_set(P_SUBCLASS_OF).alias("subclass_of"),
        sorted_set(P_PARENT_TAXON).alias("parent_taxon"),
        F.max(kind == P_IMAGE).alias("has_image"),
        F.min("source_file").alias("source_file"),
    )
    empty = F.array().cast("array<string>")
    return grouped.join(sitelinks, "qid", "full_outer").select(
        "qid", "label", "description",
        *[F.coalesce(c, empty).alias(c) for c in ("aliases", "common_names")],
        "taxon_name", F.coalesce("sitelinks", F.lit(0)).cast("int").alias("sitelinks"),
        *[F.coalesce(c, empty).alias(c) for c in ("instance_of", "subclass_of", "parent_taxon")],
        F.coalesce("has_image", F.lit(False)).alias("has_image"),
        F.coalesce("source_file", "sl_src").alias("source_file"),
    )


def conform_entities(df: DataFrame) -> DataFrame:
    """The declared entity columns and types; arrays get non-null elements (as the table says),
    which Parquet staging and outer joins do not preserve and MERGE will not cast away."""
    out = []
    for f in tables.schema(tables.ENTITIES).fields:
        if f.name in ("aliases", "common_names", "instance_of", "subclass_of", "parent_taxon"):
            out.append(F.transform(F.col(f.name), lambda x: F.coalesce(x, F.lit(""))).alias(f.name))
        else:
            out.append(F.col(f.name).cast(f.dataType).alias(f.name))
    return df.select(*out)


def upsert_entities(spark: SparkSession, lake_root: str, rows: DataFrame) -> dict[str, int]:
    """MERGE on qid: new qids are inserted, known ones replaced (a newer dump wins).

    The source must hold one row per qid; when several input files carry the same entity, the
    row from the greatest source_file wins, so the outcome does not depend on partitioning.
    """
    from delta.tables import DeltaTable
    from pyspark.sql.window import Window

    w = Window.partitionBy("qid").orderBy(F.col("source_file").desc())
    one = rows.withColumn("_n", F.row_number().over(w)).where(F.col("_n") == 1).drop("_n")
    lake.ensure(spark, lake_root, tables.ENTITIES)
    target = DeltaTable.forPath(spark, lake.table_path(lake_root, tables.ENTITIES))
    source = conform_entities(one).alias("s")
    (
        target.alias("t").merge(source, "t.qid = s.qid")
        .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    )
    metrics = target.history(1).select("operation", "operationMetrics").first()
    if metrics is None or metrics["operation"] != "MERGE":
        return {}
    return {k: int(v) for k, v in (metrics["operationMetrics"] or {}).items() if v.isdigit()}


def commit(spark: SparkSession, lake_root: str, staging: str, run_id: str, started: datetime) -> dict[str, Any]:
    staged = spark.read.parquet(staging)
    kinds = F.col("kind")
    entity_rows = staged.where(kinds == "entity").select("source_file", *ENTITY_COLUMNS)
    nt_rows = assemble_facts(staged.where(kinds == "fact"))
    rows = entity_rows.unionByName(nt_rows).persist()
    try:
        merged = upsert_entities(spark, lake_root, rows)
        per_file_rows = rows.groupBy("source_file").agg(F.count("*").alias("rows_out"))
        bad = staged.where(kinds == "bad").select(
            F.lit(JOB).alias("job"), F.lit(run_id).alias("run_id"), "source_file", "offset", "reason", "sample",
        ).dropDuplicates(["source_file", "offset", "reason"])
        lake.merge_insert_only(spark, lake_root, tables.BAD_RECORDS, bad, ["job", "source_file", "offset", "reason"])
        bad_counts = staged.where(kinds == "bad").groupBy("source_file").agg(F.count("*").alias("bad_records"))
        stats = staged.where(kinds == "stat").groupBy("source_file").agg(
            F.sum("records").alias("records"), F.sum("skipped").alias("filtered"), F.max("bytes").alias("bytes"))
        logs = (
            stats.join(per_file_rows, "source_file", "left").join(bad_counts, "source_file", "left")
            .select(
                F.lit(JOB).alias("job"), F.lit(run_id).alias("run_id"), "source_file", F.lit("ok").alias("status"),
                "records", F.coalesce("rows_out", F.lit(0)).alias("rows_out"),
                F.coalesce("bad_records", F.lit(0)).cast("long").alias("bad_records"), "filtered", "bytes",
                F.lit(None).cast("string").alias("error"), F.lit(started).alias("started_at"),
                F.current_timestamp().alias("finished_at"),
            )
        )
        lake.append(spark, lake_root, tables.INGEST_LOG, logs)
    finally:
        rows.unpersist()
    totals = (
        lake.read(spark, lake_root, tables.INGEST_LOG).where(F.col("run_id") == run_id)
        .agg(F.count("*").alias("files"), F.sum("records").alias("records"), F.sum("rows_out").alias("rows_out"),
             F.sum("bad_records").alias("bad_records"), F.sum("filtered").alias("skipped"))
        .first()
    )
    summary = {k: int(totals[k] or 0) for k in totals.asDict()}
    summary["inserted"] = int(merged.get("numTargetRowsInserted", 0))
    summary["updated"] = int(merged.get("numTargetRowsUpdated", 0))
    return summary


def _log_failure(spark: SparkSession, lake_root: str, inputs: list[str], run_id: str, started: datetime,
                 error: str) -> None:
    """A run that died mid-way still says so in ingest_log (status failed), one row per input."""
    rows = [(JOB, run_id, p, "failed", None, None, None, None, None, error[:500], started,
             datetime.now(timezone.utc)) for p in inputs]
    try:
        lake.append(spark, lake_root, tables.INGEST_LOG,
                    spark.createDataFrame(rows, tables.schema(tables.INGEST_LOG)))
    except Exception:  # noqa: BLE001 - best effort: the original error is what the user needs
        log.exception("%s: could not record the failure in ingest_log", JOB)


def _inputs(cfg: dict[str, Any]) -> list[str]:
    value = cfg["wikidata"].get("input")
    if not value:
        raise UserError("no Wikidata input given: pass a dump file (or set wikidata.input in the config)")
    return [value] if isinstance(value, str) else [str(v) for v in value]


def execute(spark: SparkSession, cfg: dict[str, Any]) -> dict[str, Any]:
    wd = cfg["wikidata"]
    lake_root = cfg["lake"]
    inputs = _inputs(cfg)
    check_inputs(inputs)
    try:
        languages = _language_order(wd.get("languages"))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    forced = wd.get("format")
    if forced not in (None, "json", "nt"):
        raise UserError(f"unknown Wikidata format {forced!r}: use json or nt")
    for path in inputs:
        input_format(path, forced)  # an unknown file type fails before any Spark work
    run_id = wd.get("run_id") or f"{JOB}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staging = f"{lake.normalize_root(lake_root)}/_staging/{run_id}"
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    try:
        stage_output(spark, inputs, forced, languages, staging)
        summary = commit(spark, lake_root, staging, run_id, started)
    except UserError:
        raise
    except Exception as exc:
        _log_failure(spark, lake_root, inputs, run_id, started, f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    finally:
        lake.remove_path(spark, staging)
    summary.update(run_id=run_id, inputs=len(inputs), seconds=round(time.monotonic() - t0, 2))
    return summary



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="Wikidata dump: .json/.json.gz/.json.bz2 (or one pretty-printed entity file) "
                             "or truthy N-Triples .nt/.nt.bz2")
    parser.add_argument("--languages", help="comma-separated label languages in priority order (default en); "
                        "mul is always the last fallback")
    parser.add_argument("--format", choices=("json", "nt"), help="input format (default: from the file name)")


def apply_args(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    if args.inputs:
        cfg["wikidata"]["input"] = list(args.inputs)
    if args.languages:
        cfg["wikidata"]["languages"] = [x.strip() for x in args.languages.split(",") if x.strip()]
    config.set_if_given(cfg, "wikidata.format", args.format)


def run(args: argparse.Namespace, cfg: dict[str, Any]) -> int:
    apply_args(args, cfg)
    _inputs(cfg)
    check_inputs(_inputs(cfg))
    spark = get_spark(f"kgcurate-{JOB}", cfg["spark"]["conf"])
    s = execute(spark, cfg)
    print(f"{JOB}: {s['files']} files, {s['records']:,} records, {s['rows_out']:,} entities "
          f"({s['inserted']:,} new, {s['updated']:,} replaced), {s['skipped']:,} non-items skipped, "
          f"{s['bad_records']:,} bad records, in {s['seconds']}s")
    return 0
