"""What a lease is, whichever engine writes its row: Spark (:mod:`kgcurate.leases`, the Spark stages) or
``deltalake`` (:mod:`kgcurate.leases`, train and evaluate on GPU nodes without a JVM).

Both take the same row of the same ``leases`` table by the same rules, so a lease taken by one blocks
the other: a row is ours to replace when it is our own run's, expired, or held by a process of this
host that is gone; a held lease is renewed every ``ttl / 3`` seconds and deleted at the end. Pure
parts only (no Spark, no deltalake): the holder's name, the dead-holder test, the one-line refusal,
the row's values, the per-thread nesting and the heartbeat thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from kgcurate.errors import ConcurrentRunError

log = logging.getLogger("kgcurate.leases")
DEFAULT_TTL = 600.0  # seconds; renewed every ttl/3 while the run lives

# (lake, scope, thread) -> nesting depth: a refresh holding a stage's lease calls that stage in the same thread.
_held: dict[tuple[str, str, int], int] = {}
_beats: dict[tuple[str, str, int], Heartbeat] = {}  # the same keys -> the lease's heartbeat
_lock = threading.Lock()


def now() -> datetime:
    """UTC now, naive (the clock both engines compare ``expires_at`` with)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def utc(t: datetime) -> datetime:
    """``t`` (naive UTC, or aware) as an aware UTC time: what a row is written with, so neither
    Spark (which reads a naive time as the host's local time) nor Arrow can shift it."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


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


def new_lease(scope: str, run_id: str, ttl: float, at: datetime | None = None) -> Lease:
    return Lease(scope, run_id, holder_name(), (at or now()) + timedelta(seconds=ttl))


def row_values(lease: Lease, acquired_at: datetime, ttl: float | None = None) -> dict[str, Any]:
    """The ``leases`` row of ``lease`` taken (or renewed) at ``acquired_at``, times aware UTC."""
    expires = lease.expires_at if ttl is None else acquired_at + timedelta(seconds=ttl)
    return {"scope": lease.scope, "run_id": lease.run_id, "holder": lease.holder,
            "acquired_at": utc(acquired_at), "expires_at": utc(expires)}


def busy_error(scope: str, root: str, row: Mapping[str, Any] | None) -> ConcurrentRunError:
    """The one line a refused run ends with: who holds the lease, since when, until when."""
    if row is None:  # the holder came and went while we tried
        return ConcurrentRunError(f"another {scope} run took and released lake {root}'s {scope} lease while this "
                                  "run tried to take it; this run changed nothing: re-run it")
    return ConcurrentRunError(
        f"another {scope} run ({row['run_id']} on {row['holder']}, since {row['acquired_at']:%Y-%m-%d %H:%M:%S} UTC) "
        f"is writing lake {root}; this run changed nothing: re-run it when the other has finished "
        f"(if that run died, its lease expires at {row['expires_at']:%H:%M:%S} UTC)")


@contextmanager
def nested(key: tuple[str, str, int]) -> Iterator[bool]:
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


def mark_held(key: tuple[str, str, int], beat: Heartbeat | None = None) -> None:
    with _lock:
        _held[key] = 1
        if beat is not None:
            _beats[key] = beat


def unmark_held(key: tuple[str, str, int]) -> None:
    with _lock:
        _held.pop(key, None)
        _beats.pop(key, None)


def check_not_lost() -> None:
    """Raise :class:`LeaseLostError` when a lease this thread holds is no longer its own: every lake
    write calls this before it commits. A run that stalled past its lease's expiry (a paused VM, renewals
    failing through an outage) may have been taken over; it must stop writing, or two runs interleave."""
    me = threading.get_ident()
    with _lock:
        beats = [b for k, b in _beats.items() if k[2] == me]
    for beat in beats:
        beat.check()


class LeaseLostError(ConcurrentRunError):
    """This run's lease was taken over (or expired unrenewed): it stopped before its next write."""


class Heartbeat:
    """Renews a taken lease every ``ttl / 3`` seconds until :meth:`stop`, which also gives it back.

    ``renew()`` returns False when the row is no longer ours; ``release()`` deletes it. The lease is
    *lost* once a renewal finds the row gone, or once its expiry passed without a renewal landing:
    then :meth:`check` (every write's guard, :func:`check_not_lost`) raises."""

    def __init__(self, lease: Lease, ttl: float, renew: Callable[[], bool], release: Callable[[], None]) -> None:
        self._lease, self._ttl, self._renew, self._release = lease, ttl, renew, release
        self._valid_until = lease.expires_at  # naive UTC: the expiry of the last renewal that landed
        self.lost: str | None = None
        self._beat = threading.Lock()  # one renewal at a time: the thread's, or check()'s after a stall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.scope}", daemon=True)
        self._thread.start()

    def _renew_once(self) -> bool | None:
        """One renewal: True it landed, False the row is another run's (the lease is lost for good),
        None it failed (an outage: a later one may land, and the row is ours while no one took it)."""
        lease = self._lease
        with self._beat:
            if self.lost is not None:
                return False
            started = now()
            try:
                ours = self._renew()
            except Exception as exc:  # noqa: BLE001 - a missed renewal only shortens the lease
                log.warning("%s: could not renew lease %s: %s", lease.scope, lease.run_id, exc)
                return None
            if ours:
                self._valid_until = started + timedelta(seconds=self._ttl)
                return True
            self.lost = "was taken over by another run"
            log.error("%s: lease %s %s", lease.scope, lease.run_id, self.lost)
            return False

    def _run(self) -> None:
        while not self._stop.wait(self._ttl / 3) and self.lost is None:
            self._renew_once()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when the lease is lost. Past its expiry (this process stalled,
        its renewal thread with it, or renewals failed) the row is renewed here first: kept if no one
        took it meanwhile; a renewal that fails here too refuses this write, not the next ones."""
        lease = self._lease
        if self.lost is None and now() >= self._valid_until and self._renew_once() is None:
            raise LeaseLostError(
                f"this {lease.scope} run's lease ({lease.run_id}) expired and cannot be renewed (the lake's "
                "leases table is not writable now): it stopped before its next write so as not to write beside "
                "a run that may have taken it; the tables keep what it committed before: re-run it")
        if self.lost is not None:
            raise LeaseLostError(
                f"this {lease.scope} run's lease ({lease.run_id}) {self.lost} (the run stalled past its "
                f"{self._ttl:.0f} s lease): it stopped before its next write; the tables keep what it committed "
                "before, and the other run goes on: re-run this one when that has finished")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self._release()
        except Exception as exc:  # noqa: BLE001 - an unreleased lease expires or is seen dead
            log.warning("%s: could not release lease %s: %s", self._lease.scope, self._lease.run_id, exc)
