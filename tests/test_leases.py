"""Leases: one writer per stage and lake, taken atomically through a Delta MERGE."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from kgcurate import leases, tables
from kgcurate.errors import ConcurrentRunError


def test_holder_is_dead_only_for_a_gone_process_of_this_host() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    me = leases.holder_name()
    host = me.rpartition(":")[0]
    assert not leases.holder_is_dead(me)
    assert leases.holder_is_dead(f"{host}:{proc.pid}")
    assert not leases.holder_is_dead(f"another-host:{proc.pid}")
    assert not leases.holder_is_dead(None) and not leases.holder_is_dead("garbage")


def test_two_runs_taking_one_lease_at_once_one_wins(spark, lake, monkeypatch) -> None:
    lake_mod = leases.lake
    lake_mod.ensure(spark, lake, tables.LEASES)
    barrier = threading.Barrier(2, timeout=120)
    real_merge = lake_mod.merge

    def merge_together(*args, **kwargs):
        barrier.wait()  # both runs have seen no holder; now both commit
        return real_merge(*args, **kwargs)

    monkeypatch.setattr(lake_mod, "merge", merge_together)
    outcome: dict[str, object] = {}

    def take(run_id: str) -> None:
        try:
            outcome[run_id] = leases.acquire(spark, lake, "match", run_id)
        except ConcurrentRunError as exc:
            outcome[run_id] = exc

    threads = [threading.Thread(target=take, args=(r,)) for r in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    won = [r for r, v in outcome.items() if isinstance(v, leases.Lease)]
    lost = [v for v in outcome.values() if isinstance(v, ConcurrentRunError)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert "changed nothing" in str(lost[0]) and "re-run" in str(lost[0])
    rows = lake_mod.read(spark, lake, tables.LEASES).collect()
    assert [r["run_id"] for r in rows] == won


def test_held_lease_blocks_others_until_released(spark, lake) -> None:
    with leases.held(spark, lake, "balance", "first") as run_id:
        assert run_id == "first"
        with pytest.raises(ConcurrentRunError, match=r"another balance run \(first on .*\) is writing lake"):
            leases.acquire(spark, lake, "balance", "second")
        with leases.held(spark, lake, "balance") as nested:  # same thread: re-entrant (refresh -> balance)
            assert nested
        with leases.held(spark, lake, "match", "other-scope"):  # scopes are independent
            pass
    assert lake_rows(spark, lake) == []
    second = leases.acquire(spark, lake, "balance", "second")
    assert lake_rows(spark, lake) == ["second"]
    leases.release(spark, lake, second)


def test_dead_or_expired_holders_are_taken_over(spark, lake) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = leases.holder_name().rpartition(":")[0]
    now = leases._now()
    rows = [("match", "killed-run", f"{host}:{proc.pid}", now, now + timedelta(hours=1)),
            ("balance", "cluster-run", "other-host:1", now - timedelta(hours=2), now - timedelta(hours=1)),
            ("report", "live-run", "other-host:1", now, now + timedelta(hours=1))]
    lake_root = lake
    leases.lake.merge_insert_only(spark, lake_root, tables.LEASES,
                           spark.createDataFrame(rows, tables.schema(tables.LEASES)), ["scope"])
    assert leases.acquire(spark, lake_root, "match", "next-match").run_id == "next-match"
    assert leases.acquire(spark, lake_root, "balance", "next-balance").run_id == "next-balance"
    with pytest.raises(ConcurrentRunError, match="live-run"):
        leases.acquire(spark, lake_root, "report", "next-report")


def test_renew_pushes_expiry_and_notices_a_takeover(spark, lake) -> None:
    lease = leases.acquire(spark, lake, "match", "r1", ttl=60)
    assert leases.renew(spark, lake, lease, ttl=3600)
    row = leases.lake.read(spark, lake, tables.LEASES).first()
    assert row["expires_at"] > lease.expires_at + timedelta(minutes=30)
    leases.release(spark, lake, lease)
    assert not leases.renew(spark, lake, lease)


def lake_rows(spark, root: str) -> list[str]:
    return sorted(r["run_id"] for r in leases.lake.read(spark, root, tables.LEASES).collect())


def test_a_lease_taken_while_reading_is_held_for_the_writes_and_given_back(spark, lake) -> None:
    with leases.taken_while_reading(spark, lake, "balance") as pending:
        assert spark.range(1000).count() == 1000  # reads run while the lease is being taken
        pending.wait()
        [row] = leases.lake.read(spark, lake, tables.LEASES).collect()
        assert row["scope"] == "balance" and row["holder"] == leases.holder_name()
        with leases.held(spark, lake, "balance") as nested:  # re-entrant, like held
            assert nested == "nested"
    assert lake_rows(spark, lake) == []


def test_a_refused_lease_cancels_the_reads_under_way(spark, lake) -> None:
    """Another live run holds the lease: the block's running Spark job is cancelled (a balance over
    400M pairs must not read for an hour first) and the block ends with the lease's one line."""
    now = leases._now()
    leases.lake.merge_insert_only(spark, lake, tables.LEASES, spark.createDataFrame(
        [("balance", "other-run", "other-host:1", now, now + timedelta(hours=1))],
        tables.schema(tables.LEASES)), ["scope"])
    finished = False
    refused = pytest.raises(ConcurrentRunError, match=r"another balance run \(other-run on other-host:1")
    with refused, leases.taken_while_reading(spark, lake, "balance") as pending:
        # ~a minute of work on two cores unless cancelled, in short tasks as real stages are: the
        # lease's own small jobs get the next free task slot (FAIR pools), not the stage's end
        spark.range(0, 3_000_000_000, numPartitions=600).selectExpr("sum(hash(id, id * 7))").first()
        finished = True
        pending.wait()
    assert not finished
    assert lake_rows(spark, lake) == ["other-run"]
    assert spark.range(10).count() == 10  # later jobs of this thread are not tagged for cancellation
