"""HostLimiter (kgcurate.download.hosts): per-host concurrency cap and start spacing, fake clock, no sleeps."""

from __future__ import annotations

import threading

import pytest

from kgcurate.download.hosts import HostLimiter


class FakeTime:
    """A clock that only moves when something sleeps; records every sleep requested."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def test_concurrency_never_exceeds_the_cap():
    cap, workers = 2, 6
    limiter = HostLimiter(max_per_host=cap)
    state = threading.Condition()
    inside = peak = done = 0
    release = threading.Event()

    def work() -> None:
        nonlocal inside, peak, done
        with limiter.slot("img.example.com"):
            with state:
                inside += 1
                peak = max(peak, inside)
                state.notify_all()
            assert release.wait(5)
            with state:
                inside -= 1
                done += 1
                state.notify_all()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    with state:
        assert state.wait_for(lambda: inside == cap, timeout=5)
        # The other four are parked on the semaphore; give them a moment to (wrongly) get in.
        assert not state.wait_for(lambda: inside > cap, timeout=0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert done == workers
    assert peak == cap


def test_other_hosts_are_not_blocked_by_a_full_one():
    limiter = HostLimiter(max_per_host=1)

    def take(host: str, entered: threading.Event) -> None:
        with limiter.slot(host):
            entered.set()

    with limiter.slot("a.example"):
        other = threading.Event()
        threading.Thread(target=take, args=("b.example", other), daemon=True).start()
        assert other.wait(5)
        same = threading.Event()  # same host, other spelling: same slot, still held
        threading.Thread(target=take, args=("A.Example.", same), daemon=True).start()
        assert not same.wait(0.05)
    assert same.wait(5)


def test_min_interval_spaces_starts_per_host():
    fake = FakeTime()
    limiter = HostLimiter(max_per_host=4, min_interval=1.5, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(3):
        with limiter.slot("img.example.com"):
            starts.append(fake.now)
    assert fake.sleeps == [1.5, 1.5]
    assert starts == [0.0, 1.5, 3.0]
    with limiter.slot("other.example.com"):  # a different host has its own schedule
        pass
    assert fake.sleeps == [1.5, 1.5]
    fake.now += 10  # long after the last start: no wait
    with limiter.slot("img.example.com"):
        pass
    assert fake.sleeps == [1.5, 1.5]


def test_concurrent_callers_reserve_successive_start_times():
    fake = FakeTime()
    fake.sleep = lambda seconds: fake.sleeps.append(seconds)  # time stands still: callers must not all get 0
    limiter = HostLimiter(max_per_host=8, min_interval=0.25, clock=fake.clock, sleep=fake.sleep)

    def start() -> None:
        with limiter.slot("h"):
            pass

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(fake.sleeps) == [0.25, 0.5, 0.75]


def test_no_interval_means_no_sleep_and_bad_arguments_are_refused():
    fake = FakeTime()
    limiter = HostLimiter(max_per_host=1, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        with limiter.slot("h"):
            pass
    assert fake.sleeps == []
    with pytest.raises(ValueError):
        HostLimiter(max_per_host=0)
    with pytest.raises(ValueError):
        HostLimiter(min_interval=-1)


def test_a_pause_holds_every_request_to_the_host_until_it_ends():
    """A 429/503 Retry-After pauses the host (the fetcher calls ``pause``): its other URLs wait too, other
    hosts do not, and a shorter pause never cuts a longer one short."""
    fake = FakeTime()
    limiter = HostLimiter(max_per_host=4, min_interval=0.5, clock=fake.clock, sleep=fake.sleep)
    limiter.pause("IMG.example.com.", 5.0)  # the same host, spelled as a Host header may spell it
    limiter.pause("img.example.com", 1.0)
    with limiter.slot("other.example.com"):
        pass
    assert fake.sleeps == []
    with limiter.slot("img.example.com"):
        assert fake.now == 5.0
    with limiter.slot("img.example.com"):  # spacing resumes after the pause
        assert fake.now == 5.5
    assert fake.sleeps == [5.0, 0.5]
