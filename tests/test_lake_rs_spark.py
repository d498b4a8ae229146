"""Spark and deltalake on one lake: a lease row Spark wrote refuses a taker (lakes written before the
lease moved to delta-rs), Spark reads what the lease wrote, either engine writes the ``leases`` and
``bad_records`` tables the other created (delta-rs can commit to Spark's tables: reader 1 / writer 2,
no table features), and a bad input recorded by one is not recorded again by the other."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from helpers import assert_other_readers_agree
from kgcurate import lake, lake_rs, lease_rules, leases, tables
from kgcurate.bad_input import BadInput
from kgcurate.errors import ConcurrentRunError


def test_a_lease_row_spark_wrote_refuses_a_taker_and_spark_reads_the_rows_delta_rs_wrote(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    now = lease_rules.now()
    lake.merge_insert_only(spark, root, tables.LEASES, spark.createDataFrame(  # Spark creates the table
        [("evaluate:/exp/epoch_1.pt", "spark-run", "other-host:1", now, now + timedelta(hours=1))],
        tables.schema(tables.LEASES)), ["scope"])
    protocol = lake_rs.open_table(root, tables.LEASES).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version, protocol.writer_features) == (1, 2, None)
    with pytest.raises(ConcurrentRunError, match=r"\(spark-run on other-host:1"):
        leases.acquire(root, "evaluate:/exp/epoch_1.pt", "rs-run")
    lake.delete(spark, root, tables.LEASES, "run_id = 'spark-run'")
    rs_lease = leases.acquire(root, "evaluate:/exp/epoch_1.pt", "rs-run")
    assert leases.renew(root, rs_lease, ttl=3600)
    [row] = lake.read(spark, root, tables.LEASES).collect()  # Spark reads the time delta-rs wrote, unshifted
    assert row["run_id"] == "rs-run" and row["expires_at"] > row["acquired_at"]
    assert abs((row["acquired_at"] - now.replace(tzinfo=None)).total_seconds()) < 600
    leases.release(root, rs_lease)
    assert lake.read(spark, root, tables.LEASES).count() == 0


def test_spark_takes_and_records_in_tables_deltalake_created(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    rs_lease = leases.acquire(root, "train:/exp/a", "rs-run")  # delta-rs creates leases
    assert lake_rs.record_bad_input(root, "evaluate", "e1", [BadInput("/s/00000.tar", 2, "tar cut off")]) == 1
    with leases.held(root, "match", "spark-match"):
        assert sorted(r["run_id"] for r in lake.read(spark, root, tables.LEASES).collect()) == ["rs-run", "spark-match"]
    leases.release(root, rs_lease)
    lake.record_bad_input(spark, root, "evaluate", "e2", [BadInput("/s/00000.tar", 2, "tar cut off"),
                                                         BadInput("/s/00001.tar", 0, "tar cut off")])
    rows = sorted((r["source_file"], r["run_id"]) for r in lake.read(spark, root, tables.BAD_RECORDS).collect())
    assert rows == [("/s/00000.tar", "e1"), ("/s/00001.tar", "e2")]  # the same key is not written twice
    assert lake_rs.record_bad_input(root, "evaluate", "e3", [BadInput("/s/00001.tar", 0, "tar cut off")]) == 0


def test_duckdb_and_delta_rs_read_a_checkpointed_partitioned_table_as_spark_does(spark, tmp_path) -> None:
    """`curated` past Spark's first checkpoint (every 10 commits), its log holding appends, an insert-only
    MERGE, a MERGE that inserts and deletes, a `curated drop` (DELETE of a run's partition) and a
    replaceWhere: DuckDB's delta extension and delta-rs read the rows Spark reads, newest and time travel."""
    root = str(tmp_path / "lake")

    def run(run_id: str, start: int, n: int = 3):
        rows = [(i, f"https://img.example/{i}.jpg", f"caption {i}", [i, 7], run_id) for i in range(start, start + n)]
        rows[-1] = (*rows[-1][:3], None, run_id)  # a pair whose entry list is null
        return spark.createDataFrame(rows, tables.schema(tables.CURATED))

    for k in range(8):
        lake.append(spark, root, tables.CURATED, run(f"run-{k % 3}", 10 * k))
    keys = ["pair_id", "run_id"]
    assert lake.merge_insert_only(spark, root, tables.CURATED, run("run-0", 0, 5), keys)["numTargetRowsInserted"] == 2
    gone = spark.createDataFrame([(10, "run-1")], "pair_id long, run_id string")
    lake.merge_insert_delete(spark, root, tables.CURATED, run("run-1", 100), gone, keys)
    lake.delete(spark, root, tables.CURATED, "run_id = 'run-2'")
    lake.overwrite(spark, root, tables.CURATED, run("run-1", 200), replace_where="run_id = 'run-1'")
    log = os.listdir(os.path.join(lake.table_path(root, tables.CURATED), "_delta_log"))
    assert any(".checkpoint." in f for f in log), sorted(log)  # readers start from the checkpoint
    assert sorted({r["run_id"] for r in lake.read(spark, root, tables.CURATED).collect()}) == ["run-0", "run-1"]
    assert assert_other_readers_agree(spark, root) == [tables.CURATED]
    assert assert_other_readers_agree(spark, root, {tables.CURATED: 5}) == [tables.CURATED]
