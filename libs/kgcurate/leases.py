"""One writer per stage and lake: a lease row in the ``leases`` Delta table.

Two runs of a stage that rewrites derived tables (``match``, ``balance``) must not interleave:
each run's commits are correct alone, but the second run's append or overwrite on top of the
first's leaves tables that agree with neither (duplicated ``matches``, a ``match_state`` naming
another run's versions). A run therefore takes its stage's lease before its first write and
gives it back at the end.

Taking the lease is one Delta MERGE keyed on the scope: it inserts the row when there is none,
and replaces it only when it is this run's own, expired, or one this run has just seen to be
stale. Delta's optimistic concurrency makes that atomic: of two runs merging at once, one
commits and the other fails with a conflict (its read of the row was invalidated), and the row
read back at our own commit's version must name us. A held lease is renewed every ``ttl / 3``
seconds by a daemon thread, so a run killed on a cluster frees its lease ``ttl`` seconds later;
a run killed on this host (same host name, process gone) frees it at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from kgcurate import lake, tables
from kgcurate.errors import ConcurrentRunError

log = logging.getLogger("kgcurate.leases")
DEFAULT_TTL = 600.0  # seconds; renewed every ttl/3 while the run lives

# (lake, scope, thread) -> nesting depth: a refresh holding a stage's lease calls that stage in the same thread.
_held: dict[tuple[str, str, int], int] = {}
_lock = threading.Lock()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str | None, host: str | None = None) -> bool:
    """True when ``holder`` (host:pid) names a process of this host that no longer exists."""
    if not holder or ":" not in holder:
        return False
    h, _, pid = holder.rpartition(":")
    if h != (host or socket.gethostname()) or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True)
class Lease:
    scope: str
    run_id: str
    holder: str
    expires_at: datetime


def _row(spark: SparkSession, root: str, scope: str, version: int | None = None):
    return (lake.read(spark, root, tables.LEASES, version).where(F.col("scope") == scope)
            .orderBy(F.col("acquired_at").desc()).first())


def _busy(scope: str, root: str, row) -> ConcurrentRunError:
    return ConcurrentRunError(
        f"another {scope} run ({row['run_id']} on {row['holder']}, since {row['acquired_at']:%Y-%m-%d %H:%M:%S} UTC) "
        f"is writing lake {root}; this run changed nothing: re-run it when the other has finished "
        f"(if that run died, its lease expires at {row['expires_at']:%H:%M:%S} UTC)")


def acquire(spark: SparkSession, root: str, scope: str, run_id: str, ttl: float = DEFAULT_TTL) -> Lease:
    """Take ``scope``'s lease for ``run_id`` or raise :class:`ConcurrentRunError` naming the holder."""
    lake.ensure(spark, root, tables.LEASES)
    now = _now()
    current = _row(spark, root, scope)
    stale_run = ""
    if current is not None and current["run_id"] != run_id:
        if current["expires_at"] < now or holder_is_dead(current["holder"]):
            stale_run = current["run_id"]
            log.warning("%s: taking over the lease of %s (%s), which is gone", scope, stale_run, current["holder"])
        else:
            raise _busy(scope, root, current)
    me = Lease(scope, run_id, holder_name(), now + timedelta(seconds=ttl))
    src = spark.createDataFrame([(scope, run_id, me.holder, now, me.expires_at)], tables.schema(tables.LEASES))
    cond = (F.col("t.run_id") == F.col("s.run_id")) | (F.col("t.expires_at") < F.col("s.acquired_at"))
    if stale_run:
        cond = cond | (F.col("t.run_id") == F.lit(stale_run))
    try:
        lake.merge(spark, root, tables.LEASES, src, "t.scope = s.scope", matched_update_when=cond)
    except ConcurrentRunError:  # another run's MERGE committed first: name it
        got = _row(spark, root, scope)
        if got is None or got["run_id"] == run_id:
            raise
        raise _busy(scope, root, got) from None
    got = _row(spark, root, scope)
    if got is None or got["run_id"] != run_id:
        raise _busy(scope, root, got or current)
    return me


def renew(spark: SparkSession, root: str, lease: Lease, ttl: float = DEFAULT_TTL) -> bool:
    """Push the expiry forward; False when the row is no longer ours (taken over as stale)."""
    src = spark.createDataFrame([(lease.scope, lease.run_id, lease.holder, _now(),
                                  _now() + timedelta(seconds=ttl))], tables.schema(tables.LEASES))
    lake.merge(spark, root, tables.LEASES, src, "t.scope = s.scope AND t.run_id = s.run_id",
               matched_update_when="true", insert=False, columns=("expires_at",))
    got = _row(spark, root, lease.scope)
    return got is not None and got["run_id"] == lease.run_id


def release(spark: SparkSession, root: str, lease: Lease) -> None:
    lake.delete(spark, root, tables.LEASES,
                (F.col("scope") == lease.scope) & (F.col("run_id") == lease.run_id))


@contextmanager
def held(spark: SparkSession, root: str, scope: str, run_id: str | None = None,
         ttl: float = DEFAULT_TTL) -> Iterator[str]:
    """Hold ``scope``'s lease for the block; yields the run id. Re-entrant within one thread."""
    key = (lake.normalize_root(root), scope, threading.get_ident())
    with _lock:
        depth = _held.get(key, 0)
        if depth:
            _held[key] = depth + 1
    if depth:
        try:
            yield run_id or "nested"
        finally:
            with _lock:
                _held[key] -= 1
        return
    run_id = run_id or f"{scope}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    lease = acquire(spark, root, scope, run_id, ttl)
    with _lock:
        _held[key] = 1
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl / 3):
            try:
                if not renew(spark, root, lease, ttl):
                    log.error("%s: lease %s was taken over by another run", scope, run_id)
                    return
            except Exception as exc:  # noqa: BLE001 - a missed renewal only shortens the lease
                log.warning("%s: could not renew lease %s: %s", scope, run_id, exc)

    beat = threading.Thread(target=heartbeat, name=f"lease-{scope}", daemon=True)
    beat.start()
    try:
        yield run_id
    finally:
        stop.set()
        beat.join(timeout=30)
        with _lock:
            _held.pop(key, None)
        try:
            release(spark, root, lease)
        except Exception as exc:  # noqa: BLE001 - an unreleased lease expires or is seen dead
            log.warning("%s: could not release lease %s: %s", scope, run_id, exc)
