"""The lake: Delta tables under one root, and the few write patterns every stage uses.

Every write is one Delta commit, so a failed or killed run leaves a table as it was; the
insert-only MERGE and ``replaceWhere`` patterns make re-runs idempotent.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Row, SparkSession

from kgcurate import bad_input, lease_rules, paths, tables
from kgcurate.bad_input import BadInput
from kgcurate.errors import ConcurrentRunError, UserError

_CREATE_TRIES = 5
_log = logging.getLogger(__name__)


def normalize_root(lake: str) -> str:
    """Hadoop URIs (s3a://, hdfs://, file:) stay as they are; a local path becomes absolute, ``~`` expanded."""
    if paths.is_uri(lake):
        return lake.rstrip("/")
    return os.path.abspath(paths.expand_home(lake))


def table_path(lake: str, name: str) -> str:
    return f"{normalize_root(lake)}/{name}"


def exists(spark: SparkSession, lake: str, name: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table_path(lake, name))


def ensure(spark: SparkSession, lake: str, name: str) -> None:
    """Create the table empty, with its declared schema, if it is not there yet.

    Two runs may create the same table at once (two refreshes of a new lake): the loser of that
    race sees a half-made or just-made table, so it re-checks a few times before giving up.
    """
    from delta.tables import DeltaTable

    for attempt in range(_CREATE_TRIES):
        if exists(spark, lake, name):
            return
        try:
            (
                DeltaTable.createIfNotExists(spark)
                .location(table_path(lake, name))
                .addColumns(tables.schema(name))
                .partitionedBy(*tables.partition_columns(name))
                .execute()
            )
            return
        except Exception as exc:  # noqa: BLE001 - retried, then re-raised translated
            if attempt == _CREATE_TRIES - 1:
                if "DELTA_MISSING_DELTA_TABLE" in str(exc):
                    raise UserError(
                        f"{table_path(lake, name)} holds files but no Delta table: move that folder "
                        f"away (or point --lake elsewhere) and re-run"
                    ) from exc
                raise _translate_conflict(exc, name, creating=True) from exc
            # A creator killed before its first commit leaves a ``_delta_log`` with no commit in
            # it, which Delta neither reads as a table nor creates one over. Once a concurrent
            # creator has had time to commit, that folder holds nothing and is cleared.
            if attempt >= 1 and _clear_uncommitted_log(spark, table_path(lake, name)):
                continue
            time.sleep(0.2 * (attempt + 1))


_COMMIT_FILE = re.compile(r"^\d{20}\.(json|checkpoint\..*parquet)$")


def _clear_uncommitted_log(spark: SparkSession, path: str) -> bool:
    """Delete ``path/_delta_log`` when it holds no commit (what a creator killed mid-way leaves);
    True when it did. Data files written before that first commit are unreferenced and stay for
    ``maintain``'s VACUUM; a log with any commit is never touched."""
    fs, log = hadoop_fs(spark, f"{path}/_delta_log")
    if not fs.exists(log):
        return False
    names = [status.getPath().getName() for status in fs.listStatus(log)]
    if any(_COMMIT_FILE.match(n) for n in names):
        return False
    _log.warning("table folder %s has a _delta_log with no commit (a run killed while creating it): "
                 "clearing it (%d leftover file(s))", path, len(names))
    fs.delete(log, True)
    return True


def _for_path(spark: SparkSession, lake: str, name: str):
    """``DeltaTable.forPath`` that waits out a concurrent creator's first commit."""
    from delta.tables import DeltaTable

    for attempt in range(_CREATE_TRIES - 1):
        try:
            return DeltaTable.forPath(spark, table_path(lake, name))
        except Exception:  # noqa: BLE001 - a creator's first commit may not be visible yet
            time.sleep(0.2 * (attempt + 1))
    try:
        return DeltaTable.forPath(spark, table_path(lake, name))
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name, creating=True) from exc


def read(spark: SparkSession, lake: str, name: str, version: int | None = None) -> DataFrame:
    """The table (at ``version`` if given); an empty frame with the schema if it does not exist."""
    if not exists(spark, lake, name):
        return spark.createDataFrame([], tables.schema(name))
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(table_path(lake, name))


def version(spark: SparkSession, lake: str, name: str) -> int | None:
    """The table's latest Delta version, or None when it does not exist.

    Asked of the table's DeltaLog (which lists ``_delta_log`` for new commits, as a read does):
    ~7 ms, where ``history(1)`` plans and runs a query, ~0.1-0.4 s, and a refresh asks ~50 times.
    That call is Delta's internal Scala API, so any failure falls back to ``history(1)``.
    """
    from delta.tables import DeltaTable

    if not exists(spark, lake, name):
        return None
    path = table_path(lake, name)
    try:
        return _log_version(spark, path)
    except Exception:  # noqa: BLE001 - another Delta version's signature: take the public way
        row = DeltaTable.forPath(spark, path).history(1).select("version").first()
        return int(row[0]) if row else None


def detail(spark: SparkSession, lake: str, name: str) -> tuple[int, int, dict[str, str]]:
    """(data files, bytes, table properties) of the table's current snapshot, from its metadata
    (DESCRIBE DETAIL, no scan; ~0.4 s on a small table, so a caller asks once)."""
    row = (spark.sql(f"DESCRIBE DETAIL delta.`{table_path(lake, name)}`")
           .select("numFiles", "sizeInBytes", "properties").first())
    return int(row[0] or 0), int(row[1] or 0), dict(row[2] or {})


def files_and_bytes(spark: SparkSession, lake: str, name: str) -> tuple[int, int]:
    """(data files, bytes) in the table's current snapshot (:func:`detail`)."""
    return detail(spark, lake, name)[:2]


# Commits that rewrite files without changing a table's rows (maintain's work).
SAME_CONTENT_OPERATIONS = frozenset({"OPTIMIZE", "SET TBLPROPERTIES", "VACUUM START", "VACUUM END"})


def content_version(spark: SparkSession, lake: str, name: str, recorded: int) -> int:
    """The newest version with the same rows as ``recorded``: ``recorded`` moved past the commits
    after it that only rearrange files (OPTIMIZE, property changes, VACUUM), and past a RESTORE to a
    version with those rows (a failed run's rollback: its write and the RESTORE undoing it). A stage that
    recorded a version keeps reading current files after ``maintain`` instead of time-travelling into
    files a VACUUM may have removed; any other data-changing commit after it is a change."""
    latest = version(spark, lake, name)
    if latest is None or latest <= recorded:
        return recorded
    later = [r for r in _commits(spark, lake, name, latest - recorded) if int(r["version"]) > recorded][::-1]
    same, best = {recorded}, recorded
    for r in later:
        v, operation = int(r["version"]), r["operation"]
        if operation in SAME_CONTENT_OPERATIONS:
            if v - 1 in same:
                same.add(v)
                best = v
        elif operation == "RESTORE":
            to = (r["operationParameters"] or {}).get("version")
            if to is not None and str(to).isdigit() and int(to) in same:
                same.add(v)
                best = v
    return best


def unchanged_since(spark: SparkSession, lake: str, recorded: dict[str, object]) -> bool:
    """Every table in ``recorded`` (name -> version) still holds the rows it held at that version: no
    commit since, or only ``maintain``'s (OPTIMIZE, properties, VACUUM). What a stage's skip-if-done
    asks of the tables its earlier run read or wrote."""
    for name, was in recorded.items():
        now = version(spark, lake, name)
        if not isinstance(was, int) or now is None or now < was:
            return False
        if now != was and content_version(spark, lake, name, was) != now:
            return False
    return True


def last_data_note(spark: SparkSession, lake: str, name: str, depth: int = 20) -> str | None:
    """The ``userMetadata`` of the table's newest commit that changed its rows, walking past commits
    that only rearrange files (``maintain``'s OPTIMIZE, property changes, VACUUM): what a stage noted
    on its own commit (:func:`commit_note`) is still found after maintenance. None: no table, no note,
    or no such commit among the last ``depth``."""
    if not exists(spark, lake, name):
        return None
    for r in _commits(spark, lake, name, depth):
        if r["operation"] not in SAME_CONTENT_OPERATIONS:
            return r["userMetadata"]
    return None


def notes(spark: SparkSession, lake: str, name: str, depth: int = 200) -> list[str]:
    """The ``userMetadata`` of the table's last ``depth`` commits that have one, newest first: where a
    stage looks for the note of one of its runs among other runs' commits."""
    if not exists(spark, lake, name):
        return []
    return [r["userMetadata"] for r in _commits(spark, lake, name, depth) if r["userMetadata"] is not None]


def _commits(spark: SparkSession, lake: str, name: str, depth: int) -> list[Row]:
    """The table's last ``depth`` commits (version, operation, userMetadata, operationParameters), newest
    first."""
    from delta.tables import DeltaTable

    rows = (DeltaTable.forPath(spark, table_path(lake, name)).history(depth)
            .select("version", "operation", "userMetadata", "operationParameters").collect())
    return sorted(rows, key=lambda r: -int(r["version"]))


def commit_note(spark: SparkSession, note: str) -> AbstractContextManager[None]:
    """Delta's ``userMetadata`` for the commits made inside the block (a stage's note of what its
    commit was made from, read back by :func:`last_data_note`)."""
    return session_conf(spark, "spark.databricks.delta.commitInfo.userMetadata", note)


@dataclass(frozen=True)
class FilesSince:
    """What the commits after a version did to a table's data files (absolute paths): ``inserted``,
    files of rows new since then; ``moved``, files rewritten since (OPTIMIZE, dataChange=false) that
    may hold rows of both; ``gone``, files of that version rewritten since, whose rows may now be in
    ``moved``. Rows new since = rows of ``inserted`` + rows of ``moved`` not in ``gone``. A rewrite of
    files of that version alone (``maintain`` before the next appends) holds no new row and is in
    none of the three."""

    inserted: list[str]
    moved: list[str]
    gone: list[str]


def files_since(spark: SparkSession, lake: str, name: str, since: int, until: int) -> FilesSince | None:
    """The data files that commits ``since + 1`` .. ``until`` added and rewrote, read from those
    commits' JSON in ``_delta_log`` (Delta's protocol: one ``add`` / ``remove`` action per file, with
    ``dataChange`` false where a commit only rearranges rows): a cost that follows the commits, not
    the table. None when that does not describe insert-only growth, and the caller must compare
    versions the slow way: a commit that deleted rows (a ``remove`` with dataChange, say a RESTORE,
    DELETE or overwrite), a deletion vector, or a commit file no longer there (log cleanup)."""
    import json
    from urllib.parse import unquote

    base = table_path(lake, name)
    inserted: dict[str, bool] = {}  # path -> rows all new (True) or rewritten (False)
    gone: set[str] = set()
    old_only: set[str] = set()  # rewritten from files of ``since`` alone: no new row (maintain, then appends)
    for v in range(since + 1, until + 1):
        text = _read_text(spark, f"{base}/_delta_log/{v:020d}.json")
        if text is None:
            return None
        adds, removes = [], []
        for line in text.splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            add, remove = action.get("add"), action.get("remove")
            for a in (add, remove):
                if a is not None and a.get("deletionVector"):
                    return None
            if add is not None:
                adds.append(add)
            elif remove is not None:
                if remove.get("dataChange", True):
                    return None
                removes.append(remove["path"])
        mixes_new = any(p in inserted for p in removes)
        for p in removes:
            if inserted.pop(p, None) is None and p not in old_only:  # a file of ``since``, now rewritten
                gone.add(p)
            old_only.discard(p)
        for add in adds:
            if add.get("dataChange", True):
                inserted[add["path"]] = True
            elif removes and not mixes_new:
                old_only.add(add["path"])
            else:
                inserted[add["path"]] = False

    def absolute(path: str) -> str:
        path = unquote(path)  # paths in the log are URI-encoded, relative to the table unless absolute
        return path if paths.is_uri(path) or path.startswith("/") else f"{base}/{path}"

    return FilesSince(inserted=sorted(absolute(p) for p, new in inserted.items() if new),
                      moved=sorted(absolute(p) for p, new in inserted.items() if not new),
                      gone=sorted(absolute(p) for p in gone))


def _read_text(spark: SparkSession, path: str) -> str | None:
    """A small file's text through Hadoop's FileSystem (local, s3a, hdfs); None when it is not there."""
    fs, hpath = hadoop_fs(spark, path)
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        return str(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _log_version(spark: SparkSession, path: str) -> int:
    jvm = spark.sparkContext._jvm
    none = jvm.scala.Option.empty()
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    return int(log.update(False, none, none).version())


def _conform(df: DataFrame, name: str) -> DataFrame:
    """Select the declared columns in order, cast to the declared types: a stage cannot write a
    stray column, and a column of Python Nones (NullType) still lands with its real type."""
    from pyspark.sql import functions as F

    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in tables.schema(name).fields])


# FileAlreadyExists: another writer took the same Delta log version first (two creators of a table).
_CONFLICT_MARKERS = ("Concurrent", "ConflictingCommit", "ProtocolChanged", "FileAlreadyExists")
# While opening a table that another run is creating, its log may not be there yet.
_CREATE_RACE_MARKERS = ("DELTA_TABLE_NOT_FOUND", "doesn't exist")


def _translate_conflict(exc: Exception, name: str, creating: bool = False) -> Exception:
    """A concurrent-writer failure as one user-facing ConcurrentRunError; anything else as it is.
    Not-found means a race only while creating or opening a table (elsewhere a "doesn't exist" is,
    say, a missing column)."""
    text = f"{type(exc).__name__}: {exc}"
    markers = _CONFLICT_MARKERS + (_CREATE_RACE_MARKERS if creating else ())
    if any(m in text for m in markers):
        return ConcurrentRunError(
            f"another run wrote table '{name}' at the same time; this run changed nothing, "
            "re-run it when the other has finished"
        )
    return exc


def append(spark: SparkSession, lake: str, name: str, df: DataFrame) -> None:
    lease_rules.check_not_lost()
    ensure(spark, lake, name)
    try:
        _conform(df, name).write.format("delta").mode("append").save(table_path(lake, name))
    except Exception as exc:  # noqa: BLE001 - re-raised, translated when it is a conflict
        raise _translate_conflict(exc, name) from exc


def overwrite(
    spark: SparkSession, lake: str, name: str, df: DataFrame, replace_where: str | None = None,
    *, new_schema: bool = False,
) -> None:
    """Replace the whole table, or only the rows matching ``replace_where``, in one commit.

    ``new_schema``: the declared schema replaces the table's (a migration that rebuilds it whole)."""
    lease_rules.check_not_lost()
    writer = _conform(df, name).write.format("delta").mode("overwrite")
    if replace_where:
        ensure(spark, lake, name)
        writer = writer.option("replaceWhere", replace_where)
    else:
        writer = writer.option("overwriteSchema", "true" if new_schema else "false")
    try:
        writer.save(table_path(lake, name))
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name) from exc


def merge_insert_only(
    spark: SparkSession, lake: str, name: str, df: DataFrame, keys: Sequence[str], *,
    prune: Column | None = None,
) -> dict[str, int]:
    """Insert the rows whose keys are not in the table yet; return this MERGE's row counts.

    ``df`` must already be distinct on ``keys`` (MERGE rejects several source rows per key).
    ``prune``: a predicate on target columns (``t.``) true of every target row a source row could
    match; it joins the condition, so Delta skips the files its statistics rule out instead of
    reading the whole table (see :mod:`kgcurate.pairs_insert`).
    """

    ensure(spark, lake, name)
    target = _for_path(spark, lake, name)
    cond: str | Column = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    if prune is not None:
        from pyspark.sql import functions as F

        cond = F.expr(cond) & prune
    return _execute_merge(target.alias("t").merge(_conform(df, name).alias("s"), cond).whenNotMatchedInsertAll(),
                          name)


_MERGE_METRICS = {"num_inserted_rows": "numTargetRowsInserted", "num_deleted_rows": "numTargetRowsDeleted",
                  "num_updated_rows": "numTargetRowsUpdated", "num_affected_rows": "numTargetRowsAffected"}


def _execute_merge(builder, name: str) -> dict[str, int]:
    """Run a MERGE; return the row counts of this MERGE itself (Delta returns them from ``execute``:
    reading ``history(1)`` afterwards could report a concurrent writer's commit, and costs a query).
    All zero when nothing changed, in which case Delta made no commit."""
    lease_rules.check_not_lost()
    try:
        row = builder.execute().first()
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name) from exc
    got = row.asDict() if row is not None else {}
    return {ours: int(got.get(theirs) or 0) for theirs, ours in _MERGE_METRICS.items()}


def merge_insert_delete(
    spark: SparkSession, lake: str, name: str, rows: DataFrame, drop: DataFrame, keys: Sequence[str],
    update_columns: Sequence[str] = (),
) -> dict[str, int]:
    """One MERGE commit that inserts ``rows`` whose keys are new, deletes the target rows whose keys
    are in ``drop``, and updates ``update_columns`` of matched ``rows`` that differ; returns this
    MERGE's row counts. Leave out of ``rows`` those equal to a target row (keys and ``update_columns``):
    Delta rewrites every file holding a matched row even when no clause fires, so only then does a
    call that changes nothing make no commit (:func:`replace_rows` does that for its callers).

    Replaces a set of rows (say, one run's pairs) without a ``replaceWhere`` predicate, which cannot
    name millions of keys, and without an insert and a delete commit a reader could see between.
    ``rows`` must be distinct on ``keys`` and share no key with ``drop`` (MERGE allows one source row
    per target row).
    """
    from pyspark.sql import functions as F

    ensure(spark, lake, name)
    target = _for_path(spark, lake, name)
    fields = tables.schema(name).fields
    keep = _conform(rows, name).withColumn("_drop", F.lit(False))
    gone = drop.select(*[(F.col(f.name) if f.name in keys else F.lit(None)).cast(f.dataType).alias(f.name)
                         for f in fields]).withColumn("_drop", F.lit(True))
    cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    m = target.alias("t").merge(keep.unionByName(gone).alias("s"), cond).whenMatchedDelete("s._drop")
    if update_columns:
        changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in update_columns)
        m = m.whenMatchedUpdate(f"NOT s._drop AND ({changed})", {c: f"s.`{c}`" for c in update_columns})
    m = m.whenNotMatchedInsert("NOT s._drop", {f.name: f"s.`{f.name}`" for f in fields})
    return _execute_merge(m, name)


def replace_rows(
    spark: SparkSession, lake: str, name: str, rows: DataFrame, existing: DataFrame, keys: Sequence[str],
    update_columns: Sequence[str] = (),
) -> dict[str, int]:
    """Make the target rows in ``existing`` (the caller's read of the rows being replaced, e.g. one
    run's pairs) equal ``rows`` in one MERGE commit: rows whose keys are new are inserted, rows of
    ``existing`` whose keys ``rows`` lacks are deleted, ``update_columns`` that differ are updated.
    Returns the MERGE's row counts; nothing to change makes no commit.

    Only the rows that insert or update reach the MERGE (see :func:`merge_insert_delete`), so a
    re-run on the same inputs copies no file. ``rows`` must be distinct on ``keys``.
    """
    same = [existing[k].eqNullSafe(rows[k]) for k in keys]
    stale = existing.join(rows, same, "left_anti").select(*keys)
    changed = rows.join(existing, [*same, *(existing[c].eqNullSafe(rows[c]) for c in update_columns)], "left_anti")
    return merge_insert_delete(spark, lake, name, changed, stale, keys, update_columns)


def record_bad_input(spark: SparkSession, lake: str, job: str, run_id: str | None,
                     bad: DataFrame | Sequence[BadInput]) -> None:
    """Put what ``job`` could not use into ``bad_records`` (created empty when there is none): a
    frame of (source_file, offset, reason, sample) rows from Spark tasks, or :class:`BadInput` items
    from a pure parser. Insert-only on (job, source_file, offset, reason): a re-run adds nothing."""
    from pyspark.sql import functions as F

    if not isinstance(bad, DataFrame):
        if not bad:
            ensure(spark, lake, tables.BAD_RECORDS)
            return
        bad = spark.createDataFrame([(b.source_file, b.offset, b.reason, b.sample) for b in bad],
                                    "source_file string, offset bigint, reason string, sample string")
    rows = (bad.select(F.lit(job).alias("job"), F.lit(run_id).cast("string").alias("run_id"),
                       "source_file", "offset", "reason", "sample")
            .dropDuplicates(["source_file", "offset", "reason"]))
    merge_insert_only(spark, lake, tables.BAD_RECORDS, rows, bad_input.KEYS)


def merge(spark: SparkSession, lake: str, name: str, df: DataFrame, on: str, *,
          matched_update_when: str | Column | None = None, insert: bool = True,
          columns: Sequence[str] | None = None) -> dict[str, int]:
    """One MERGE of ``df`` (aliased ``s``) into the table (aliased ``t``): update the matched rows
    satisfying ``matched_update_when`` (all columns, or only ``columns``), insert the rest. Returns
    this MERGE's row counts."""
    ensure(spark, lake, name)
    target = _for_path(spark, lake, name)
    m = target.alias("t").merge(_conform(df, name).alias("s"), on)
    if matched_update_when is not None:
        if columns:
            m = m.whenMatchedUpdate(condition=matched_update_when, set={c: f"s.`{c}`" for c in columns})
        else:
            m = m.whenMatchedUpdateAll(condition=matched_update_when)
    if insert:
        m = m.whenNotMatchedInsertAll()
    return _execute_merge(m, name)


def optimize(spark: SparkSession, lake: str, name: str) -> dict[str, int]:
    """Compact small files (one OPTIMIZE commit, rows unchanged); the files removed and added."""
    lease_rules.check_not_lost()
    try:
        row = _for_path(spark, lake, name).optimize().executeCompaction().select("metrics").first()
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name) from exc
    m = row["metrics"] if row else None
    return {"files_removed": int(m["numFilesRemoved"]) if m else 0, "files_added": int(m["numFilesAdded"]) if m else 0}


def vacuum(spark: SparkSession, lake: str, name: str, hours: float | None = None) -> None:
    """Delete files no version within ``hours`` (default: the table's retention) still reads."""
    lease_rules.check_not_lost()
    try:
        table = _for_path(spark, lake, name)
        table.vacuum() if hours is None else table.vacuum(hours)
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name) from exc


def delete(spark: SparkSession, lake: str, name: str, condition) -> None:
    """Delete the rows matching ``condition`` (a Column or SQL string) in one commit."""
    if not exists(spark, lake, name):
        return
    lease_rules.check_not_lost()
    try:
        _for_path(spark, lake, name).delete(condition)
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name) from exc


def restore(spark: SparkSession, lake: str, name: str, version: int) -> None:
    """Make ``version``'s content the table's latest (one RESTORE commit): undoes a dead run's writes."""
    lease_rules.check_not_lost()
    try:
        _for_path(spark, lake, name).restoreToVersion(version)
    except Exception as exc:  # noqa: BLE001
        raise _translate_conflict(exc, name) from exc


STAGING = "_staging"  # runs' scratch folders: <lake>/_staging/<run_id>


def staging_path(lake: str, run_id: str = "") -> str:
    """``<lake>/_staging/<run_id>`` (the folder of all of them without ``run_id``)."""
    return f"{normalize_root(lake)}/{STAGING}" + (f"/{run_id}" if run_id else "")


_SESSION_CONF_LOCK = threading.RLock()


@contextmanager
def session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """``key`` = ``value`` for the queries planned and run inside, then as it was (set, or unset): a
    setting one query needs (a scan's split size), not kept for the session's later jobs. Blocks in
    threads sharing the session take turns (overlapping ones would restore each other's value); a query
    another thread runs outside any block meanwhile does see the value."""
    with _SESSION_CONF_LOCK:
        previous = spark.conf.get(key, None)
        spark.conf.set(key, value)
        try:
            yield
        finally:
            if previous is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, previous)


@contextmanager
def staging_folder(spark: SparkSession, lake: str, run_id: str) -> Iterator[str]:
    """A run's scratch folder (intermediate Parquet), removed when the run ends however it ends; one a
    killed run leaves behind is removed by ``maintain`` after a while."""
    path = staging_path(lake, run_id)
    try:
        yield path
    finally:
        remove_path(spark, path)


def hadoop_fs(spark: SparkSession, path: str):
    """(Hadoop FileSystem, Hadoop Path) of ``path``: local, s3a, hdfs alike, with the session's settings."""
    hpath = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def path_exists(spark: SparkSession, path: str) -> bool:
    """Whether a file or folder exists, through Hadoop's FileSystem (local, s3a, hdfs alike)."""
    fs, hpath = hadoop_fs(spark, path)
    return bool(fs.exists(hpath))


def remove_path(spark: SparkSession, path: str) -> None:
    """Delete a folder (a run's staging output) through Hadoop's FileSystem: local, s3a, hdfs alike."""
    fs, hpath = hadoop_fs(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


class Lake:
    """The lake one run works on: every operation above bound to its session and root, so a stage
    says ``ctx.lake.read(tables.PAIRS)``; conflict translation and this-commit metrics as above."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark, self.root = spark, root

    def path(self, name: str) -> str:
        return table_path(self.root, name)

    def exists(self, name: str) -> bool:
        return exists(self.spark, self.root, name)

    def ensure(self, name: str) -> None:
        ensure(self.spark, self.root, name)

    def read(self, name: str, version: int | None = None) -> DataFrame:
        return read(self.spark, self.root, name, version)

    def version(self, name: str) -> int | None:
        return version(self.spark, self.root, name)

    def content_version(self, name: str, recorded: int) -> int:
        return content_version(self.spark, self.root, name, recorded)

    def append(self, name: str, df: DataFrame) -> None:
        append(self.spark, self.root, name, df)

    def overwrite(self, name: str, df: DataFrame, replace_where: str | None = None, *,
                  new_schema: bool = False) -> None:
        overwrite(self.spark, self.root, name, df, replace_where, new_schema=new_schema)

    def merge_insert_only(self, name: str, df: DataFrame, keys: Sequence[str]) -> dict[str, int]:
        return merge_insert_only(self.spark, self.root, name, df, keys)

    def merge_insert_delete(self, name: str, rows: DataFrame, drop: DataFrame, keys: Sequence[str],
                            update_columns: Sequence[str] = ()) -> dict[str, int]:
        return merge_insert_delete(self.spark, self.root, name, rows, drop, keys, update_columns)

    def merge(self, name: str, df: DataFrame, on: str, **kwargs) -> dict[str, int]:
        return merge(self.spark, self.root, name, df, on, **kwargs)

    def record_bad_input(self, job: str, run_id: str | None, bad: DataFrame | Sequence[BadInput]) -> None:
        record_bad_input(self.spark, self.root, job, run_id, bad)

    def delete(self, name: str, condition) -> None:
        delete(self.spark, self.root, name, condition)

    def restore(self, name: str, version: int) -> None:
        restore(self.spark, self.root, name, version)

    def optimize(self, name: str) -> dict[str, int]:
        return optimize(self.spark, self.root, name)

    def vacuum(self, name: str, hours: float | None = None) -> None:
        vacuum(self.spark, self.root, name, hours)

    def staging_folder(self, run_id: str):
        return staging_folder(self.spark, self.root, run_id)
