"""Per-unit work, the pure half: which input units (a WAT file, a Wikidata file, a download shard) a
run still has to do, and the accounting of what each did. No Spark here (tested without a JVM); the
Spark half, one task per unit with progress, is :meth:`kgcurate.context.Context.run_units`.

The rule every stage keeps: a unit whose last recorded status is done (``ok``, or ``partial``: a
re-read cannot recover damaged bytes) is skipped; any other unit (``failed``, or never recorded) is
run, so retry-if-failed is the same code for every stage; ``force`` runs everything again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

OK, PARTIAL, FAILED = "ok", "partial", "failed"
DONE = (OK, PARTIAL)  # statuses a re-run skips

U = TypeVar("U")


@dataclass(frozen=True)
class Plan(Generic[U]):
    """The units a run does (input order) and how many it skips as already done."""

    todo: list[U]
    skipped: int

    @property
    def total(self) -> int:
        return len(self.todo) + self.skipped


def plan(units: Sequence[U], done: Collection[str], key: Callable[[U], str] = str, force: bool = False) -> Plan[U]:
    """``units`` less those whose ``key`` is in ``done`` (the keys the stage's log table records as
    done), unless ``force``."""
    if force or not done:
        return Plan(list(units), 0)
    todo = [u for u in units if key(u) not in done]
    return Plan(todo, len(units) - len(todo))


@dataclass(frozen=True)
class UnitResult:
    """What one unit's task did: its key, its status (ok / partial / failed) and, unless ok, why."""

    key: str
    status: str
    error: str | None = None


def results(rows: Iterable[Mapping[str, Any]], key: str = "source_file", status: str = "status",
            error: str | None = "error") -> list[UnitResult]:
    """One :class:`UnitResult` per row of a stage's per-unit rows (Spark ``Row``s, dicts): its log rows."""
    return [UnitResult(str(r[key]), r[status], r[error] if error else None) for r in rows]


@dataclass
class Tally:
    """Units per status, and the partial and failed ones named (the first ``limit``, in result order)."""

    ok: int = 0
    partial: int = 0
    failed: int = 0
    partial_units: list[tuple[str, str | None]] = field(default_factory=list)
    failed_units: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.partial + self.failed


def tally(results: Iterable[UnitResult], limit: int = 20) -> Tally:
    """Count ``results`` by status; an unknown status counts as failed (never silently as done). The
    partial and failed units are named in the order given (sort first for key order)."""
    t = Tally()
    for r in results:
        if r.status == OK:
            t.ok += 1
        elif r.status == PARTIAL:
            t.partial += 1
            if len(t.partial_units) < limit:
                t.partial_units.append((r.key, r.error))
        else:
            t.failed += 1
            if len(t.failed_units) < limit:
                t.failed_units.append((r.key, r.error))
    return t
