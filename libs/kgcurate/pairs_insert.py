"""A run's new pairs into ``pairs`` at a cost that follows the run, not the size of the table.

The plain insert-only MERGE on (pair_id, image_url, text) joins the run's pairs with every row of
``pairs``: it reads the three key columns of the whole table (nearly all its bytes) and shuffles
them, on every ingest. But pair_id = xxhash64(image_url, text): a pair whose pair_id is not in the
table is new for sure. So:

1. :func:`present_ids`: the run's pair_ids already in the table at version ``v0``, by a semi-join
   against the table's pair_id column alone (8 bytes a row; Parquet reads only that column).
2. The same MERGE, one commit, with ``t.pair_id IN (those ids)`` added to its condition. Every target
   row a run's pair could match has its pair_id among them, so the result is the plain MERGE's; but
   the target side of the join keeps only those rows. A pair whose pair_id collides with a different
   (image_url, text) is one of those ids, fails the full-key test and is inserted, as before. With
   more than :data:`MAX_LISTED` ids present (a forced re-read of the same input, say) it is the plain
   MERGE. With none present (a new crawl: the usual case) no target row can match, every row is
   new, and the commit is a plain append of them: the MERGE's rows without its join, its per-row
   metrics and its extra stage. A table with no data file yet (a lake's first ingest) skips step 1:
   the append, without gathering the run's ids (:func:`holds_no_file`).

Steps 1 and 2 run under the ``ingest-wat`` lease (:mod:`kgcurate.leases`, tens of milliseconds): a
commit by another writer between the scan and the MERGE would not be seen by step 1, and Delta's own
conflict check cannot catch it once the MERGE reads no files, nor in a blind append (the plain
MERGE read them all, so a concurrent insert failed it). Two ingests reaching this point at once: the
second exits with the lease's one line, having changed nothing, as the plain MERGE's conflict made it do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from kgcurate import lake, leases, tables

KEYS = ("pair_id", "image_url", "text")
# Ids listed in the MERGE condition at most (an InSet: a hash lookup per target row); more present
# ids than this mean most of the input is in the table already, and the plain MERGE is as cheap.
MAX_LISTED = 20_000
# Runs of at most this many pairs look their ids up by broadcasting them: 32 MB of longs, ~230 MB as
# Spark's hashed relation on the driver and each executor. 1 GB of WAT extracts ~2.3M rows (1.9M
# distinct); above this the semi-join shuffles every id of the table (2.6x the empty lake at 50M rows).
BROADCAST_IDS = 4_000_000
# Split size of the broadcast lookup's scan of pairs. Spark sizes splits on the files' whole bytes (128 MB)
# but the scan reads only pair_id, ~5% of them: 100 tasks of ~4 MB of ids for 50M rows, mostly per-task
# cost (1.4 s against 0.56 s in 4 tasks, 2 cores). Spark still caps a split at the table's bytes over the
# default parallelism (the executor cores registered when the query runs), so a cluster keeps about a
# task per such core.
ID_SCAN_SPLIT_BYTES = 2 << 30
SCOPE = "ingest-wat"  # the lease every writer of pairs holds around the scan and the MERGE
log = logging.getLogger("kgcurate.pairs_insert")


@dataclass
class Inserted:
    """One insert: rows added, and source pair_ids already in the table (None: more than MAX_LISTED,
    plain MERGE)."""

    inserted: int
    present: int | None


def sql_in(column: str, values: list[int]) -> str:
    """``column IN (...)`` of bigint literals as one SQL string (one parse, not a py4j call per id);
    the smallest bigint has no literal (its negation overflows), so it is written as a sum."""
    lowest = -(2**63)
    return f"{column} IN ({', '.join('(-9223372036854775807L - 1)' if v == lowest else f'{v}L' for v in values)})"


def present_ids(spark: SparkSession, root: str, source_ids: DataFrame, at_version: int, limit: int,
                broadcast: bool = False) -> list[int]:
    """Up to ``limit + 1`` distinct pair_ids of ``source_ids`` (repeats allowed) that ``pairs`` holds at
    ``at_version``.

    ``broadcast`` (a run of at most :data:`BROADCAST_IDS` pairs): the run's ids are shipped to every
    task and the table's pair_id column is only scanned and probed, with no shuffle of the table's ids
    (a sort-merge semi-join shuffled all 50M of them: 33 s of a 45 s ingest of 250 MB). Repeats cost
    the broadcast more entries (2.26M rows for 1.88M ids from 1 GB of WAT); removing them first was a
    shuffle of every id of the run."""
    table_ids = lake.read(spark, root, tables.PAIRS, at_version).select("pair_id")
    if not broadcast:
        present = source_ids.select("pair_id").join(table_ids, "pair_id", "left_semi")
        return [int(r[0]) for r in present.distinct().limit(limit + 1).collect()]
    present = table_ids.join(F.broadcast(source_ids.select("pair_id")), "pair_id", "left_semi")
    # the split size reaches every scan of this query: the table's pair_id column, and the run's rows,
    # at most BROADCAST_IDS of them here (the measured case; the sort-merge path keeps the session's)
    with lake.session_conf(spark, "spark.sql.files.maxPartitionBytes", str(ID_SCAN_SPLIT_BYTES)):
        return [int(r[0]) for r in present.distinct().limit(limit + 1).collect()]


def holds_no_file(spark: SparkSession, root: str) -> bool:
    """True when ``pairs`` has no data file now (the file count of Delta's snapshot, no scan). Then no
    target row can match, and the run's ids need not be gathered: on a first ingest that was a read of
    every staged pair, a hash and a shuffle (3.3 of 34 executor-s on 500 MB) for an empty answer. The
    latest snapshot, not ``v0``'s, is asked: a file added since ``v0`` sends the run the usual way, and
    a table emptied since then has no row a pair could match when the append commits."""
    return lake.files_and_bytes(spark, root, tables.PAIRS)[0] == 0


def insert_new(spark: SparkSession, root: str, pairs: DataFrame, run_id: str,
               source_ids: DataFrame | None = None, at_most: int | None = None) -> Inserted:
    """Insert the rows of ``pairs`` (distinct on (image_url, text), every row's ``run_id`` = ``run_id``)
    whose key is not in ``pairs`` yet, in one commit. ``source_ids``: their pair_ids (repeats allowed),
    when the caller has them cheaper than from ``pairs``; ``at_most``: a bound on their number, when known."""
    lake.ensure(spark, root, tables.PAIRS)
    with leases.held(root, SCOPE, run_id):
        v0 = lake.version(spark, root, tables.PAIRS)
        assert v0 is not None
        if holds_no_file(spark, root):  # a lake's first ingest: no row to look up, nor any id to gather
            present: list[int] = []
        else:
            ids_df = source_ids if source_ids is not None else pairs.select("pair_id")
            small = at_most is not None and at_most <= BROADCAST_IDS
            present = present_ids(spark, root, ids_df, v0, MAX_LISTED, broadcast=small)
        if len(present) > MAX_LISTED:
            log.info("pairs: more than %d of this run's pair_ids are in the table: plain MERGE", MAX_LISTED)
            merged = lake.merge_insert_only(spark, root, tables.PAIRS, pairs, KEYS)
            return Inserted(merged["numTargetRowsInserted"], None)
        if not present:
            log.info("pairs: none of this run's pair_ids is in the table (version %d): append", v0)
            counted = Observation()
            lake.append(spark, root, tables.PAIRS, pairs.observe(counted, F.count(F.lit(1)).alias("rows")))
            return Inserted(int(counted.get["rows"]), 0)
        log.info("pairs: %d of this run's pair_ids are in the table (version %d): MERGE on those", len(present), v0)
        merged = lake.merge_insert_only(spark, root, tables.PAIRS, pairs, KEYS,
                                        prune=F.expr(sql_in("t.pair_id", present)))
        return Inserted(merged["numTargetRowsInserted"], len(present))
