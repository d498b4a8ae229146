"""The stage lease and bad_records written with deltalake, no Spark: what every stage takes (the Spark
stages in the driver, train and evaluate on a GPU node). With Spark: tests/test_leases_spark.py and
tests/test_lake_rs_spark.py."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from kgcurate import lake_rs, leases, tables
from kgcurate import lease_rules as rules
from kgcurate.bad_input import BadInput
from kgcurate.errors import ConcurrentRunError


def run_ids(root: str) -> list[str]:
    table = lake_rs.open_table(root, tables.LEASES)
    return sorted(r["run_id"] for r in table.to_pyarrow_table().to_pylist()) if table is not None else []


def put_rows(root: str, rows: list[tuple]) -> None:
    names = [f.name for f in tables.schema(tables.LEASES).fields]
    data = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows],
                                schema=tables.arrow_schema(tables.LEASES))
    write_deltalake(lake_rs.table_uri(root, tables.LEASES), data, mode="append")


def test_a_held_lease_refuses_others_until_released(lake) -> None:
    first = leases.acquire(lake, "evaluate:/exp/epoch_1.pt", "first")
    with pytest.raises(ConcurrentRunError, match=r"another evaluate:/exp/epoch_1.pt run \(first on .*\) is writing "
                                                 r"lake .*changed nothing"):
        leases.acquire(lake, "evaluate:/exp/epoch_1.pt", "second")
    assert leases.acquire(lake, "evaluate:/exp/epoch_1.pt", "first").run_id == "first"  # our own: retaken
    other = leases.acquire(lake, "evaluate:/exp/epoch_2.pt", "other")  # scopes are independent
    assert run_ids(lake) == ["first", "other"]
    leases.release(lake, first)
    assert run_ids(lake) == ["other"]
    assert leases.acquire(lake, "evaluate:/exp/epoch_1.pt", "second").run_id == "second"
    leases.release(lake, other)
    assert run_ids(lake) == ["second"]


def test_dead_or_expired_holders_are_taken_over_a_live_one_is_not(lake) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = rules.holder_name().rpartition(":")[0]
    now = rules.now()
    put_rows(lake, [("train:a", "killed-run", f"{host}:{proc.pid}", now, now + timedelta(hours=1)),
                    ("train:b", "cluster-run", "other-host:1", now - timedelta(hours=2), now - timedelta(hours=1)),
                    ("train:c", "live-run", "other-host:1", now, now + timedelta(hours=1))])
    assert leases.acquire(lake, "train:a", "next-a").run_id == "next-a"
    assert leases.acquire(lake, "train:b", "next-b").run_id == "next-b"
    with pytest.raises(ConcurrentRunError, match="live-run on other-host:1"):
        leases.acquire(lake, "train:c", "next-c")
    assert run_ids(lake) == ["live-run", "next-a", "next-b"]


def test_renew_pushes_the_expiry_and_notices_a_takeover(lake) -> None:
    lease = leases.acquire(lake, "train:x", "r1", ttl=60)
    assert leases.renew(lake, lease, ttl=3600)
    row = leases.current_row(lake, "train:x")
    assert row["expires_at"] > rules.utc(lease.expires_at) + timedelta(minutes=30)
    leases.release(lake, lease)
    assert not leases.renew(lake, lease)


def test_two_runs_taking_one_lease_at_once_one_wins(lake, monkeypatch) -> None:
    lake_rs.ensure(lake, tables.LEASES)
    barrier = threading.Barrier(2, timeout=60)
    real_ensure = lake_rs.ensure

    first_read: set[int] = set()

    def ensure_together(*args, **kwargs):
        table = real_ensure(*args, **kwargs)  # both read the table with no holder, then both commit
        if threading.get_ident() not in first_read:  # the loser's second read, after the winner's commit
            first_read.add(threading.get_ident())
            barrier.wait()
        return table

    monkeypatch.setattr(lake_rs, "ensure", ensure_together)
    outcome: dict[str, object] = {}

    def take(run_id: str) -> None:
        try:
            outcome[run_id] = leases.acquire(lake, "evaluate:x", run_id)
        except (ConcurrentRunError, threading.BrokenBarrierError) as exc:
            outcome[run_id] = exc

    threads = [threading.Thread(target=take, args=(r,)) for r in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    won = [r for r, v in outcome.items() if isinstance(v, rules.Lease)]
    lost = [v for v in outcome.values() if isinstance(v, ConcurrentRunError)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert f"({won[0]} on " in str(lost[0])
    assert run_ids(lake) == won


def stale_once(monkeypatch, name: str, snapshot) -> None:
    """``lake_rs.<name>`` gives ``snapshot`` (read before another commit) once, then the table as it is."""
    real = getattr(lake_rs, name)
    calls = iter([lambda *a, **k: snapshot])
    monkeypatch.setattr(lake_rs, name, lambda *a, **k: next(calls, real)(*a, **k))


def test_a_commit_that_lost_to_another_scopes_lease_is_run_again(lake, monkeypatch) -> None:
    """delta-rs fails a lease's commit when any lease changed the files it read (another stage's acquire,
    renew or release; after maintain's compaction every lease is in one file). Taking over an expired
    lease then refused, naming the dead run; a release failed and left the row to refuse a re-run."""
    now = rules.now()
    put_rows(lake, [("match", "match-dead", "driver-pod-1:12", now - timedelta(hours=2), now - timedelta(hours=1))])
    other = leases.acquire(lake, "balance", "bal-1")
    stale_once(monkeypatch, "ensure", lake_rs.open_table(lake, tables.LEASES))
    leases.renew(lake, other)  # balance's heartbeat commits between match's read and its commit
    assert leases.acquire(lake, "match", "match-new").run_id == "match-new"

    train = leases.acquire(lake, "train:/exp/a", "train-a")
    lake_rs.open_table(lake, tables.LEASES).optimize.compact()  # maintain's OPTIMIZE: one file
    before = lake_rs.open_table(lake, tables.LEASES)
    leases.renew(lake, other)
    stale_once(monkeypatch, "open_table", before)
    leases.release(lake, train)  # train ends while balance renews
    assert run_ids(lake) == ["bal-1", "match-new"]
    b = leases.acquire(lake, "train:/exp/b", "train-b")
    before = lake_rs.open_table(lake, tables.LEASES)
    leases.renew(lake, other)
    stale_once(monkeypatch, "open_table", before)
    assert leases.renew(lake, b)  # a renew that lost is run again too


def test_held_renews_while_the_block_runs_and_gives_the_lease_back(lake, monkeypatch) -> None:
    renewed = threading.Event()
    real_renew = leases.renew

    def renew(*args, **kwargs) -> bool:
        ok = real_renew(*args, **kwargs)
        renewed.set()
        return ok

    monkeypatch.setattr(leases, "renew", renew)
    with leases.held(lake, "train:exp", "t1", ttl=0.6) as run_id:
        taken = leases.current_row(lake, "train:exp")
        assert run_id == "t1" and taken["holder"] == rules.holder_name()
        with leases.held(lake, "train:exp") as nested:  # same thread: re-entrant
            assert nested == "nested"
        assert renewed.wait(timeout=60)
        assert leases.current_row(lake, "train:exp")["expires_at"] > taken["expires_at"]
    assert run_ids(lake) == []


def test_a_refused_held_block_does_not_run(lake) -> None:
    leases.acquire(lake, "train:exp", "other")
    ran = False
    with pytest.raises(ConcurrentRunError, match="other"), leases.held(lake, "train:exp"):
        ran = True
    assert not ran and run_ids(lake) == ["other"]


BAD = [BadInput("/shards/00000.tar", 3, "image does not decode", "000000003: UnidentifiedImageError"),
       BadInput("/shards/00000.tar", 3, "image does not decode", "the same key again"),  # one row per key
       BadInput("/shards/00001.tar", 7, "tar cut off", "ReadError: unexpected end of data"),
       BadInput("/digits/3/x.png", 0, "image does not decode", None)]


def test_bad_records_are_written_once_with_job_run_and_source(lake) -> None:
    assert lake_rs.record_bad_input(lake, "evaluate", "evaluate-1", BAD) == 3
    assert lake_rs.record_bad_input(lake, "evaluate", "evaluate-2", BAD) == 0  # a rerun adds nothing
    assert lake_rs.record_bad_input(lake, "train", "train-1", BAD[2:3]) == 1  # the job is part of the key
    rows = lake_rs.open_table(lake, tables.BAD_RECORDS).to_pyarrow_table().to_pylist()
    got = sorted((r["job"], r["run_id"], r["source_file"], r["offset"], r["reason"], r["sample"]) for r in rows)
    assert got == [
        ("evaluate", "evaluate-1", "/digits/3/x.png", 0, "image does not decode", None),
        ("evaluate", "evaluate-1", "/shards/00000.tar", 3, "image does not decode",
         "000000003: UnidentifiedImageError"),
        ("evaluate", "evaluate-1", "/shards/00001.tar", 7, "tar cut off", "ReadError: unexpected end of data"),
        ("train", "train-1", "/shards/00001.tar", 7, "tar cut off", "ReadError: unexpected end of data")]


def test_no_bad_input_makes_the_table_and_no_row_and_a_missing_offset_is_refused(lake) -> None:
    assert lake_rs.record_bad_input(lake, "evaluate", "e1", []) == 0
    table = lake_rs.open_table(lake, tables.BAD_RECORDS)
    assert table is not None and table.to_pyarrow_table().num_rows == 0
    assert table.schema().to_arrow().names == [f.name for f in tables.schema(tables.BAD_RECORDS).fields]
    with pytest.raises(ValueError, match="offset"):
        lake_rs.record_bad_input(lake, "evaluate", "e1", [BadInput("/x", None, "why")])


def test_a_run_that_stalled_past_its_lease_and_was_taken_over_stops_before_its_next_write(lake, monkeypatch) -> None:
    """A holder paused past its expiry (a stopped VM, renewals failing) is taken over by another run; when it
    wakes up, its next write must refuse, not commit beside the new holder's (the heartbeat only logged it)."""
    real_now = rules.now
    with leases.held(lake, "match", "run-A", ttl=3600):
        rules.check_not_lost()  # held and in time: writes go on
        monkeypatch.setattr(rules, "now", lambda: real_now() + timedelta(hours=2))  # A stalled two hours
        leases.acquire(lake, "match", "run-B", ttl=3 * 3600)  # meanwhile run B took the expired lease
        with pytest.raises(rules.LeaseLostError, match=r"match run's lease \(run-A\) was taken over .*stopped before "
                                                       r"its next write"):
            rules.check_not_lost()
        with pytest.raises(ConcurrentRunError):  # a delta-rs write of this run refuses as well
            lake_rs.record_bad_input(lake, "match", "run-A", [BadInput("f", 0, "x", "")])
        assert lake_rs.open_table(lake, tables.BAD_RECORDS) is None
    assert run_ids(lake) == ["run-B"]  # A's exit deleted only its own row


def test_a_stall_nobody_used_renews_on_the_next_write_and_goes_on(lake, monkeypatch) -> None:
    real_now = rules.now
    with leases.held(lake, "balance", "run-A", ttl=3600):
        before = leases.current_row(lake, "balance")["expires_at"]
        monkeypatch.setattr(rules, "now", lambda: real_now() + timedelta(hours=2))
        rules.check_not_lost()  # past its expiry, but the row is still its own: renewed here
        assert leases.current_row(lake, "balance")["expires_at"] > before + timedelta(hours=2)
        rules.check_not_lost()
    assert run_ids(lake) == []


def test_a_heartbeat_whose_renewal_finds_the_row_gone_marks_the_lease_lost() -> None:
    lease = rules.new_lease("train:exp", "t1", 3600)
    beat = rules.Heartbeat(lease, 3600, lambda: False, lambda: None)
    beat.check()  # not yet renewed: in time
    beat._renew_once()
    with pytest.raises(rules.LeaseLostError, match="taken over"):
        beat.check()
    beat.stop()
    outage = [True]

    def renew() -> bool:
        if outage[0]:
            raise OSError("leases table not reachable")
        return True

    failing = rules.Heartbeat(rules.new_lease("x", "r", -1), 3600, renew, lambda: None)
    with pytest.raises(rules.LeaseLostError, match="expired and cannot be renewed"):
        failing.check()  # past its expiry and the renewal fails: nobody can say the row is still ours
    outage[0] = False
    failing.check()  # the outage is over and the row was still ours: renewed, the run goes on
    assert failing.lost is None
    failing.stop()
