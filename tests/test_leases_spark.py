"""Leases as the Spark stages use them: the delta-rs lease (tests/test_leases.py has its rules and the
race of two takers) over rows Spark reads and writes, and a stage refused before it reads."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from kgcurate import lake as lake_mod
from kgcurate import lease_rules, leases, tables
from kgcurate.errors import ConcurrentRunError


def test_held_lease_blocks_others_until_released(spark, lake) -> None:
    with leases.held(lake, "balance", "first") as run_id:
        assert run_id == "first"
        with pytest.raises(ConcurrentRunError, match=r"another balance run \(first on .*\) is writing lake"):
            leases.acquire(lake, "balance", "second")
        with leases.held(lake, "balance") as nested:  # same thread: re-entrant (refresh -> balance)
            assert nested
        with leases.held(lake, "match", "other-scope"):  # scopes are independent
            pass
    assert lake_rows(spark, lake) == []
    second = leases.acquire(lake, "balance", "second")
    assert lake_rows(spark, lake) == ["second"]
    leases.release(lake, second)


def test_dead_or_expired_holders_are_taken_over(spark, lake) -> None:
    """The rows are Spark's (as a lake written by an older kgcurate holds them): the lease reads them."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = lease_rules.holder_name().rpartition(":")[0]
    now = lease_rules.now()
    rows = [("match", "killed-run", f"{host}:{proc.pid}", now, now + timedelta(hours=1)),
            ("balance", "cluster-run", "other-host:1", now - timedelta(hours=2), now - timedelta(hours=1)),
            ("report", "live-run", "other-host:1", now, now + timedelta(hours=1))]
    lake_root = lake
    lake_mod.merge_insert_only(spark, lake_root, tables.LEASES,
                               spark.createDataFrame(rows, tables.schema(tables.LEASES)), ["scope"])
    assert leases.acquire(lake_root, "match", "next-match").run_id == "next-match"
    assert leases.acquire(lake_root, "balance", "next-balance").run_id == "next-balance"
    with pytest.raises(ConcurrentRunError, match="live-run"):
        leases.acquire(lake_root, "report", "next-report")


def lake_rows(spark, root: str) -> list[str]:
    return sorted(r["run_id"] for r in lake_mod.read(spark, root, tables.LEASES).collect())


def test_balance_holds_its_lease_and_a_second_balance_is_refused_before_reading(spark, lake) -> None:
    """A live balance elsewhere holds the lease: this run exits with the lease's line before any Spark job."""
    from kgcurate import config
    from kgcurate.context import execute_stage
    from kgcurate.stages import balance

    now = lease_rules.now()
    lake_mod.merge_insert_only(spark, lake, tables.LEASES, spark.createDataFrame(
        [("balance", "other-run", "other-host:1", now, now + timedelta(hours=1))],
        tables.schema(tables.LEASES)), ["scope"])
    for name in (tables.PAIRS, tables.MATCHES, tables.ENTRY_COUNTS):
        lake_mod.ensure(spark, lake, name)
    cfg = config.load(None)
    cfg["lake"] = lake
    cfg["balance"].update(t=10.0)
    with pytest.raises(ConcurrentRunError, match=r"another balance run \(other-run on other-host:1"):
        execute_stage(balance, cfg, spark)
    assert lake_rows(spark, lake) == ["other-run"]
    assert not lake_mod.exists(spark, lake, tables.CURATED)
