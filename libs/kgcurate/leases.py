"""One writer per stage and lake: a lease row in the ``leases`` Delta table.

Two runs of a stage that rewrites derived tables (``match``, ``balance``) must not interleave:
each run's commits are correct alone, but the second run's append or overwrite on top of the
first's leaves tables that agree with neither (duplicated ``matches``, a ``match_state`` naming
another run's versions). A run therefore takes its stage's lease before its first write and
gives it back at the end.

Taking the lease is one Delta MERGE keyed on the scope: it inserts the row when there is none,
and replaces it only when it is this run's own, expired, or one this run has just seen to be
stale. Delta's optimistic concurrency makes that atomic: of two runs merging at once, one
commits and the other fails with a conflict (its read of the row was invalidated); the MERGE's own
row count says whether this run wrote the row. A held lease is renewed every ``ttl / 3``
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

from kgcurate import lake, run_ids, tables
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


def _row(spark: SparkSession, root: str, scope: str):
    return (lake.read(spark, root, tables.LEASES).where(F.col("scope") == scope)
            .orderBy(F.col("acquired_at").desc()).first())


def _busy(scope: str, root: str, row) -> ConcurrentRunError:
    if row is None:  # the holder came and went while we tried
        return ConcurrentRunError(f"another {scope} run took and released lake {root}'s {scope} lease while this "
                                  "run tried to take it; this run changed nothing: re-run it")
    return ConcurrentRunError(
        f"another {scope} run ({row['run_id']} on {row['holder']}, since {row['acquired_at']:%Y-%m-%d %H:%M:%S} UTC) "
        f"is writing lake {root}; this run changed nothing: re-run it when the other has finished "
        f"(if that run died, its lease expires at {row['expires_at']:%H:%M:%S} UTC)")


def acquire(spark: SparkSession, root: str, scope: str, run_id: str, ttl: float = DEFAULT_TTL) -> Lease:
    """Take ``scope``'s lease for ``run_id`` or raise :class:`ConcurrentRunError` naming the holder.

    The common case (no holder, or an expired one) is one MERGE whose own row count says whether it
    took the row; the row is read only when it did not, to name the holder or see that it is dead."""
    lake.ensure(spark, root, tables.LEASES)
    now = _now()
    me = Lease(scope, run_id, holder_name(), now + timedelta(seconds=ttl))
    src = spark.createDataFrame([(scope, run_id, me.holder, now, me.expires_at)], tables.schema(tables.LEASES))
    ours_or_expired = (F.col("t.run_id") == F.col("s.run_id")) | (F.col("t.expires_at") < F.col("s.acquired_at"))
    if _take(spark, root, scope, src, ours_or_expired):
        return me
    current = _row(spark, root, scope)
    if current is not None and holder_is_dead(current["holder"]):
        log.warning("%s: taking over the lease of %s (%s), which is gone", scope, current["run_id"],
                    current["holder"])
        if _take(spark, root, scope, src, F.col("t.run_id") == F.lit(current["run_id"])):
            return me
        current = _row(spark, root, scope) or current
    if current is None:  # released between our MERGE and the read: one more try
        if _take(spark, root, scope, src, ours_or_expired):
            return me
        current = _row(spark, root, scope)
    raise _busy(scope, root, current)


def _take(spark: SparkSession, root: str, scope: str, src, when) -> bool:
    """One MERGE that inserts our row, or replaces the scope's row when ``when`` holds; True when it
    wrote. Of two runs merging at once Delta commits one and fails the other, which loses."""
    try:
        got = lake.merge(spark, root, tables.LEASES, src, "t.scope = s.scope", matched_update_when=when)
    except ConcurrentRunError:  # another run's MERGE committed first
        return False
    return got["numTargetRowsAffected"] == 1


def renew(spark: SparkSession, root: str, lease: Lease, ttl: float = DEFAULT_TTL) -> bool:
    """Push the expiry forward; False when the row is no longer ours (taken over as stale)."""
    src = spark.createDataFrame([(lease.scope, lease.run_id, lease.holder, _now(),
                                  _now() + timedelta(seconds=ttl))], tables.schema(tables.LEASES))
    got = lake.merge(spark, root, tables.LEASES, src, "t.scope = s.scope AND t.run_id = s.run_id",
                     matched_update_when="true", insert=False, columns=("expires_at",))
    return got["numTargetRowsAffected"] == 1


def release(spark: SparkSession, root: str, lease: Lease) -> None:
    lake.delete(spark, root, tables.LEASES,
                (F.col("scope") == lease.scope) & (F.col("run_id") == lease.run_id))


@contextmanager
def _nested(key: tuple[str, str, int]) -> Iterator[bool]:
    """Yields True (and counts the nesting) when this thread already holds the lease of ``key``."""
    with _lock:
        depth = _held.get(key, 0)
        if depth:
            _held[key] = depth + 1
    if not depth:
        yield False
        return
    try:
        yield True
    finally:
        with _lock:
            _held[key] -= 1


class _Heartbeat:
    """Renews a taken lease every ``ttl / 3`` seconds until :meth:`stop`, which also gives it back."""

    def __init__(self, spark: SparkSession, root: str, lease: Lease, ttl: float) -> None:
        self._spark, self._root, self._lease, self._ttl = spark, root, lease, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.scope}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lease = self._lease
        while not self._stop.wait(self._ttl / 3):
            try:
                if not renew(self._spark, self._root, lease, self._ttl):
                    log.error("%s: lease %s was taken over by another run", lease.scope, lease.run_id)
                    return
            except Exception as exc:  # noqa: BLE001 - a missed renewal only shortens the lease
                log.warning("%s: could not renew lease %s: %s", lease.scope, lease.run_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            release(self._spark, self._root, self._lease)
        except Exception as exc:  # noqa: BLE001 - an unreleased lease expires or is seen dead
            log.warning("%s: could not release lease %s: %s", self._lease.scope, self._lease.run_id, exc)


@contextmanager
def held(spark: SparkSession, root: str, scope: str, run_id: str | None = None,
         ttl: float = DEFAULT_TTL) -> Iterator[str]:
    """Hold ``scope``'s lease for the block; yields the run id. Re-entrant within one thread."""
    key = (lake.normalize_root(root), scope, threading.get_ident())
    with _nested(key) as nested:
        if nested:
            yield run_id or "nested"
            return
        run_id = run_id or run_ids.new(scope)
        beat = _Heartbeat(spark, root, acquire(spark, root, scope, run_id, ttl), ttl)
        with _lock:
            _held[key] = 1
        try:
            yield run_id
        finally:
            with _lock:
                _held.pop(key, None)
            beat.stop()


class Pending:
    """A lease being taken in the background: :meth:`wait` before the first write."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.error: BaseException | None = None

    def wait(self) -> None:
        self._done.wait()
        if self.error is not None:
            raise self.error


@contextmanager
def taken_while_reading(spark: SparkSession, root: str, scope: str, ttl: float = DEFAULT_TTL) -> Iterator[Pending]:
    """Hold ``scope``'s lease for the block, taking it while the block's read-only start runs.

    A lease guards writes; reading recorded table versions needs none. So the lease's MERGE (about a
    second, whatever the data size) overlaps the block's first Spark jobs, and the block calls
    ``wait()`` before it writes. A refused lease still fails fast: the block's running jobs (tagged)
    are cancelled and the block ends with the lease's one-line error. Re-entrant like :func:`held`."""
    key = (lake.normalize_root(root), scope, threading.get_ident())
    with _nested(key) as nested:
        pending = Pending()
        if nested:
            pending._done.set()
            yield pending
            return
        sc = spark.sparkContext
        tag = f"kgcurate-lease-{uuid.uuid4().hex[:12]}"
        got: list[_Heartbeat] = []

        def take() -> None:
            sc.setLocalProperty("spark.scheduler.pool", "kgcurate-leases")
            try:
                got.append(_Heartbeat(spark, root, acquire(spark, root, scope, run_ids.new(scope), ttl), ttl))
            except BaseException as exc:  # noqa: BLE001 - handed to the block's thread
                pending.error = exc
                sc.cancelJobsWithTag(tag)
            finally:
                pending._done.set()

        with _lock:
            _held[key] = 1
        sc.addJobTag(tag)
        taker = threading.Thread(target=take, name=f"lease-take-{scope}", daemon=True)
        taker.start()
        try:
            try:
                yield pending
            except Exception:
                pending._done.wait()
                if pending.error is not None:  # our jobs were cancelled for it: that is the story
                    raise pending.error from None
                raise
            pending.wait()
        finally:
            sc.removeJobTag(tag)
            taker.join()
            with _lock:
                _held.pop(key, None)
            for beat in got:
                beat.stop()
