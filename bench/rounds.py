"""Side-by-side timing in interleaved rounds: each round runs every side once, the order reversed
every other round, so neither side always runs second (warmer caches, a busier JVM)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Run each side (a callable returning its seconds) once per round; print every round; return
    each side's median."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides.items())
    for r in range(rounds):
        for name, run in order if r % 2 == 0 else order[::-1]:
            times[name].append(run())
        print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def skip_against_redo(run: Callable[[bool], Any], rounds: int, redo: str) -> None:
    """A stage's skip-if-unchanged against the work it replaces: ``run(force)`` runs the stage and
    returns its summary (``done_by`` set when it skipped); the redo path is warmed up first."""

    def timed(force: bool) -> float:
        t0 = time.perf_counter()
        summary = run(force)
        assert (summary.done_by is None) == force, summary
        return time.perf_counter() - t0

    timed(True)
    med = interleaved({"skip": lambda: timed(False), redo: lambda: timed(True)}, rounds)
    print(f"median: skip {med['skip']:.2f} s, {redo} {med[redo]:.2f} s: the skip is {med['skip'] / med[redo]:.3f}x "
          f"the {redo}")
