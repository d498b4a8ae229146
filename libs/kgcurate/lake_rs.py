"""The lake without Spark: the few Delta operations the GPU stages (train, evaluate) need, through
``deltalake`` (delta-rs), so a GPU node needs no JVM.

The tables are the ones Spark writes (schemas from :mod:`kgcurate.tables`, as Arrow); a table either
engine created is written by the other (both make reader 1 / writer 2 tables without table
features: checked by tests/test_leases.py). Conflicts: delta-rs checks a commit against the ones
that landed since it read, and fails it (``CommitFailedError``) when they touched what it read, as
Spark's optimistic concurrency does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from kgcurate import lease_rules
from kgcurate.bad_input import KEYS, BadInput
from kgcurate.errors import ConcurrentRunError, UserError
from kgcurate.paths import expand_home
from kgcurate.table_names import BAD_RECORDS

TRIES = 5  # an idempotent write that lost a commit race is run again this many times


def table_uri(lake: str, name: str) -> str:
    """The table's URI for ``deltalake``: Hadoop's s3a:// is s3:// there; a local path is absolute."""
    if lake.startswith("s3a://"):
        lake = "s3://" + lake[len("s3a://"):]
    elif lake.startswith("file:"):
        lake = lake[len("file:"):].removeprefix("//")
    elif "://" not in lake:
        lake = os.path.abspath(expand_home(lake))
    return f"{lake.rstrip('/')}/{name}"


def storage_options(uri: str) -> dict[str, str] | None:
    """What delta-rs needs beyond the AWS default chain to reach the lake's S3: the S3-compatible
    endpoint the other stages use (``KGCURATE_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``: MinIO, moto), plain
    HTTP allowed when it is http. Credentials and region stay with the chain delta-rs reads itself."""
    from kgcurate import s3

    endpoint = s3.endpoint()
    if not uri.startswith("s3://") or not endpoint:
        return None
    return {"AWS_ENDPOINT_URL": endpoint, **({"AWS_ALLOW_HTTP": "true"} if endpoint.startswith("http://") else {})}


def open_table(lake: str, name: str, version: int | None = None):
    """The Delta table at ``version`` (default: the newest); None when there is none."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = table_uri(lake, name)
    try:
        return DeltaTable(uri, version=version, storage_options=storage_options(uri))
    except TableNotFoundError:
        return None
    except Exception as exc:  # deltalake says "version not found" in several ways
        if version is not None and "version" in str(exc).lower():
            raise UserError(f"table {name} in lake {lake} has no version {version}: pass a version it has "
                            "(see its history) or leave --download-runs-version out for the newest") from None
        raise


def ensure(lake: str, name: str):
    """The table, created empty with its declared schema when it is not there (as ``lake.ensure``
    does with Spark); two creators at once: the loser opens the winner's table."""
    from deltalake import DeltaTable

    from kgcurate import tables

    for attempt in range(TRIES):
        table = open_table(lake, name)
        if table is not None:
            return table
        try:
            uri = table_uri(lake, name)
            return DeltaTable.create(uri, tables.arrow_schema(name), mode="ignore",
                                     partition_by=list(tables.partition_columns(name)) or None,
                                     storage_options=storage_options(uri))
        except Exception:  # a concurrent creator committed version 0 first
            if attempt == TRIES - 1:
                raise
    raise AssertionError("unreachable")


def sql_string(text: str) -> str:
    """A SQL string literal (quotes doubled) for a deltalake predicate."""
    return "'" + text.replace("'", "''") + "'"


def column(name: str, alias: str = "") -> str:
    """A column in a deltalake (DataFusion) predicate, quoted: ``offset`` is a SQL keyword."""
    return f'{alias + "." if alias else ""}"{name}"'


def is_conflict(exc: BaseException) -> bool:
    """A commit that lost to a concurrent writer's (delta-rs says so with CommitFailedError)."""
    from deltalake.exceptions import CommitFailedError

    return isinstance(exc, CommitFailedError)


def merge_counts(metrics: dict[str, Any]) -> dict[str, int]:
    """delta-rs's MERGE metrics under the names :func:`kgcurate.lake._execute_merge` returns."""
    ins, upd, dele = (int(metrics.get(f"num_target_rows_{k}") or 0) for k in ("inserted", "updated", "deleted"))
    return {"num_inserted_rows": ins, "num_updated_rows": upd, "num_deleted_rows": dele,
            "num_affected_rows": ins + upd + dele}


def bad_rows(job: str, run_id: str | None, bad: Sequence[BadInput]) -> list[dict[str, Any]]:
    """``bad_records`` rows of ``bad``, one per key (job, source_file, offset, reason), first kept."""
    seen: set[tuple] = set()
    rows = []
    for b in bad:
        row = {"job": job, "run_id": run_id, "source_file": b.source_file, "offset": b.offset,
               "reason": b.reason, "sample": b.sample}
        key = tuple(row[k] for k in KEYS)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def record_bad_input(lake: str, job: str, run_id: str | None, bad: Sequence[BadInput]) -> int:
    """Put what ``job`` could not use into ``bad_records`` (created empty when there is none), as
    :func:`kgcurate.lake.record_bad_input` does with Spark: one insert-only MERGE on (job,
    source_file, offset, reason), so a rerun adds nothing. A commit lost to a concurrent writer of the
    table (an ingest) is retried, which an insert-only MERGE allows. Returns the rows inserted."""
    import pyarrow as pa

    from kgcurate import tables

    if any(b.offset is None for b in bad):
        raise ValueError("bad_records.offset is required: give the position in the source (0 for a whole file)")
    rows = bad_rows(job, run_id, bad)
    lease_rules.check_not_lost()
    for attempt in range(TRIES):
        table = ensure(lake, BAD_RECORDS)
        if not rows:
            return 0
        source = pa.Table.from_pylist(rows, schema=tables.arrow_schema(BAD_RECORDS))
        on = " AND ".join(f"{column(k, 't')} = {column(k, 's')}" for k in KEYS)
        try:
            got = (table.merge(source, on, source_alias="s", target_alias="t")
                   .when_not_matched_insert_all().execute())
        except Exception as exc:
            if is_conflict(exc) and attempt < TRIES - 1:
                continue
            if is_conflict(exc):
                raise ConcurrentRunError(f"{job}: other runs kept changing {table_uri(lake, BAD_RECORDS)}; "
                                         f"{len(rows)} bad input records not written: re-run {job}") from None
            raise
        return merge_counts(got)["num_inserted_rows"]
    raise AssertionError("unreachable")
