"""One writer per stage and lake: a lease row in the ``leases`` Delta table, written with
``deltalake`` (delta-rs) by every stage, Spark or not.

Two runs of a stage that rewrites derived tables (``match``, ``balance``) must not interleave:
each run's commits are correct alone, but the second run's append or overwrite on top of the
first's leaves tables that agree with neither (duplicated ``matches``, a ``match_state`` naming
another run's versions). A run therefore takes its stage's lease before its first write and
gives it back at the end; ``train`` and ``evaluate`` take theirs per experiment / checkpoint.

Taking it is one MERGE keyed on the scope that inserts our row, or replaces the scope's row when it
is our run's or expired; of two takers committing at once delta-rs fails the later commit (it read
the table the winner changed), and the MERGE's own row count says whether we wrote the row.
Refused, the row is read once to name its holder, or to take it over when that holder is a process
of this host that is gone. A daemon thread renews it every ``ttl / 3`` seconds; the end deletes it,
so a run killed on a cluster frees its lease ``ttl`` seconds later.

Why delta-rs and not Spark, for the Spark stages too: through Spark the same MERGE took 1-4 s of
Spark jobs (snapshot, join, rewrite, commit) and the release another 1-3 s, a fixed cost every
``match`` and ``balance`` run paid (docs/curation.md, "Measured"); delta-rs does each in tens of
milliseconds in the driver, with no JVM, so GPU nodes take the same lease. On S3 delta-rs commits
with conditional writes, so two drivers cannot both commit the same version (Spark's default
single-driver S3 log store could not promise that across clusters). The rules and the row layout
(:mod:`kgcurate.lease_rules`) are the ones Spark read and wrote before, so a lake's existing rows
still count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from kgcurate import lake_rs, run_ids
from kgcurate import lease_rules as rules
from kgcurate.lease_rules import DEFAULT_TTL, Lease, log
from kgcurate.table_names import LEASES

T = TypeVar("T")


def _source(lease: Lease, at: datetime, ttl: float | None = None):
    import pyarrow as pa

    from kgcurate import tables

    return pa.Table.from_pylist([rules.row_values(lease, at, ttl)], schema=tables.arrow_schema(LEASES))


def current_row(root: str, scope: str) -> Mapping[str, Any] | None:
    """The scope's row (the newest, should there be several), or None."""
    table = lake_rs.open_table(root, LEASES)
    if table is None:
        return None
    rows = [r for r in table.to_pyarrow_table().to_pylist() if r["scope"] == scope]
    return max(rows, key=lambda r: r["acquired_at"].timestamp() if r["acquired_at"] else 0.0) if rows else None


def _take(root: str, lease: Lease, at: datetime, when: str) -> bool:
    """One MERGE that inserts ``lease``'s row, or replaces the scope's row when ``when`` holds; True
    when it wrote. A commit that lost to a concurrent one is run again on the table as it now stands:
    delta-rs fails a commit for any change to the files it read, another scope's lease too (an acquire,
    a renew, a release; after ``maintain`` compacted the table every lease is in one file), and when it
    was a taker of this scope, the MERGE's condition now refuses and it writes nothing."""
    def once() -> bool:
        table = lake_rs.ensure(root, LEASES)
        got = (table.merge(_source(lease, at), "t.scope = s.scope", source_alias="s", target_alias="t")
               .when_matched_update_all(predicate=when).when_not_matched_insert_all().execute())
        return lake_rs.merge_counts(got)["num_affected_rows"] == 1

    try:
        return _retried(once)
    except Exception as exc:
        if lake_rs.is_conflict(exc):  # lost every time: taken, as far as this run can tell
            return False
        raise


OURS_OR_EXPIRED = "t.run_id = s.run_id OR t.expires_at < s.acquired_at"


def acquire(root: str, scope: str, run_id: str, ttl: float = DEFAULT_TTL) -> Lease:
    """Take ``scope``'s lease for ``run_id`` or raise :class:`ConcurrentRunError` naming the holder
    (what :func:`kgcurate.leases.acquire` does with Spark)."""
    now = rules.now()
    me = rules.new_lease(scope, run_id, ttl, now)
    if _take(root, me, now, OURS_OR_EXPIRED):
        return me
    current = current_row(root, scope)
    if current is not None and rules.holder_is_dead(current["holder"]):
        log.warning("%s: taking over the lease of %s (%s), which is gone", scope, current["run_id"],
                    current["holder"])
        if _take(root, me, now, f"t.run_id = {lake_rs.sql_string(current['run_id'])}"):
            return me
        current = current_row(root, scope) or current
    if current is None:  # released between our MERGE and the read: one more try
        if _take(root, me, now, OURS_OR_EXPIRED):
            return me
        current = current_row(root, scope)
    raise rules.busy_error(scope, root, current)


def renew(root: str, lease: Lease, ttl: float = DEFAULT_TTL) -> bool:
    """Push the expiry forward; False when the row is no longer ours (taken over as stale). A commit
    lost to a concurrent one is run again (see :func:`_take`); one that keeps losing raises (the
    heartbeat logs it and tries again at its next beat)."""
    def once() -> bool:
        table = lake_rs.open_table(root, LEASES)
        if table is None:
            return False
        got = (table.merge(_source(lease, rules.now(), ttl), "t.scope = s.scope AND t.run_id = s.run_id",
                           source_alias="s", target_alias="t")
               .when_matched_update(updates={"expires_at": "s.expires_at"}).execute())
        return lake_rs.merge_counts(got)["num_updated_rows"] == 1

    return _retried(once)


def release(root: str, lease: Lease) -> None:
    """Delete our row; a commit lost to another lease's is run again (deleting it twice is harmless). Left
    behind, the row would refuse a re-run on another host until it expires."""
    def once() -> None:
        table = lake_rs.open_table(root, LEASES)
        if table is not None:
            table.delete(f"scope = {lake_rs.sql_string(lease.scope)} AND run_id = {lake_rs.sql_string(lease.run_id)}")

    _retried(once)


def _retried(write: Callable[[], T]) -> T:
    """``write()`` (which opens the table itself), again while its commit loses to a concurrent one."""
    for attempt in range(lake_rs.TRIES):
        try:
            return write()
        except Exception as exc:
            if not lake_rs.is_conflict(exc) or attempt == lake_rs.TRIES - 1:
                raise
    raise AssertionError("unreachable")


def lease_key(root: str, scope: str) -> tuple[str, str, int]:
    """The nesting key of ``scope``'s lease on ``root`` in this thread (one lake, however it is spelt)."""
    return (lake_rs.table_uri(root, ""), scope, threading.get_ident())


@contextmanager
def held(root: str, scope: str, run_id: str | None = None, ttl: float = DEFAULT_TTL) -> Iterator[str]:
    """Hold ``scope``'s lease for the block, renewed, given back at the end however it ends; yields the
    run id. Re-entrant within one thread (like :func:`kgcurate.leases.held`)."""
    key = lease_key(root, scope)
    with rules.nested(key) as nested:
        if nested:
            yield run_id or "nested"
            return
        run_id = run_id or run_ids.new(scope.partition(":")[0])
        lease = acquire(root, scope, run_id, ttl)
        beat = rules.Heartbeat(lease, ttl, lambda: renew(root, lease, ttl), lambda: release(root, lease))
        rules.mark_held(key, beat)
        try:
            yield run_id
        finally:
            rules.unmark_held(key)
            beat.stop()
