"""Per-host politeness inside one task: at most N requests in flight to a host, and a minimum gap
between the starts of two requests to it.

A shard's URLs often share a host (a CDN, a wiki); without a cap, 16 threads could all hit the same
site at once. The limit is per task (per Spark task / process), not cluster-wide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class HostLimiter:
    """Concurrency cap and start spacing per host; ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        max_per_host: int = 4,
        min_interval: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_per_host < 1:
            raise ValueError(f"max_per_host must be >= 1, got {max_per_host}")
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0, got {min_interval}")
        self.max_per_host = max_per_host
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s slots for the body of the ``with``; waits for a free slot, then for the gap.

        The next allowed start time is reserved under the lock before sleeping, so concurrent callers
        space themselves ``min_interval`` apart instead of all waking at once.
        """
        key = host.lower().rstrip(".")
        with self._lock:
            semaphore = self._slots.get(key)
            if semaphore is None:
                semaphore = self._slots[key] = threading.BoundedSemaphore(self.max_per_host)
        semaphore.acquire()
        try:
            with self._lock:
                now = self._clock()
                start = max(now, self._next_start.get(key, now))
                self._next_start[key] = start + self.min_interval
                wait = start - now
            if wait > 0:
                self._sleep(wait)
            yield
        finally:
            semaphore.release()

    def pause(self, host: str, seconds: float) -> None:
        """No new request to ``host`` for ``seconds`` (a 429/503 Retry-After is the host's, not one URL's:
        its other URLs wait too instead of each drawing the same answer)."""
        key = host.lower().rstrip(".")
        with self._lock:
            until = self._clock() + seconds
            self._next_start[key] = max(self._next_start.get(key, until), until)
