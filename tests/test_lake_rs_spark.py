"""Spark and deltalake on one lake: a lease row Spark wrote refuses a taker (lakes written before the
lease moved to delta-rs), Spark reads what the lease wrote, either engine writes the ``leases`` and
``bad_records`` tables the other created (delta-rs can commit to Spark's tables: reader 1 / writer 2,
no table features), and a bad input recorded by one is not recorded again by the other."""

from __future__ import annotations

from datetime import timedelta

import pytest

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
