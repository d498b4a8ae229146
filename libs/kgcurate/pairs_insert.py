"""A run's new pairs into ``pairs`` at a cost that follows the run, not the size of the table.

The plain insert-only MERGE on (pair_id, image_url, text) joins the run's pairs with every row of
``pairs``: it reads the three key columns of the whole table (nearly all its bytes) and shuffles
them, on every ingest. But pair_id = xxhash64(image_url, text): a pair whose pair_id is not in the
table is new for sure. So:

1. :func:`present_ids`: the run's pair_ids already in the table at version ``v0``, by a semi-join
   against the table's pair_id column alone (8 bytes a row; Parquet reads only that column).
2. The same MERGE, one commit, with ``t.pair_id IN (those ids)`` added to its condition. Every target
   row a run's pair could match has its pair_id among them, so the result is the plain MERGE's; but
   the target side of the join keeps only those rows, and with none present (``IN ()`` is ``false``)
   Delta skips every file. A pair whose pair_id collides with a different (image_url, text) is one
   of those ids, fails the full-key test and is inserted, as before. With more than
   :data:`MAX_LISTED` ids present (a forced re-read of the same input, say) it is the plain MERGE.
3. :func:`_repair_race`: a commit by another writer between ``v0`` and this MERGE's commit was not
   seen by step 1, and Delta's conflict check starts at the MERGE's own snapshot. When there was one,
   the keys this run inserted that another run's rows also hold are deleted from this run's rows (one
   more commit, logged as a warning), so ``pairs`` stays unique on its key as with the plain MERGE.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import lake, tables

KEYS = ("pair_id", "image_url", "text")
# Ids listed in the MERGE condition at most (an InSet: a hash lookup per target row); more present
# ids than this mean most of the input is in the table already, and the plain MERGE is as cheap.
MAX_LISTED = 20_000
log = logging.getLogger("kgcurate.pairs_insert")


@dataclass
class Inserted:
    """One insert: rows added, source pair_ids already in the table (None: more than MAX_LISTED, plain
    MERGE), and this run's rows deleted again because a concurrent writer had added the same key."""

    inserted: int
    present: int | None
    race_duplicates_removed: int = 0


def sql_in(column: str, values: list[int]) -> str:
    """``column IN (...)`` of bigint literals as one SQL string (one parse, not a py4j call per id);
    the smallest bigint has no literal (its negation overflows), so it is written as a sum."""
    lowest = -(2**63)
    return f"{column} IN ({', '.join('(-9223372036854775807L - 1)' if v == lowest else f'{v}L' for v in values)})"


def present_ids(spark: SparkSession, root: str, source_ids: DataFrame, at_version: int, limit: int) -> list[int]:
    """Up to ``limit + 1`` of ``source_ids``'s pair_ids that ``pairs`` holds at ``at_version``."""
    table_ids = lake.read(spark, root, tables.PAIRS, at_version).select("pair_id")
    present = source_ids.select("pair_id").join(table_ids, "pair_id", "left_semi")
    return [int(r[0]) for r in present.limit(limit + 1).collect()]


def insert_new(spark: SparkSession, root: str, pairs: DataFrame, run_id: str,
               source_ids: DataFrame | None = None) -> Inserted:
    """Insert the rows of ``pairs`` (distinct on (image_url, text), every row's ``run_id`` = ``run_id``)
    whose key is not in ``pairs`` yet, in one commit. ``source_ids``: their distinct pair_ids, when the
    caller has them cheaper than from ``pairs``."""
    lake.ensure(spark, root, tables.PAIRS)
    v0 = lake.version(spark, root, tables.PAIRS)
    assert v0 is not None
    ids_df = source_ids if source_ids is not None else pairs.select("pair_id").distinct()
    present = present_ids(spark, root, ids_df, v0, MAX_LISTED)
    if len(present) > MAX_LISTED:
        log.info("pairs: more than %d of this run's pair_ids are in the table: plain MERGE", MAX_LISTED)
        merged = lake.merge_insert_only(spark, root, tables.PAIRS, pairs, KEYS)
        return Inserted(merged["numTargetRowsInserted"], None)
    log.info("pairs: %d of this run's pair_ids are in the table (version %d): MERGE on those", len(present), v0)
    tag = f"pairs-insert:{run_id}:{uuid.uuid4().hex}"
    prune = F.expr(sql_in("t.pair_id", present)) if present else F.lit(False)
    merged = lake.merge_insert_only(spark, root, tables.PAIRS, pairs, KEYS, prune=prune, tag=tag)
    result = Inserted(merged["numTargetRowsInserted"], len(present))
    if result.inserted:
        result.race_duplicates_removed = _repair_race(spark, root, run_id, v0, tag)
    return result


def _repair_race(spark: SparkSession, root: str, run_id: str, v0: int, tag: str) -> int:
    """Delete this run's rows whose key another run's row holds, when another data-changing commit
    landed between ``v0`` and this run's commit (``tag``); the number deleted."""
    commits = lake.commits_after(spark, root, tables.PAIRS, v0)
    ours = next((v for v, _, meta in commits if meta == tag), None)
    others = [(v, op) for v, op, meta in commits
              if meta != tag and (ours is None or v < ours) and op not in lake.SAME_CONTENT_OPERATIONS]
    if not others:
        return 0
    table = lake.read(spark, root, tables.PAIRS)
    mine = table.where(F.col("run_id") == run_id).select(*KEYS)
    theirs = table.where(~F.col("run_id").eqNullSafe(run_id)).select(*KEYS)
    dups = mine.join(theirs, [mine[k].eqNullSafe(theirs[k]) for k in KEYS], "left_semi").distinct()
    on = F.col("t.run_id") == F.lit(run_id)
    for k in KEYS:
        on = on & F.col(f"t.{k}").eqNullSafe(F.col(f"s.{k}"))
    removed = lake.merge_delete(spark, root, tables.PAIRS, dups, on)["numTargetRowsDeleted"]
    if removed:
        log.warning("pairs: %d pair(s) this run inserted were added by another writer at the same time "
                    "(commits %s); this run's copies were deleted", removed, others)
    return removed

