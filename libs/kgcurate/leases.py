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

The rules and the row are shared (:mod:`kgcurate.lease_rules`) with :mod:`kgcurate.leases_rs`, the
same lease written with ``deltalake`` by the stages without Spark (train, evaluate): either engine's
lease blocks the other's taker of the same scope.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from kgcurate import lake, run_ids, tables
from kgcurate import lease_rules as rules
from kgcurate.errors import ConcurrentRunError
from kgcurate.lease_rules import DEFAULT_TTL, Lease, holder_is_dead, holder_name, log  # noqa: F401 - re-exported
from kgcurate.lease_rules import now as _now


def _row(spark: SparkSession, root: str, scope: str):
    return (lake.read(spark, root, tables.LEASES).where(F.col("scope") == scope)
            .orderBy(F.col("acquired_at").desc()).first())


def acquire(spark: SparkSession, root: str, scope: str, run_id: str, ttl: float = DEFAULT_TTL) -> Lease:
    """Take ``scope``'s lease for ``run_id`` or raise :class:`ConcurrentRunError` naming the holder.

    The common case (no holder, or an expired one) is one MERGE whose own row count says whether it
    took the row; the row is read only when it did not, to name the holder or see that it is dead."""
    lake.ensure(spark, root, tables.LEASES)
    now = _now()
    me = rules.new_lease(scope, run_id, ttl, now)
    src = _source(spark, me, now)
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
    raise rules.busy_error(scope, root, current)


def _source(spark: SparkSession, lease: Lease, at: datetime, ttl: float | None = None):
    values = rules.row_values(lease, at, ttl)
    return spark.createDataFrame([tuple(values[f.name] for f in tables.schema(tables.LEASES).fields)],
                                 tables.schema(tables.LEASES))


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
    src = _source(spark, lease, _now(), ttl)
    got = lake.merge(spark, root, tables.LEASES, src, "t.scope = s.scope AND t.run_id = s.run_id",
                     matched_update_when="true", insert=False, columns=("expires_at",))
    return got["numTargetRowsAffected"] == 1


def release(spark: SparkSession, root: str, lease: Lease) -> None:
    lake.delete(spark, root, tables.LEASES,
                (F.col("scope") == lease.scope) & (F.col("run_id") == lease.run_id))


def _heartbeat(spark: SparkSession, root: str, lease: Lease, ttl: float) -> rules.Heartbeat:
    """Renews ``lease`` every ``ttl / 3`` seconds until stopped, then gives it back."""
    return rules.Heartbeat(lease, ttl, lambda: renew(spark, root, lease, ttl), lambda: release(spark, root, lease))


@contextmanager
def held(spark: SparkSession, root: str, scope: str, run_id: str | None = None,
         ttl: float = DEFAULT_TTL) -> Iterator[str]:
    """Hold ``scope``'s lease for the block; yields the run id. Re-entrant within one thread."""
    key = (lake.normalize_root(root), scope, threading.get_ident())
    with rules.nested(key) as nested:
        if nested:
            yield run_id or "nested"
            return
        run_id = run_id or run_ids.new(scope)
        beat = _heartbeat(spark, root, acquire(spark, root, scope, run_id, ttl), ttl)
        rules.mark_held(key)
        try:
            yield run_id
        finally:
            rules.unmark_held(key)
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
    with rules.nested(key) as nested:
        pending = Pending()
        if nested:
            pending._done.set()
            yield pending
            return
        sc = spark.sparkContext
        tag = f"kgcurate-lease-{uuid.uuid4().hex[:12]}"
        got: list[rules.Heartbeat] = []

        def take() -> None:
            sc.setLocalProperty("spark.scheduler.pool", "kgcurate-leases")
            try:
                got.append(_heartbeat(spark, root, acquire(spark, root, scope, run_ids.new(scope), ttl), ttl))
            except BaseException as exc:  # noqa: BLE001 - handed to the block's thread
                pending.error = exc
                sc.cancelJobsWithTag(tag)
            finally:
                pending._done.set()

        rules.mark_held(key)
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
            rules.unmark_held(key)
            for beat in got:
                beat.stop()
