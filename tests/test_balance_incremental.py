"""A balance built on a recorded run (its curated pairs + the pairs matched since) selects the same
set as a balance reading every match, reads no ``matches`` file older than that run, and falls back
to all matches where the Delta log or the cut does not allow it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import lake, tables
from kgcurate.stages import balance as balance_stage
from kgcurate.stages import match as match_stage
from test_match_balance_spark import append_pairs, cfg_for
from test_match_incremental import matched_lake
from test_matching import corpus_of

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def corpus():
    return corpus_of(17, 120, 3_000)


@pytest.fixture()
def matched_copy(spark, tmp_path, corpus, lake_copies):
    """``matched_copy(n)``: what ``matched_lake(spark, tmp_path, corpus, n)`` returns, its lake a copy of
    one built once in this module for each ``n``."""
    def make(n: int) -> tuple:
        root = str(tmp_path / "lake")
        built = lake_copies(n, lambda src: matched_lake(spark, Path(src).parent, corpus, n)[1:], root)
        return (root, *built)

    return make


def rows_of(spark, root: str, run_id: str) -> list[tuple]:
    cur = balance_stage.latest_curated(spark, root, run_id).drop("run_id")
    return sorted((r["pair_id"], r["image_url"], r["text"], tuple(r["entry_ids"])) for r in cur.collect())


def run_row(spark, root: str, run_id: str) -> dict:
    r = lake.read(spark, root, tables.CURATION_RUNS).where(F.col("run_id") == run_id).first().asDict()
    return {k: r[k] for k in ("t", "pairs_in", "matched_pairs", "unmatched_pairs", "pairs_out")}


def both_ways(spark, root: str, **balance) -> tuple:
    """(summary built on a recorded run if possible, rows, run row) and the same with --full."""
    cfg = cfg_for(root, **{f"balance__{k}": v for k, v in balance.items()})
    reads: list[str] = []
    real = lake.read
    lake_read = lambda s, r, name, v=None: reads.append(name) or real(s, r, name, v)  # noqa: E731
    balance_stage.lake.read = lake_read
    try:
        s = execute(balance_stage, spark, cfg)
    finally:
        balance_stage.lake.read = real
    got = rows_of(spark, root, s.run_id), run_row(spark, root, s.run_id)
    full = execute(balance_stage, spark, cfg_for(root, balance__full=True,
                                                 **{f"balance__{k}": v for k, v in balance.items()}))
    assert full.run_id == s.run_id and full.basis_run_id is None
    assert got == (rows_of(spark, root, s.run_id), run_row(spark, root, s.run_id))
    assert s.pairs_out == full.pairs_out and s.matched_pairs == full.matched_pairs
    return s, reads


def grow(spark, root: str, captions: list[str], start: int, n: int) -> None:
    append_pairs(spark, root, captions[start:start + n], start)
    execute(match_stage, spark, cfg_for(root))


def test_t_builds_on_the_previous_run_and_equals_all_matches(spark, matched_copy) -> None:
    root, _, captions, _ = matched_copy(1500)
    first = execute(balance_stage, spark, cfg_for(root, balance__t=6.0, balance__seed=4))
    assert first.basis_run_id is None and first.pairs_out > 0
    # the same parameters on the same inputs: the recorded run, nothing selected or written
    written = (lake.version(spark, root, tables.CURATED), lake.version(spark, root, tables.CURATION_RUNS))
    again = execute(balance_stage, spark, cfg_for(root, balance__t=6.0, balance__seed=4))
    assert again.done_by == again.run_id == first.run_id and again.done_by is not None
    assert (again.pairs_in, again.matched_pairs, again.pairs_out, again.t) == (
        first.pairs_in, first.matched_pairs, first.pairs_out, first.t)
    assert (lake.version(spark, root, tables.CURATED), lake.version(spark, root, tables.CURATION_RUNS)) == written
    per_qid = execute(balance_stage, spark, cfg_for(root, balance__t=5.0, balance__seed=9, balance__per_qid=True))
    grow(spark, root, captions, 1500, 600)
    s, reads = both_ways(spark, root, t=6.0, seed=4)
    assert s.basis_run_id == first.run_id, s.basis_reason
    assert tables.MATCHES not in reads, "no read of the whole matches table"
    assert reads.count(tables.PAIRS) == 1, "pairs only counted for pairs_in, never joined"
    assert s.matched_pairs > first.matched_pairs
    assert both_ways(spark, root, t=5.0, seed=9, per_qid=True)[0].basis_run_id == per_qid.run_id
    # a smaller t builds on it too; a larger one cannot (pairs left out at 6 may be kept at 9)
    assert execute(balance_stage, spark, cfg_for(root, balance__t=3.0, balance__seed=4)).basis_run_id is not None
    s9 = execute(balance_stage, spark, cfg_for(root, balance__t=9.0, balance__seed=4))
    assert s9.basis_run_id is None and "covers" in s9.basis_reason


def test_target_size_builds_on_when_the_cut_stays_below_the_bound(spark, matched_copy) -> None:
    root, _, captions, _ = matched_copy(1500)
    first = execute(balance_stage, spark, cfg_for(root, balance__target_size=500, balance__seed=2))
    grow(spark, root, captions, 1500, 300)
    s, _ = both_ways(spark, root, target_size=250, seed=2)
    assert s.basis_run_id == first.run_id and s.pairs_out == 250
    # 800 pairs cannot come from the 500 kept + 300 new below the bound: all matches are read
    s, _ = both_ways(spark, root, target_size=800, seed=2)
    assert s.basis_run_id is None and "too few" in s.basis_reason and s.pairs_out == 800


def test_kept_pairs_over_the_broadcast_limit_give_the_same_rows(spark, matched_copy, monkeypatch) -> None:
    """Above ``BROADCAST_IDS`` kept pairs the sources are joined to the kept ids by sort-merge instead of
    a broadcast: the same rows, built on a run or from all matches."""
    from kgcurate import pairs_insert

    root, _, captions, _ = matched_copy(1000)
    execute(balance_stage, spark, cfg_for(root, balance__t=6.0))
    grow(spark, root, captions, 1000, 400)
    broadcast = execute(balance_stage, spark, cfg_for(root, balance__t=6.0))
    assert broadcast.basis_run_id is not None and broadcast.pairs_out > 0
    want = rows_of(spark, root, broadcast.run_id)
    balance_stage.drop_run(spark, root, broadcast.run_id)  # else the same run_id is found done, not selected
    monkeypatch.setattr(pairs_insert, "BROADCAST_IDS", 0)
    s, _ = both_ways(spark, root, t=6.0)
    assert s.basis_run_id is not None and rows_of(spark, root, s.run_id) == want


def test_pairs_deleted_since_the_basis_are_not_curated(spark, matched_copy) -> None:
    """A DELETE on ``pairs`` after the recorded run: the log no longer says which pairs are new, so the
    kept pairs take their rows from the whole table (a deleted kept pair is dropped, as from all
    matches), while the entry lists still come from the basis and the new matches alone."""
    root, _, captions, _ = matched_copy(1000)
    first = execute(balance_stage, spark, cfg_for(root, balance__t=6.0))
    grow(spark, root, captions, 1000, 400)
    before = execute(balance_stage, spark, cfg_for(root, balance__t=6.0))
    kept_before = {r[0] for r in rows_of(spark, root, before.run_id)}
    gone = min(kept_before & {r[0] for r in rows_of(spark, root, first.run_id)})
    lake.delete(spark, root, tables.PAIRS, f"pair_id = {gone}")
    execute(match_stage, spark, cfg_for(root))  # balance reads the pairs version a completed match recorded
    s, reads = both_ways(spark, root, t=6.0)
    assert s.basis_run_id is not None, s.basis_reason
    assert tables.MATCHES not in reads
    assert {r[0] for r in rows_of(spark, root, s.run_id)} == kept_before - {gone}


@pytest.mark.parametrize("change", ["maintain_before", "optimize_after", "full_match"])
def test_what_matches_went_through_since_decides(spark, matched_copy, change) -> None:
    """maintain's OPTIMIZE before the new matches (the weekly schedule) still builds on the recorded run;
    an OPTIMIZE mixing old and new matches, or a full re-match, means reading all matches."""
    root, _, captions, _ = matched_copy(1000)
    execute(balance_stage, spark, cfg_for(root, balance__t=6.0))
    if change == "maintain_before":
        assert lake.optimize(spark, root, tables.MATCHES)["files_added"] >= 1
    append_pairs(spark, root, captions[1000:1400], 1000)
    execute(match_stage, spark, cfg_for(root, match__full=change == "full_match"))
    if change == "optimize_after":
        lake.optimize(spark, root, tables.MATCHES)
    s = execute(balance_stage, spark, cfg_for(root, balance__t=6.0))
    if change == "maintain_before":
        assert s.basis_run_id is not None, s.basis_reason
    else:
        assert s.basis_run_id is None and "other than by appends" in s.basis_reason
    got = rows_of(spark, root, s.run_id)
    full = execute(balance_stage, spark, cfg_for(root, balance__t=6.0, balance__full=True))
    assert full.pairs_out == s.pairs_out and full.matched_pairs == s.matched_pairs
    assert got == rows_of(spark, root, full.run_id)
