"""How an incremental match finds the pairs added since the last completed run: from the files the
Delta log says were added (no scan of the whole ``pairs`` table), with OPTIMIZE between runs, and the
whole-table anti-join where the log does not say (rows removed, log cleaned up, files vacuumed)."""

from __future__ import annotations

import pytest

from helpers import execute
from kgcurate import lake, tables
from kgcurate.stages import match as match_stage
from test_match_balance_spark import append_pairs, cfg_for, lake_state, reference, write_metadata
from test_matching import corpus_of

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def corpus():
    return corpus_of(7, 150, 2_400)


def anti_join_ids(spark, root: str, since: int, until: int) -> list[int]:
    """The reference: pairs at ``until`` whose pair_id is not in pairs at ``since``."""
    now = lake.read(spark, root, tables.PAIRS, until)
    old = lake.read(spark, root, tables.PAIRS, since)
    return sorted(r[0] for r in now.join(old.select("pair_id"), "pair_id", "left_anti").select("pair_id").collect())


def log_ids(spark, root: str, since: int, until: int) -> list[int] | None:
    df = match_stage.added_pairs(spark, root, since, until)
    return None if df is None else sorted(r[0] for r in df.select("pair_id").collect())


def matched_lake(spark, tmp_path, corpus, *parts: int):
    """A lake with the corpus's entries, ``pairs`` appended in ``parts`` (caption counts, one commit
    each) and a completed match of them: (root, metadata rows, captions, pairs' version)."""
    root = str(tmp_path / "lake")
    entries, captions = corpus
    meta = write_metadata(spark, root, entries)
    start = 0
    for n in parts:
        append_pairs(spark, root, captions[start:start + n], start)
        start += n
    execute(match_stage, spark, cfg_for(root))
    return root, meta, captions, lake.version(spark, root, tables.PAIRS)


def assert_matches_reference(spark, root: str, meta) -> None:
    want_m, want_e, want_q = reference(spark, root, meta)
    got_m, got_e, got_q = lake_state(spark, root)
    assert len(got_m) == len(set(got_m)), "no duplicate (pair, entry) rows"
    assert set(got_m) == want_m and got_e == want_e and got_q == want_q


def test_new_pairs_come_from_the_files_the_log_added(spark, tmp_path, corpus) -> None:
    root, meta, captions, v0 = matched_lake(spark, tmp_path, corpus, 800)
    append_pairs(spark, root, captions[800:1200], 800)
    append_pairs(spark, root, captions[1200:1600], 1200)
    v1 = lake.version(spark, root, tables.PAIRS)

    files = lake.files_since(spark, root, tables.PAIRS, v0, v1)
    assert files is not None and files.inserted and not files.moved and not files.gone
    assert log_ids(spark, root, v0, v1) == anti_join_ids(spark, root, v0, v1)
    assert len(log_ids(spark, root, v0, v1)) == 800

    calls = []
    real = match_stage._time_travel
    match_stage._time_travel = lambda s, r, name, v: calls.append(name) or real(s, r, name, v)
    try:
        s = execute(match_stage, spark, cfg_for(root))
    finally:
        match_stage._time_travel = real
    assert s.mode == "incremental" and s.pairs_matched == 800
    assert tables.PAIRS not in calls, "no time travel into pairs: the log named the new files"
    assert_matches_reference(spark, root, meta)


def test_optimize_before_and_after_the_new_pairs(spark, tmp_path, corpus) -> None:
    """maintain's OPTIMIZE between two matches: once compacting only matched pairs, once compacting
    matched and new pairs into the same files (the rewritten rows are then told apart by pair_id)."""
    root, meta, captions, _v = matched_lake(spark, tmp_path, corpus, 400, 400)

    # OPTIMIZE after the match, before the new pairs: the old files are rewritten, the new ones are not
    assert lake.optimize(spark, root, tables.PAIRS)["files_added"] >= 1
    v0 = match_stage.read_state(spark, root).pairs_version
    append_pairs(spark, root, captions[800:1200], 800)
    v1 = lake.version(spark, root, tables.PAIRS)
    files = lake.files_since(spark, root, tables.PAIRS, v0, v1)
    assert files is not None and files.inserted and not files.moved, "a rewrite of old files alone holds no new row"
    assert log_ids(spark, root, v0, v1) == anti_join_ids(spark, root, v0, v1)
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "incremental" and s.pairs_matched == 400
    assert_matches_reference(spark, root, meta)

    # new pairs, then OPTIMIZE compacting them with matched ones
    v0 = lake.version(spark, root, tables.PAIRS)
    append_pairs(spark, root, captions[1200:1600], 1200)
    append_pairs(spark, root, captions[1600:2000], 1600)
    assert lake.optimize(spark, root, tables.PAIRS)["files_added"] >= 1
    v1 = lake.version(spark, root, tables.PAIRS)
    files = lake.files_since(spark, root, tables.PAIRS, v0, v1)
    assert files is not None and files.moved and files.gone and not files.inserted
    assert log_ids(spark, root, v0, v1) == anti_join_ids(spark, root, v0, v1)
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "incremental" and s.pairs_matched == 800
    assert_matches_reference(spark, root, meta)


def test_rows_removed_or_log_cleaned_fall_back_to_the_anti_join(spark, tmp_path, corpus, monkeypatch) -> None:
    """A commit that removed rows (here a DELETE, as a RESTORE or overwrite would) or a commit file
    no longer in the log: the log cannot say which rows are new, and the whole-table anti-join does."""
    root, meta, captions, v0 = matched_lake(spark, tmp_path, corpus, 600)
    append_pairs(spark, root, captions[600:900], 600)
    lake.delete(spark, root, tables.PAIRS, "image_url = 'http://img.example/650.jpg'")
    v1 = lake.version(spark, root, tables.PAIRS)
    assert lake.files_since(spark, root, tables.PAIRS, v0, v1) is None
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "incremental" and s.pairs_matched == 299
    assert_matches_reference(spark, root, meta)

    # a lake whose log no longer holds the commit files (Delta's log cleanup after 30 days)
    v0 = lake.version(spark, root, tables.PAIRS)
    append_pairs(spark, root, captions[900:1300], 900)
    monkeypatch.setattr(lake, "_read_text", lambda spark, path: None)
    assert lake.files_since(spark, root, tables.PAIRS, v0, v0 + 1) is None
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "incremental" and s.pairs_matched == 400
    assert_matches_reference(spark, root, meta)


def test_vacuumed_rewritten_files_fall_back_to_the_anti_join(spark, tmp_path, corpus) -> None:
    root, meta, captions, v0 = matched_lake(spark, tmp_path, corpus, 500)
    append_pairs(spark, root, captions[500:900], 500)
    lake.optimize(spark, root, tables.PAIRS)
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(check, "false")
    try:
        lake.vacuum(spark, root, tables.PAIRS, 0)
    finally:
        spark.conf.set(check, "true")
    v1 = lake.version(spark, root, tables.PAIRS)
    assert log_ids(spark, root, v0, v1) is None  # the matched rows' old files are gone
    s = execute(match_stage, spark, cfg_for(root))
    # pairs@v0 is vacuumed too: the pairs already matched are those in matches, and old pairs that
    # matched nothing are matched again (to nothing)
    assert s.mode == "incremental" and s.pairs_matched >= 400
    assert_matches_reference(spark, root, meta)


def _vacuum_all(spark, root: str, name: str) -> None:
    """What ``maintain`` does once the retention has passed: the table's older versions lose their files."""
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(check, "false")
    try:
        lake.vacuum(spark, root, name, 0)
    finally:
        spark.conf.set(check, "true")


def test_a_dead_runs_counts_past_a_vacuum_are_rebuilt_by_a_full_match(spark, tmp_path, corpus) -> None:
    root, meta, captions, _ = matched_lake(spark, tmp_path, corpus, 400)
    bogus = spark.createDataFrame([(5, 99)], tables.schema(tables.ENTRY_COUNTS))
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, bogus)  # a run killed after its counts write
    _vacuum_all(spark, root, tables.ENTRY_COUNTS)  # the recorded version's files are gone: no RESTORE
    for new in (False, True):  # up to date, then with new pairs: the run converges either way
        if new:
            append_pairs(spark, root, captions[400:600], 400)
        s = execute(match_stage, spark, cfg_for(root))
        assert s.mode == ("incremental" if new else "full")
        assert new or "entry_counts changed after the last completed run" in s.reason
        assert_matches_reference(spark, root, meta)


def test_a_rewritten_identical_metadata_is_recorded_for_balance(spark, tmp_path, corpus) -> None:
    root, meta, _, _ = matched_lake(spark, tmp_path, corpus, 300)
    entries, _ = corpus
    assert write_metadata(spark, root, entries) == meta  # build-metadata --force: same rows, a new version
    version = lake.version(spark, root, tables.METADATA)
    s = execute(match_stage, spark, cfg_for(root))
    assert s.up_to_date and match_stage.read_state(spark, root).metadata_version == version
    _vacuum_all(spark, root, tables.METADATA)  # balance reads metadata at the recorded version: still readable
    read = match_stage.completed_versions(spark, root)[tables.METADATA]
    assert read >= version and lake.read(spark, root, tables.METADATA, read).count() == len(meta)
