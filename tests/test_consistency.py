"""Tables that agree with each other: two matches at once, a match dead between its commits, a
balance failing after its overwrite. Each case is one a user met (issue 16); runs are in-process
threads or injected failures, synchronised by barriers, never sleeps."""

from __future__ import annotations

import os
import random
import shutil
import threading

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import lake, tables
from kgcurate.errors import ConcurrentRunError
from kgcurate.stages import balance as balance_stage
from kgcurate.stages import match as match_stage
from kgcurate.stages import report as report_stage
from test_match_balance_spark import append_pairs, cfg_for, write_metadata
from test_matching import make_captions, make_entries

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def small_corpus():
    rng = random.Random(7)
    entries = make_entries(rng)[:80]
    return entries, make_captions(rng, entries, 1200)


def matched_then_more(spark, root: str, corpus) -> None:
    """A lake with one completed match and 600 pairs ingested since (work for an incremental match)."""
    entries, captions = corpus
    write_metadata(spark, root, entries)
    append_pairs(spark, root, captions[:600], 0)
    execute(match_stage, spark, cfg_for(root))
    append_pairs(spark, root, captions[600:], 600)


@pytest.fixture()
def matched(spark, tmp_path, small_corpus, lake_copies) -> str:
    """tmp_path/lake: a copy of :func:`matched_then_more`'s lake, built once in this module."""
    root = str(tmp_path / "lake")
    lake_copies("matched_then_more", lambda src: matched_then_more(spark, src, small_corpus), root)
    return root


def recount(spark, root: str) -> dict[int, int]:
    m = lake.read(spark, root, tables.MATCHES)
    return {r[0]: r[1] for r in m.groupBy("entry_id").count().collect()}


def counts(spark, root: str) -> dict[int, int]:
    return {r[0]: r[1] for r in lake.read(spark, root, tables.ENTRY_COUNTS).where("count > 0").collect()}


def curated_ids(df) -> set[int]:
    return {r[0] for r in df.select("pair_id").collect()}


def test_two_matches_at_once_never_duplicate_matches(spark, matched, monkeypatch) -> None:
    root = matched
    barrier = threading.Barrier(2, timeout=120)
    real_exists = lake.exists
    waited: set[int] = set()

    def exists_together(sp, r, name):  # both runs have planned to run before either writes
        if name == tables.PAIRS and threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        return real_exists(sp, r, name)

    monkeypatch.setattr(lake, "exists", exists_together)
    outcome: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            outcome[name] = execute(match_stage, spark, cfg_for(root))
        except ConcurrentRunError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    monkeypatch.undo()
    errors = [v for v in outcome.values() if isinstance(v, Exception)]
    done = [v for v in outcome.values() if isinstance(v, match_stage.MatchSummary)]
    assert len(done) == 1 and len(errors) == 1, outcome
    assert "another match run" in str(errors[0]) and "changed nothing" in str(errors[0])

    m = lake.read(spark, root, tables.MATCHES)
    assert m.groupBy("pair_id", "entry_id").count().where("count > 1").count() == 0
    assert counts(spark, root) == recount(spark, root)
    state = match_stage.read_state(spark, root)
    assert state.matches_version == lake.version(spark, root, tables.MATCHES)
    again = execute(match_stage, spark, cfg_for(root))
    assert again.up_to_date and not again.healed
    assert lake.read(spark, root, tables.LEASES).count() == 0  # both leases given back


def test_match_dead_between_commits_balance_reads_the_last_completed_run(spark, tmp_path, matched,
                                                                        monkeypatch) -> None:
    root = matched
    consistent = str(tmp_path / "consistent")
    shutil.copytree(root, consistent)  # the lake as the last completed match left it

    real_overwrite = lake.overwrite

    def die_at_counts(sp, r, name, df, replace_where=None):
        if name == tables.ENTRY_COUNTS:
            raise KeyboardInterrupt("killed between the matches and entry_counts commits")
        return real_overwrite(sp, r, name, df, replace_where)

    monkeypatch.setattr(lake, "overwrite", die_at_counts)
    with pytest.raises(KeyboardInterrupt):
        execute(match_stage, spark, cfg_for(root))
    monkeypatch.undo()
    state = match_stage.read_state(spark, root)
    assert lake.version(spark, root, tables.MATCHES) > state.matches_version  # the dead run's append
    assert lake.read(spark, root, tables.LEASES).count() == 0  # given back on the way out

    got = execute(balance_stage, spark, cfg_for(root, balance__t=5.0, balance__seed=4))
    want = execute(balance_stage, spark, cfg_for(consistent, balance__t=5.0, balance__seed=4))
    assert got.pairs_out == want.pairs_out and got.run_id == want.run_id
    assert got.input_versions[tables.MATCHES] == state.matches_version
    assert curated_ids(lake.read(spark, root, tables.CURATED)) == curated_ids(
        lake.read(spark, consistent, tables.CURATED))

    # the next match heals and completes; balance then reads the new consistent set
    s = execute(match_stage, spark, cfg_for(root))
    assert s.mode == "incremental" and tables.MATCHES in s.healed
    assert counts(spark, root) == recount(spark, root)
    after = execute(balance_stage, spark, cfg_for(root, balance__t=5.0, balance__seed=4))
    assert after.input_versions[tables.MATCHES] == lake.version(spark, root, tables.MATCHES)


def test_balance_without_a_completed_match_is_refused(spark, tmp_path, small_corpus) -> None:
    root = str(tmp_path / "lake")
    entries, captions = small_corpus
    write_metadata(spark, root, entries)
    append_pairs(spark, root, captions[:50], 0)
    m = spark.createDataFrame([(1, 2)], tables.schema(tables.MATCHES))
    lake.overwrite(spark, root, tables.MATCHES, m)
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, match_stage.entry_delta(m))
    with pytest.raises(Exception, match=r"no completed match run .*run `kgcurate match --lake"):
        execute(balance_stage, spark, cfg_for(root, balance__t=5.0))


def test_balance_failing_after_its_overwrite_leaves_curated_as_it_was(spark, matched,
                                                                     monkeypatch) -> None:
    root = matched
    first = execute(balance_stage, spark, cfg_for(root, balance__t=3.0))
    before_rows = curated_ids(lake.read(spark, root, tables.CURATED))
    assert len(before_rows) == first.pairs_out

    real_merge = lake.merge

    def fail_on_run_row(sp, r, name, *args, **kwargs):
        if name == tables.CURATION_RUNS:
            raise RuntimeError("disk full while writing curation_runs")
        return real_merge(sp, r, name, *args, **kwargs)

    monkeypatch.setattr(lake, "merge", fail_on_run_row)
    with pytest.raises(RuntimeError, match="disk full"):
        execute(balance_stage, spark, cfg_for(root, balance__t=50.0))
    monkeypatch.undo()
    assert curated_ids(lake.read(spark, root, tables.CURATED)) == before_rows
    runs = lake.read(spark, root, tables.CURATION_RUNS).collect()
    assert [r["run_id"] for r in runs] == [first.run_id]
    assert curated_ids(balance_stage.latest_curated(spark, root)) == before_rows


def test_a_match_completing_during_a_balance_leaves_no_run_id_naming_other_rows(spark, matched,
                                                                               monkeypatch) -> None:
    """balance read match_state twice: a match (its own lease) completing in between gave the run the new
    state's id over the old state's rows, so the next balance found the new state's run done and served them."""
    root = matched
    real = balance_stage.input_versions

    def racing(sp, r, state=None):
        versions = real(sp, r, state)
        execute(match_stage, sp, cfg_for(r))  # the 600 new pairs are matched now, by another run
        return versions

    monkeypatch.setattr(balance_stage, "input_versions", racing)
    raced = execute(balance_stage, spark, cfg_for(root, balance__t=1e9))
    monkeypatch.undo()
    after = execute(balance_stage, spark, cfg_for(root, balance__t=1e9))
    assert after.done_by is None and after.run_id != raced.run_id
    assert after.matched_pairs > raced.matched_pairs


def test_a_run_asked_for_again_is_the_one_readers_take(spark, matched) -> None:
    """t=3, t=50, then t=3 again: the third found its run recorded and wrote nothing, so download, report and
    train kept taking t=50's set, the newest by created_at."""
    root = matched
    a = execute(balance_stage, spark, cfg_for(root, balance__t=3.0))
    b = execute(balance_stage, spark, cfg_for(root, balance__t=50.0))
    assert balance_stage.latest_run(spark, root)["run_id"] == b.run_id
    again = execute(balance_stage, spark, cfg_for(root, balance__t=3.0))
    assert again.done_by == a.run_id and balance_stage.latest_run(spark, root)["run_id"] == a.run_id
    assert curated_ids(balance_stage.latest_curated(spark, root)) == curated_ids(
        lake.read(spark, root, tables.CURATED).where(f"run_id = '{a.run_id}'"))
    version = lake.version(spark, root, tables.CURATION_RUNS)
    assert execute(balance_stage, spark, cfg_for(root, balance__t=3.0)).done_by == a.run_id
    assert lake.version(spark, root, tables.CURATION_RUNS) == version  # the newest already: no commit
    full = execute(balance_stage, spark, cfg_for(root, balance__t=50.0, balance__full=True))
    assert full.run_id == b.run_id and balance_stage.latest_run(spark, root)["run_id"] == b.run_id


def test_readers_never_see_curated_rows_without_their_run_row(spark, tmp_path, matched) -> None:
    """A balance killed (no rollback possible) after its overwrite: report and downstream readers
    resolve curated through curation_runs, so the dead run's rows are invisible."""
    root = matched
    first = execute(balance_stage, spark, cfg_for(root, balance__t=3.0))
    junk = lake.read(spark, root, tables.PAIRS).limit(7).select(
        "pair_id", "image_url", "text", F.array().cast("array<long>").alias("entry_ids"),
        F.lit("balance-killed").alias("run_id"))
    # what a SIGKILL after a balance's partition write (before its run row) leaves
    lake.overwrite(spark, root, tables.CURATED, junk, replace_where="run_id = 'balance-killed'")
    visible = balance_stage.latest_curated(spark, root)
    assert visible.count() == first.pairs_out and visible.where("run_id = 'balance-killed'").count() == 0
    s = execute(report_stage, spark, cfg_for(root, report__out=str(tmp_path / "report")))
    assert s.sizes["curated"] == first.pairs_out
    assert balance_stage.orphan_runs(spark, root) == ["balance-killed"]
    assert balance_stage.remove_orphans(spark, root) == ["balance-killed"]  # what maintain does
    assert lake.read(spark, root, tables.CURATED).where("run_id = 'balance-killed'").count() == 0
    assert curated_ids(balance_stage.latest_curated(spark, root)) == curated_ids(visible)


def test_curated_sets_side_by_side_list_and_drop(spark, matched, capsys) -> None:
    from kgcurate import cli

    root = matched
    small = execute(balance_stage, spark, cfg_for(root, balance__target_size=40, balance__seed=2))
    large = execute(balance_stage, spark, cfg_for(root, balance__target_size=120, balance__seed=2))
    a = curated_ids(balance_stage.latest_curated(spark, root, small.run_id))
    b = curated_ids(balance_stage.latest_curated(spark, root, large.run_id))
    assert len(a) == 40 and len(b) == 120 and a < b  # nested, both kept
    assert curated_ids(balance_stage.latest_curated(spark, root)) == b  # the newest is the default
    again = execute(balance_stage, spark, cfg_for(root, balance__target_size=40, balance__seed=2))
    assert again.run_id == small.run_id  # idempotent: its own partition rewritten with the same rows
    assert lake.read(spark, root, tables.CURATED).count() == 160

    per_qid = execute(balance_stage, spark, cfg_for(root, balance__target_size=60, balance__per_qid=True))
    data = report_stage.gather(spark, root)
    shown = {r["run_id"]: r for r in data["curated_runs"]}
    assert set(shown) == {small.run_id, large.run_id, per_qid.run_id}
    by_id = {row[0]: row[1:] for row in data["run_overlap"]}
    order = [r["run_id"] for r in data["curated_runs"]]
    assert by_id[small.run_id][order.index(large.run_id)] == 40  # nested: all of the small set
    assert by_id[large.run_id][order.index(large.run_id)] == 120
    q = balance_stage.latest_curated(spark, root, per_qid.run_id)
    meta = {r["entry_id"]: r for r in lake.read(spark, root, tables.METADATA).collect()}
    qids = {qid for r in q.collect() for e in r["entry_ids"] for qid in meta[e]["qids"]}
    assert shown[per_qid.run_id]["entities_covered"] == len(qids) > 0
    assert shown[small.run_id]["entities_covered"] is None
    assert balance_stage.drop_run(spark, root, per_qid.run_id) == 60

    assert cli.main(["curated", "list", "--lake", root]) == 0
    out = capsys.readouterr().out
    assert small.run_id in out and large.run_id in out and "120" in out
    assert cli.main(["curated", "--lake", root]) == 0  # list is the default action
    assert capsys.readouterr().out == out
    assert cli.main(["curated", "drop", small.run_id, "--lake", root]) == 0
    assert f"dropped run {small.run_id} (40 rows)" in capsys.readouterr().out
    assert curated_ids(balance_stage.latest_curated(spark, root, large.run_id)) == b
    assert lake.read(spark, root, tables.CURATED).count() == 120
    assert [r["run_id"] for r in lake.read(spark, root, tables.CURATION_RUNS).collect()] == [large.run_id]
    assert cli.main(["curated", "drop", small.run_id, "--lake", root]) == 2
    assert "no curated run" in capsys.readouterr().err
    assert cli.main(["curated", "drop", small.run_id, "--lake", f"{root}-typo"]) == 2  # a mistyped lake
    assert "no curated run" in capsys.readouterr().err and not os.path.exists(f"{root}-typo")  # left unmade
    with pytest.raises(Exception, match="no curated run 'balance-nope'"):
        balance_stage.latest_curated(spark, root, "balance-nope")


def test_maintenance_commits_keep_the_recorded_versions_current(spark, matched) -> None:
    """OPTIMIZE after a match rewrites files, not rows: balance reads the optimized version (a VACUUM
    may remove the recorded one's files) and the next match restores nothing."""
    from delta.tables import DeltaTable

    root = matched
    first = execute(balance_stage, spark, cfg_for(root, balance__t=3.0))
    recorded = match_stage.read_state(spark, root).matches_version
    DeltaTable.forPath(spark, lake.table_path(root, tables.MATCHES)).optimize().executeCompaction()
    spark.sql(f"ALTER TABLE delta.`{lake.table_path(root, tables.MATCHES)}` "
              "SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 168 hours')")
    again = execute(balance_stage, spark, cfg_for(root, balance__t=3.0))  # the same run: nothing written twice
    assert again.done_by == first.run_id and lake.read(spark, root, tables.CURATION_RUNS).count() == 1
    latest = lake.version(spark, root, tables.MATCHES)
    assert latest == recorded + 2
    assert lake.content_version(spark, root, tables.MATCHES, recorded) == latest
    assert balance_stage.input_versions(spark, root)[tables.MATCHES] == latest
    assert match_stage.heal(spark, root, match_stage.read_state(spark, root)) == ([], [])
    junk = spark.createDataFrame([(1, 2)], tables.schema(tables.MATCHES))
    lake.append(spark, root, tables.MATCHES, junk)  # a data change after them stops the walk
    assert lake.content_version(spark, root, tables.MATCHES, recorded) == latest
    assert balance_stage.input_versions(spark, root)[tables.MATCHES] == latest
