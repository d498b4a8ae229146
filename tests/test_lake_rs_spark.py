"""Spark and deltalake on one lake: a lease either engine holds refuses the other's taker of the same
scope, either engine writes the ``leases`` and ``bad_records`` tables the other created (delta-rs can
commit to Spark's tables: reader 1 / writer 2, no table features), and a bad input recorded by one is
not recorded again by the other."""

from __future__ import annotations

import pytest

from kgcurate import lake, lake_rs, leases, leases_rs, tables
from kgcurate.bad_input import BadInput
from kgcurate.errors import ConcurrentRunError


def test_a_spark_lease_refuses_a_deltalake_taker_and_the_other_way_round(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    spark_lease = leases.acquire(spark, root, "evaluate:/exp/epoch_1.pt", "spark-run")  # Spark creates the table
    protocol = lake_rs.open_table(root, tables.LEASES).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version, protocol.writer_features) == (1, 2, None)
    with pytest.raises(ConcurrentRunError, match=r"\(spark-run on "):
        leases_rs.acquire(root, "evaluate:/exp/epoch_1.pt", "rs-run")
    leases.release(spark, root, spark_lease)
    rs_lease = leases_rs.acquire(root, "evaluate:/exp/epoch_1.pt", "rs-run")
    with pytest.raises(ConcurrentRunError, match=r"\(rs-run on "):
        leases.acquire(spark, root, "evaluate:/exp/epoch_1.pt", "spark-run")
    assert leases_rs.renew(root, rs_lease, ttl=3600)
    [row] = lake.read(spark, root, tables.LEASES).collect()  # Spark reads the time delta-rs wrote, unshifted
    assert row["run_id"] == "rs-run" and row["expires_at"] > row["acquired_at"]
    leases_rs.release(root, rs_lease)
    assert leases.acquire(spark, root, "evaluate:/exp/epoch_1.pt", "spark-run").run_id == "spark-run"


def test_spark_takes_and_records_in_tables_deltalake_created(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    rs_lease = leases_rs.acquire(root, "train:/exp/a", "rs-run")  # delta-rs creates leases
    assert lake_rs.record_bad_input(root, "evaluate", "e1", [BadInput("/s/00000.tar", 2, "tar cut off")]) == 1
    with leases.held(spark, root, "match", "spark-match"):
        assert sorted(r["run_id"] for r in lake.read(spark, root, tables.LEASES).collect()) == ["rs-run", "spark-match"]
    leases_rs.release(root, rs_lease)
    lake.record_bad_input(spark, root, "evaluate", "e2", [BadInput("/s/00000.tar", 2, "tar cut off"),
                                                         BadInput("/s/00001.tar", 0, "tar cut off")])
    rows = sorted((r["source_file"], r["run_id"]) for r in lake.read(spark, root, tables.BAD_RECORDS).collect())
    assert rows == [("/s/00000.tar", "e1"), ("/s/00001.tar", "e2")]  # the same key is not written twice
    assert lake_rs.record_bad_input(root, "evaluate", "e3", [BadInput("/s/00001.tar", 0, "tar cut off")]) == 0
