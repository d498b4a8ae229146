"""``kgcurate ingest-wikidata``: a Wikidata JSON or truthy N-Triples dump -> ``entities``.

Reading goes through Spark's text source, so a ``.bz2`` dump is split across the cluster (a
``.gz`` one is read by one task per file: gzip is not splittable). Lines are parsed in Arrow
batches by the pure readers in :mod:`kgcurate.wikidata`. Everything a task emits (entity rows or
N-Triples facts, bad records, per-file counts) is staged once as Parquet, then committed: the
entities by an upsert MERGE on ``qid`` (re-ingesting replaces, never duplicates), bad records by
an insert-only MERGE, and one ``ingest_log`` row per input file last.

Offsets of bad records: Spark's text source does not expose byte offsets, so ``offset`` is the
line's index within its input split plus the split's start byte (``_metadata.file_block_start``).
Files are split only beyond ``spark.sql.files.maxPartitionBytes`` (128 MB; see :func:`_write_group`), so for
``.gz`` files and files under 128 MB that is exactly the 0-based line number in the file; for a split
``.bz2``/plain dump it is ``split start + line index``.

Bad input never aborts the run (issue #16): a bad line is a bad record; a bad *file* is an
``ingest_log`` row with ``status = failed`` and the cause (plus one bad record at the line where
reading stopped), and the other files are ingested. Files are listed on the driver and checked
cheaply first (size, compression magic, bzip2 end-of-stream marker: a few bytes each); what only
reading can reveal (a cut ``.gz``, a corrupt block) fails the Spark job, whose error names the
file: that file is then read again with ``ignoreCorruptFiles`` (keeping the lines before the
damage) and the rest re-run strictly. Totals come from this run's own rows and its own MERGE.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import __version__, lake, run_ids, run_notes, tables, units
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError
from kgcurate.wikidata import MUL as _MUL
from kgcurate.wikidata import P_COMMON_NAME, P_IMAGE, P_INSTANCE_OF, P_PARENT_TAXON, P_SUBCLASS_OF, P_TAXON_NAME
from kgcurate.wikidata import language_order as _language_order

JOB = "ingest-wikidata"
log = logging.getLogger("kgcurate.ingest_wikidata")


@dataclass
class IngestWikidataSummary(Summary):
    """One ingest-wikidata run: files (the unit of per-file accounting, though a dump is read split by
    lines) by status, records, entities and what the MERGE inserted and replaced. ``failed`` names
    every failed file with its cause."""

    files: int
    ok: int
    records: int
    rows_out: int
    bad_records: int
    skipped: int  # non-items skipped
    failed: list[tuple[str, str | None]]
    inserted: int
    updated: int
    run_id: str = ""
    inputs: int = 0
    seconds: float = 0.0
    done_by: str | None = None  # nothing read: the earlier run that ingested these same files (--force re-reads)
    allow_failed_files: bool = False  # wikidata.allow_failed_files: failed files are a warning and exit 0

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
    ("records", pa.int64()), ("skipped", pa.int64()), ("bytes", pa.int64()), ("lines", pa.int64()),
])
STAGED_SPARK = tables.from_arrow(STAGED)  # the Spark side, derived: declared once, in Arrow
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
    """Per file: [records, skipped, bytes, lines] where lines = the last line position seen + 1."""
    files = list(stats)
    return _batch({"kind": ["stat"] * len(files), "source_file": files,
                   "records": [stats[f][0] for f in files], "skipped": [stats[f][1] for f in files],
                   "bytes": [stats[f][2] for f in files], "lines": [stats[f][3] for f in files]}, len(files))


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
                st = stats.setdefault(source, [0, 0, sizes[begin] or 0, 0])
                st[3] = max(st[3], base[-1] + 1)
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
    """mapInArrow function for whole JSON documents (one row per file, its text as bytes: not UTF-8 is a bad
    record)."""

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
                yield _stat_batch({source: [res.records, res.skipped, size or 0, res.records]})

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


def _is_pattern_or_folder(path: str) -> bool:
    import os

    local = path.split(":", 1)[1] if path.startswith("file:") else path
    return any(ch in path for ch in "*?[{") or ("://" not in path and os.path.isdir(local))


def check_inputs(inputs: list[str]) -> None:
    """Fail early, with one line, on a local input that is not there. A ``{a,b}`` pattern, which Python's glob
    does not know, is left to :func:`list_files` (Hadoop's globStatus), which says the same when it matches
    nothing."""
    import glob
    import os

    for path in inputs:
        if "://" in path and not path.startswith("file:"):
            continue
        local = path.split(":", 1)[1] if path.startswith("file:") else path
        if any(ch in local for ch in "*?[") and glob.glob(local):
            continue
        if "{" in local and not os.path.exists(local):
            continue
        if not os.path.exists(local):
            raise UserError(f"Wikidata input not found: {path} (pass a .json(.gz|.bz2) or .nt(.bz2) dump)")
        if os.path.isfile(local) and not os.access(local, os.R_OK):
            raise UserError(f"Wikidata input not readable: {path} (check its permissions)")


@dataclass
class InputFile:
    """One input file as listed on the driver: ``path`` for Hadoop/Spark to open, ``uri`` as
    Spark's ``_metadata.file_path`` spells it (the ``source_file`` of every row), its size, the
    format of the input it came from, and the problem found before reading (None: none yet)."""

    path: str
    uri: str
    size: int
    fmt: str
    problem: str | None = None
    readable: bool = True  # False: nothing to read (empty, wrong compression); True with a problem: read tolerantly
    mtime: int = 0  # modification time as listed, ms since the epoch (a replaced dump has a new one)


# bzip2's end-of-stream marker (48 bits, sqrt(pi)), then a 32-bit CRC, then padding to a byte:
# a complete stream's last 11 bytes hold it at one of 8 bit positions; a cut file does not.
_BZ2_EOS = 0x177245385090
_FAILED_READ = re.compile(r"while reading file (.+?)\.(?:\s|$)")


def bz2_complete(tail: bytes) -> bool:
    """Whether the last bytes of a ``.bz2`` file end with the end-of-stream marker (and its CRC)."""
    if len(tail) < 10:
        return False
    bits = int.from_bytes(tail[-11:], "big")
    return any((bits >> (32 + pad)) & 0xFFFFFFFFFFFF == _BZ2_EOS for pad in range(8))


def precheck(name: str, size: int, head: bytes, tail: bytes) -> tuple[str | None, bool]:
    """(problem, readable) from a file's size, first and last bytes: the cheap checks that catch
    an empty file, a file that is not the compression its name says, and a cut bzip2 dump (whose
    lines before the cut are still worth reading) without reading it."""
    name = name.lower()
    if size == 0:
        return "empty file (0 bytes)", False
    if name.endswith(".bz2"):
        if not (head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0"):
            return "not a bzip2 file (no BZh header) though named .bz2", False
        if not bz2_complete(tail):
            return "truncated bzip2 stream (no end-of-stream marker)", True
    elif name.endswith(".gz") and head[:2] != b"\x1f\x8b":
        return "not a gzip file (no gzip header) though named .gz", False
    return None, True


def _hadoop_fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return jvm, hpath, hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def list_files(spark: SparkSession, inputs: list[str], forced: str | None) -> list[InputFile]:
    """Every input file, globs and folders expanded on the driver (as Spark would: a folder's
    visible files, not recursive), so that each gets its own ingest_log row even when Spark reads
    no line of it."""
    out: list[InputFile] = []
    for raw in inputs:
        jvm, hpath, fs = _hadoop_fs(spark, raw)
        statuses = list(fs.globStatus(hpath) or [])
        if not statuses:
            raise UserError(f"Wikidata input not found: {raw} (pass a .json(.gz|.bz2) or .nt(.bz2) dump)")
        found = 0
        for st in statuses:
            children = list(fs.listStatus(st.getPath())) if st.isDirectory() else [st]
            for ch in children:
                if ch.isDirectory() or ch.getPath().getName().startswith(("_", ".")):
                    continue
                path = str(ch.getPath().toString())
                # Hadoop spells a local URI file:/// or file:/ depending on the call; Spark's file_path is file:/
                uri = re.sub(r"^file:/+", "file:/", str(ch.getPath().toUri().toString()))
                out.append(InputFile(path, uri, int(ch.getLen()), input_format(path, forced),
                                     mtime=int(ch.getModificationTime())))
                found += 1
        if not found:
            raise UserError(f"no Wikidata file in {raw} (hidden files and subfolders are not read)")
    return list({f.uri: f for f in out}.values())


def _read_bytes(spark: SparkSession, f: InputFile, tail: int) -> tuple[bytes, bytes]:
    """The first 4 and the last ``tail`` bytes of a file, through Hadoop (local, s3a, hdfs alike)."""
    jvm, hpath, fs = _hadoop_fs(spark, f.path)
    io = jvm.org.apache.commons.io.IOUtils
    stream = fs.open(hpath)
    try:
        head = bytes(io.toByteArray(stream, min(4, f.size)))
        end = b""
        if tail and f.size > 4:
            n = min(tail, f.size - 4)
            stream.seek(f.size - n)
            end = bytes(io.toByteArray(stream, n))
    finally:
        stream.close()
    return head, (end or head)  # a file of at most 4 bytes: its tail is its head


def check_files(spark: SparkSession, files: list[InputFile]) -> None:
    """Run :func:`precheck` on every file (a few bytes each); sets ``problem`` and ``readable``."""
    for f in files:
        name = f.uri.lower()
        if f.size and name.endswith((".bz2", ".gz")):
            head, tail = _read_bytes(spark, f, 11 if name.endswith(".bz2") else 0)
        else:
            head, tail = b"", b""
        f.problem, f.readable = precheck(name, f.size, head, tail)


def _read_text(spark: SparkSession, paths: list[str], wholetext: bool = False, tolerant: bool = False) -> DataFrame:
    reader = spark.read.format("text")
    if wholetext:
        reader = reader.option("wholetext", "true")
    if tolerant:  # a read error ends that file (lines read so far are kept) instead of failing the job
        reader = reader.option("ignoreCorruptFiles", "true")
    return reader.load(paths).select(
        "value", F.col("_metadata.file_path").alias("file_path"),
        F.col("_metadata.file_block_start").alias("block_start"),
        F.col("_metadata.file_size").alias("file_size"),
    )


def is_line_per_entity(spark: SparkSession, path: str) -> bool:
    """Look at a JSON input's first lines (a bounded read): dump/JSONL, or one pretty document?
    Read tolerantly: a damaged file is judged by what could be read (the parse job reports it)."""
    from kgcurate.wikidata.json_entity import looks_line_per_entity

    head = [r[0] for r in spark.read.option("ignoreCorruptFiles", "true").text(path).limit(5).collect()]
    return looks_line_per_entity(head)


def _key(path: str) -> str:
    """A file's identity whatever the spelling: ``file:///x`` / ``file:/x``, %-escaped or not."""
    return re.sub(r"^file:/+", "file:/", unquote(path))


def read_failure(exc: BaseException) -> tuple[str, str] | None:
    """(file, cause) when a Spark job failed because one input file could not be read, from the
    JVM exception chain (Spark's FAILED_READ_FILE error names the file; its cause says why)."""
    java = getattr(exc, "java_exception", None)
    chain: list[str] = []
    while java is not None and len(chain) < 20:
        chain.append(str(java.toString()))
        java = java.getCause()
    if not chain:  # no JVM object: the message still holds the trace
        chain = [ln.strip().removeprefix("Caused by: ") for ln in str(exc).splitlines()
                 if "while reading file" in ln or ln.startswith("Caused by:")]
    for i, text in enumerate(chain):
        m = _FAILED_READ.search(text)
        if m:
            cause = chain[i + 1] if i + 1 < len(chain) else "read error"
            return m.group(1), cause.splitlines()[0][:300]
    return None


def _write_group(spark: SparkSession, fmt: str, files: list[InputFile], languages: tuple[str, ...],
                 out: str, tolerant: bool) -> None:
    paths = [f.path for f in files]
    # Lines and documents as bytes: the parsers decode them, so text that is not UTF-8 is a bad record (as
    # a string column, Arrow's to_pylist raised UnicodeDecodeError in the worker and aborted the whole job).
    text = _read_text(spark, paths, wholetext=fmt == "document", tolerant=tolerant).withColumn(
        "value", F.col("value").cast("binary"))
    parser = make_document_parser(languages) if fmt == "document" else make_line_parser(fmt, languages)
    frame = text.mapInArrow(parser, STAGED_SPARK)
    # A file under maxPartitionBytes (128 MB) is one split, so a bad record's offset is its line number: Spark
    # splits at min(maxPartitionBytes, max(openCostInBytes, all bytes / minPartitionNum)), and minPartitionNum
    # defaults to the parallelism (a 21 MB file was two splits on 2 cores). The cost: files are packed into
    # tasks of up to 128 MB, about 2 s of parsing each, where a few mid-size files had a task each.
    with lake.session_conf(spark, "spark.sql.files.minPartitionNum", "1"):
        frame.write.mode("overwrite").parquet(out)


def stage_output(spark: SparkSession, files: list[InputFile], languages: tuple[str, ...],
                 staging: str) -> list[str]:
    """Parse every readable file into Parquet folders under ``staging``; returns the folders.

    Per format, one strict Spark job reads the files without a known problem; when it fails on a
    file (Spark names it), that file gets the cause as its problem and the job is re-run without
    it. Files with a problem are then read in one tolerant job that keeps their lines up to the
    damage. Other failures propagate (the run is logged as failed)."""
    groups: dict[str, list[InputFile]] = {"json": [], "nt": [], "document": []}
    for f in files:
        if not f.readable:
            continue
        fmt = f.fmt
        if fmt == "json" and not is_line_per_entity(spark, f.path):
            fmt = "document"
        groups[fmt].append(f)
    folders: list[str] = []
    for fmt, group in groups.items():
        # the document group reads as many rows a batch as the nt group (as when it inherited nt's setting)
        rows = JSON_BATCH_ROWS if fmt == "json" else NT_BATCH_ROWS
        with lake.session_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch", str(rows)):
            strict = [f for f in group if f.problem is None]
            while strict:
                out = f"{staging}/{fmt}-{len(folders)}"
                try:
                    _write_group(spark, fmt, strict, languages, out, tolerant=False)
                    folders.append(out)
                    break
                except Exception as exc:  # noqa: BLE001 - a bad file is found and set aside, others re-run
                    failure = read_failure(exc)
                    bad = [f for f in strict if failure and _key(f.uri) == _key(failure[0])]
                    if not bad:
                        raise
                    log.warning("%s: cannot read %s (%s); reading the other files again", JOB, bad[0].uri,
                                failure[1])
                    bad[0].problem = f"read error: {failure[1]}"
                    strict.remove(bad[0])
                    lake.remove_path(spark, out)
            damaged = [f for f in group if f.problem is not None]
            if damaged:
                out = f"{staging}/{fmt}-{len(folders)}-tolerant"
                _write_group(spark, fmt, damaged, languages, out, tolerant=True)
                folders.append(out)
    return folders


def assemble_facts(facts: DataFrame) -> DataFrame:
    """N-Triples facts -> entity rows, grouped by (source_file, subject) with built-in aggregates only.

    Same rules as :func:`kgcurate.wikidata.ntriples.assemble` (the single-machine reference), file by
    file: an entity in two dumps is two rows, and :func:`upsert_entities` keeps the greatest
    source_file's, as for JSON (merged, an older dump's parent taxon stayed beside the newer one's).
    """
    kind = F.col("fact")

    def best_text(k: str):
        return F.min(F.when(kind == k, F.struct("rank", "value")))["value"]

    def sorted_set(k: str):
        return F.array_sort(F.collect_set(F.when(kind == k, F.col("value"))))

    about = facts.where(kind == "about").select(
        F.col("subject").alias("node"), F.col("value").alias("qid"), "source_file")
    counts = facts.where(kind == "sitelinks").select(
        F.col("subject").alias("node"), F.col("value").cast("int").alias("n"), "source_file")
    sitelinks = counts.join(about, ["node", "source_file"]).groupBy("qid", "source_file").agg(
        F.max("n").alias("sitelinks"))
    grouped = facts.where(~kind.isin("about", "sitelinks")).groupBy(F.col("subject").alias("qid"), "source_file").agg(
        best_text("label").alias("label"),
        best_text("description").alias("description"),
        sorted_set("alias").alias("aliases"),
        sorted_set(P_COMMON_NAME).alias("common_names"),
        F.min(F.when(kind == P_TAXON_NAME, F.col("value"))).alias("taxon_name"),
        sorted_set(P_INSTANCE_OF).alias("instance_of"),
        sorted_set(P_SUBCLASS_OF).alias("subclass_of"),
        sorted_set(P_PARENT_TAXON).alias("parent_taxon"),
        F.max(kind == P_IMAGE).alias("has_image"),
    )
    empty = F.array().cast("array<string>")
    return grouped.join(sitelinks, ["qid", "source_file"], "full_outer").select(
        "qid", "label", "description",
        *[F.coalesce(c, empty).alias(c) for c in ("aliases", "common_names")],
        "taxon_name", F.col("sitelinks").cast("int").alias("sitelinks"),  # null: no count in this dump
        *[F.coalesce(c, empty).alias(c) for c in ("instance_of", "subclass_of", "parent_taxon")],
        F.coalesce("has_image", F.lit(False)).alias("has_image"),
        "source_file",
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
    The counts are the ones this MERGE returns: reading the table's history instead showed an
    earlier MERGE's (or another writer's) counts when this one had nothing to commit.
    """
    from pyspark.sql.window import Window

    w = Window.partitionBy("qid").orderBy(F.col("source_file").desc())
    one = rows.withColumn("_n", F.row_number().over(w)).where(F.col("_n") == 1).drop("_n")
    got = lake.merge(spark, lake_root, tables.ENTITIES, conform_entities(one), "t.qid = s.qid",
                     matched_update_when="true")
    return {"inserted": got["numTargetRowsInserted"], "updated": got["numTargetRowsUpdated"]}


NOTE_KEY = "kgcurate.ingest-wikidata"  # the key of this stage's note on its entities commit


def inputs_record(files: list[InputFile], languages: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """What a run's entities are made of: each file as listed (URI, size, modification time, format),
    the label languages and kgcurate's version. Equal records, equal entities (the MERGE replaces a
    qid's row with the same one)."""
    return {"version": __version__, "languages": list(languages),
            "files": sorted([f.uri, f.size, f.mtime, f.fmt] for f in files)}


def commit_note(run_id: str, record: dict[str, Any]) -> str:
    """The note a run leaves on its entities commit: its run_id and :func:`inputs_record`."""
    return run_notes.write(NOTE_KEY, run_id, record)


def noted_languages(note: str | None) -> list[str] | None:
    """The label languages (``mul``, always the last fallback, left out) of the ingest run that left ``note``
    on its entities commit; None for another writer's note, or none."""
    got = run_notes.read(note, NOTE_KEY)
    langs = got[1].get("languages") if got is not None else None
    if not isinstance(langs, list) or not all(isinstance(x, str) for x in langs):
        return None
    return [x for x in langs if x != _MUL] or None


def ingested_languages(spark: SparkSession, lake_root: str) -> list[str] | None:
    """The label languages of the ingest that last changed ``entities`` (:func:`noted_languages`): what its
    labels, aliases and common names are in, whatever the config of a later stage says."""
    return noted_languages(lake.last_data_note(spark, lake_root, tables.ENTITIES))


def noted_run(note: str | None, record: dict[str, Any]) -> str | None:
    """The run_id in ``note`` (the newest entities commit's) when that run read exactly ``record``'s
    files and options; None for any other note, or none (another writer, an older kgcurate)."""
    got = run_notes.read(note, NOTE_KEY)
    return got[0] if got is not None and got[1] == record else None


def done_before(spark: SparkSession, lake_root: str, files: list[InputFile], record: dict[str, Any]) -> str | None:
    """The run that already ingested these files unchanged, with these options (``record``, from
    :func:`inputs_record`; None: read them).

    Skip-if-done for a dump cannot key on its path alone: ``latest-all.json.bz2`` is the same name for
    every weekly dump. So the entities MERGE is noted with its inputs (:func:`commit_note`), and a run
    is repeated only when the newest commit that changed ``entities`` carries the same record and
    ``ingest_log`` holds that run's ``ok`` row for every file (a failed file is read again). All or
    nothing: re-reading only some files would let them replace rows that a skipped file with a
    greater name won before."""
    run_id = noted_run(lake.last_data_note(spark, lake_root, tables.ENTITIES), record)
    if run_id is None:
        return None
    ok = {r[0] for r in lake.read(spark, lake_root, tables.INGEST_LOG)
          .where((F.col("job") == JOB) & (F.col("run_id") == run_id) & (F.col("status") == units.OK))
          .select("source_file").collect()}  # one row per file of that run
    return run_id if ok >= {f.uri for f in files} else None


LOG_FIELDS = ("source_file", "status", "records", "rows_out", "bad_records", "filtered", "bytes", "error")


def file_logs(files: list[InputFile], stats: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One ingest_log row per input file from the staged per-file counts, keyed by :func:`_key`
    (pure, so testable).

    A file with a problem is ``failed`` with the cause (and up to which line offset it was read);
    its problem is one more record and one more bad record, as ingest-wat counts a file-level
    problem. A non-empty file of which Spark read no line at all (a compressed file holding
    nothing) is failed too: a dump is never empty, so saying "ok, 0 records" would hide it. So is a
    file whose every record is bad (no entity, no skipped non-item): it is not a dump at all.
    """
    out = []
    for f in files:
        st = stats.get(_key(f.uri), {})
        lines = int(st.get("lines") or 0)
        problem = f.problem
        if problem is None and not st:
            problem = "no lines to read (empty after decompression)"
        if problem is not None and lines:
            problem = f"{problem}; lines before offset {lines:,} were read and kept"
        bad = int(st.get("bad_records") or 0)
        if problem is None and bad and not st.get("rows_out") and not st.get("skipped"):
            # every record bad, none an entity or a skipped non-item: an HTML error page or another
            # file under a dump's name, not a dump whose lines went wrong; failed, so it is read again
            problem = f"not a Wikidata dump: none of its {bad:,} records is an entity (each is a bad record)"
        extra = 1 if problem is not None else 0
        out.append({
            "source_file": f.uri, "status": "failed" if problem else "ok",
            "records": int(st.get("records") or 0) + extra, "rows_out": int(st.get("rows_out") or 0),
            "bad_records": int(st.get("bad_records") or 0) + extra, "filtered": int(st.get("skipped") or 0),
            "bytes": f.size, "error": problem[:500] if problem else None, "lines": lines,
        })
    return out


def commit(spark: SparkSession, lake_root: str, folders: list[str], files: list[InputFile], run_id: str,
           started: datetime, note: str) -> IngestWikidataSummary:
    """Staged rows -> entities (its commit noted with ``note``), bad_records, then one ingest_log row
    per file (last)."""
    staged = (spark.read.schema(STAGED_SPARK).parquet(*folders) if folders
              else spark.createDataFrame([], STAGED_SPARK))
    kinds = F.col("kind")
    entity_rows = staged.where(kinds == "entity").select("source_file", *ENTITY_COLUMNS)
    nt_rows = assemble_facts(staged.where(kinds == "fact"))
    rows = entity_rows.unionByName(nt_rows).persist()
    try:
        with lake.commit_note(spark, note):
            merged = upsert_entities(spark, lake_root, rows)
        stats: dict[str, dict[str, int]] = {}
        for r in staged.where(kinds == "stat").groupBy("source_file").agg(
                F.sum("records").alias("records"), F.sum("skipped").alias("skipped"),
                F.max("lines").alias("lines")).collect():
            stats.setdefault(_key(r["source_file"]), {}).update(records=r["records"], skipped=r["skipped"],
                                                          lines=r["lines"])
        for r in rows.groupBy("source_file").agg(F.count("*").alias("n")).collect():
            stats.setdefault(_key(r["source_file"]), {})["rows_out"] = r["n"]
        for r in staged.where(kinds == "bad").groupBy("source_file").agg(F.count("*").alias("n")).collect():
            stats.setdefault(_key(r["source_file"]), {})["bad_records"] = r["n"]
    finally:
        rows.unpersist()
    logs = file_logs(files, stats)
    bad = staged.where(kinds == "bad").select("source_file", "offset", "reason", "sample")
    file_bad = [(f.uri, row["lines"], f.problem or row["error"], None)
                for f, row in zip(files, logs, strict=True) if row["status"] == "failed"]
    if file_bad:  # the file-level problem, at the line where reading stopped
        bad = bad.unionByName(spark.createDataFrame(file_bad, "source_file string, offset bigint, reason string, "
                                                              "sample string"))
    lake.record_bad_input(spark, lake_root, JOB, run_id, bad if any(row["bad_records"] for row in logs) else [])
    now = datetime.now(timezone.utc)
    log_rows = [(JOB, run_id, *(row[k] for k in LOG_FIELDS), started, now) for row in logs]
    lake.append(spark, lake_root, tables.INGEST_LOG,
                spark.createDataFrame(log_rows, tables.schema(tables.INGEST_LOG)))
    tally = units.tally(units.results(logs), limit=len(logs))  # every failed file named
    return IngestWikidataSummary(
        files=tally.total, ok=tally.ok,
        **{k: sum(row[k] for row in logs) for k in ("records", "rows_out", "bad_records")},
        skipped=sum(row["filtered"] for row in logs), failed=tally.failed_units,
        inserted=int(merged["inserted"]), updated=int(merged["updated"]))


def _error_line(exc: BaseException) -> str:
    """One non-empty line for a failure: a Py4J error's first line only says which call failed,
    so take the JVM's innermost cause."""
    java = getattr(exc, "java_exception", None)
    text = ""
    while java is not None:
        text = str(java.toString()) or text
        java = java.getCause()
    first = (text or str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else 'no message'}"[:500]


def _log_failure(spark: SparkSession, lake_root: str, inputs: list[str], run_id: str, started: datetime,
                 error: str) -> None:
    """A run that died mid-way (not a bad input: those are logged per file) still says so in
    ingest_log (status failed), one row per input."""
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


def check_config(cfg: dict[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """(inputs, languages) once the local inputs exist, the languages and the format are valid and every named
    file's type is known: the checks that need no Spark (s3a:// inputs are listed by Hadoop later)."""
    wd = cfg["wikidata"]
    inputs = _inputs(cfg)
    check_inputs(inputs)
    languages = _language_order(wd.get("languages"))
    forced = wd.get("format")
    if forced not in (None, "json", "nt"):
        raise UserError(f"unknown Wikidata format {forced!r}: use json or nt")
    for path in inputs:  # an unknown file type fails before any Spark work (globs, folders: per file later)
        if not _is_pattern_or_folder(path):
            input_format(path, forced)
    return inputs, languages


def execute(ctx: Context, cfg: dict[str, Any]) -> IngestWikidataSummary:
    spark = ctx.spark
    wd = cfg["wikidata"]
    lake_root = cfg["lake"]
    inputs, languages = check_config(cfg)
    forced = wd.get("format")
    run_id = run_ids.new(JOB)
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    files = list_files(spark, inputs, forced)
    record = inputs_record(files, languages)
    earlier = None if wd.get("force") else done_before(spark, lake_root, files, record)
    if earlier is not None:
        log.info("%s: all %d files already ingested unchanged by run %s (use --force to re-read them)",
                 JOB, len(files), earlier)
        return IngestWikidataSummary(files=len(files), ok=len(files), records=0, rows_out=0, bad_records=0,
                                     skipped=0, failed=[], inserted=0, updated=0, inputs=len(inputs),
                                     seconds=round(time.monotonic() - t0, 2), done_by=earlier)
    note = commit_note(run_id, record)
    with lake.staging_folder(spark, lake_root, run_id) as staging:
        try:
            check_files(spark, files)
            folders = stage_output(spark, files, languages, staging)
            summary = commit(spark, lake_root, folders, files, run_id, started, note)
        except UserError:
            raise
        except Exception as exc:
            _log_failure(spark, lake_root, [f.uri for f in files], run_id, started, _error_line(exc))
            raise
    summary.run_id, summary.inputs, summary.seconds = run_id, len(inputs), round(time.monotonic() - t0, 2)
    summary.allow_failed_files = bool(wd.get("allow_failed_files"))
    return summary


def skip_reason(cfg: dict[str, Any]) -> str | None:
    """``kgcurate run`` skips this stage when no dump is configured."""
    return None if cfg["wikidata"].get("input") else "no wikidata.input configured"


def failure_line(failed: list[tuple[str, str | None]], files: int, limit: int = 5, rows_out: int = 0,
                 level: str = "error") -> str | None:
    """The one stderr line naming the ``failed`` (path, error) of ``files`` (None when none did); ``rows_out``:
    entities written all the same (a damaged file keeps the lines before its damage)."""
    if not failed:
        return None
    named = "; ".join(f"{unquote(path.rsplit('/', 1)[-1])} ({error})" for path, error in failed[:limit])
    more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
    rest = ("the others were ingested" if len(failed) < files else
            f"no file was read whole ({rows_out:,} entities from before the damage were kept)" if rows_out else
            "nothing was ingested")
    return (f"kgcurate: {level}: {len(failed)} of {files} Wikidata input files failed: {named}{more} "
            f"(see table ingest_log); {rest}")


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    check_config(cfg)  # before Spark starts
    return {}


def report(s: IngestWikidataSummary, args: argparse.Namespace) -> int:
    if s.done_by:
        print(f"{JOB}: nothing to do: {s.files} files, already ingested unchanged by run {s.done_by} "
              "(use --force to re-read)")
        return 0
    print(f"{JOB}: {s.files} files ({s.ok} ok, {s.files - s.ok} failed), {s.records:,} records, "
          f"{s.rows_out:,} entities ({s.inserted:,} new, {s.updated:,} replaced), "
          f"{s.skipped:,} non-items skipped, {s.bad_records:,} bad records, in {s.seconds}s")
    allowed = s.allow_failed_files and len(s.failed) < s.files  # all failed: a bad run, not a bad file
    line = failure_line(s.failed, s.files, rows_out=s.rows_out, level="warning" if allowed else "error")
    if line:
        print(line, file=sys.stderr)
    return 1 if line and not allowed else 0
