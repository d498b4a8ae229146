"""The per-unit helper's pure half (kgcurate.units): skip-if-done, retry-if-failed, accounting. No Spark."""

from __future__ import annotations

from kgcurate import units
from kgcurate.units import UnitResult


def test_done_units_are_skipped_and_failed_or_new_ones_run_in_input_order():
    files = ["a.wat.gz", "b.wat.gz", "c.wat.gz", "d.wat.gz"]
    # a: ok, b: partial (done: a re-read cannot recover damaged bytes); c failed last time (not in the
    # done set), d never seen
    p = units.plan(files, done={"a.wat.gz", "b.wat.gz"})
    assert p.todo == ["c.wat.gz", "d.wat.gz"] and p.skipped == 2 and p.total == 4


def test_force_runs_everything_and_keys_can_be_computed():
    shards = [(0, "s0"), (1, "s1"), (2, "s2")]
    assert units.plan(shards, {"1"}, key=lambda s: str(s[0]), force=True).todo == shards
    p = units.plan(shards, {"1"}, key=lambda s: str(s[0]))
    assert p.todo == [(0, "s0"), (2, "s2")] and p.skipped == 1


def test_nothing_done_runs_all():
    p = units.plan(["x", "y"], set())
    assert p.todo == ["x", "y"] and p.skipped == 0


def test_tally_counts_by_status_and_names_partial_and_failed_in_the_order_given():
    t = units.tally([UnitResult("e", "gone?", "unknown status"), UnitResult("a", "ok"),
                     UnitResult("b", "partial", "partial: 1 damaged"), UnitResult("d", "ok"),
                     UnitResult("c", "failed", "EOFError: cut")])
    assert (t.ok, t.partial, t.failed, t.total) == (2, 1, 2, 5)
    assert t.partial_units == [("b", "partial: 1 damaged")]
    # an unknown status is failed, never silently done
    assert t.failed_units == [("e", "unknown status"), ("c", "EOFError: cut")]


def test_tally_names_at_most_limit_but_counts_all():
    t = units.tally([UnitResult(f"f{i:02d}", "failed", "x") for i in range(30)], limit=5)
    assert t.failed == 30 and [k for k, _ in t.failed_units] == ["f00", "f01", "f02", "f03", "f04"]


def test_a_failed_unit_is_retried_by_the_next_plan_and_skipped_once_done():
    """retry-if-failed is the same code everywhere: the done set is what the log records as ok/partial."""
    log: dict[str, str] = {}
    files = ["a", "b"]
    for r in [UnitResult("a", "ok"), UnitResult("b", "failed", "boom")]:
        log[r.key] = r.status
    done = {k for k, s in log.items() if s in units.DONE}
    assert units.plan(files, done).todo == ["b"]
    log["b"] = "partial"
    done = {k for k, s in log.items() if s in units.DONE}
    assert units.plan(files, done).todo == []


def test_results_read_a_stages_per_unit_rows():
    rows = [{"source_file": "a", "status": "ok", "error": None}, {"source_file": "b", "status": "failed", "error": "x"}]
    assert units.results(rows) == [UnitResult("a", "ok"), UnitResult("b", "failed", "x")]
    got = units.results([{"shard": 3, "state": "ok"}], key="shard", status="state", error=None)
    assert got == [UnitResult("3", "ok")]
