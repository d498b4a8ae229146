"""pairs_insert: the pruned insert-only MERGE (an append when no pair_id is present) gives the plain
MERGE's pairs, re-runs add nothing, a pair_id collision is inserted, and a second writer is refused
while one inserts."""

from __future__ import annotations

import threading

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from helpers import execute, wat_cfg
from kgcurate import ids, pairs_insert, tables
from kgcurate import lake as lk
from kgcurate.errors import ConcurrentRunError
from kgcurate.stages import ingest_wat
from kgcurate.wat.sample import write_sample

COLUMNS = ("pair_id", "image_url", "text", "text_source", "page_url", "crawl", "source_file")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("wat"), files=3, records=60, seed=7, corrupt=True)


def _rows(spark, lake):
    return sorted(tuple(r) for r in lk.read(spark, lake, tables.PAIRS).select(*COLUMNS).collect())


def _pairs(spark, rows, run_id):
    """Source rows as ingest builds them: (image_url, text, page_url) with the real pair_id."""
    df = spark.createDataFrame([(u, t, "alt", p, None, None, run_id) for u, t, p in rows],
                               "image_url string, text string, text_source string, page_url string, crawl string, "
                               "source_file string, run_id string")
    return df.withColumn("pair_id", ids.pair_id())


def test_pairs_equal_the_plain_merge_and_a_forced_rerun_adds_nothing(spark, tmp_path, sample, shared_data,
                                                                       monkeypatch):
    real = [str(shared_data / "commoncrawl" / "CC-MAIN-2014-35-excerpt.warc.wat"),
            str(shared_data / "commoncrawl" / "whirlwind.warc.wat.gz")]
    first, every = sample.files[:2] + real[:1], sample.files + real
    tables_by_mode = {}
    for mode, max_listed in (("pruned", pairs_insert.MAX_LISTED), ("plain", -1)):
        monkeypatch.setattr(pairs_insert, "MAX_LISTED", max_listed)
        lake = str(tmp_path / mode)
        one = execute(ingest_wat, spark, wat_cfg(lake, first))
        after_first = _rows(spark, lake)
        # all files again, forced: the first run's pairs are all present (the IN-list path), the rest new
        two = execute(ingest_wat, spark, wat_cfg(lake, every, force=True))
        after_both = _rows(spark, lake)
        three = execute(ingest_wat, spark, wat_cfg(lake, every, force=True))
        assert three.pairs_inserted == 0 and _rows(spark, lake) == after_both
        tables_by_mode[mode] = (one.pairs_inserted, two.pairs_inserted, after_first, after_both)
    assert tables_by_mode["pruned"] == tables_by_mode["plain"]
    one, two, after_first, after_both = tables_by_mode["pruned"]
    expected = {(u, t) for (u, t, _s, _p) in sample.pairs}
    assert {(r[1], r[2]) for r in after_both} >= expected
    assert len({(r[1], r[2]) for r in after_both}) == len(after_both) == one + two
    assert 0 < len(after_first) < len(after_both)


def test_a_pair_id_collision_is_inserted_not_dropped(spark, lake):
    # an existing row holding the pair_id of (a.jpg, "a cat") with another url and text
    stranger = _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/")], "run-0").withColumn(
        "image_url", F.lit("http://elsewhere/b.jpg")).withColumn("text", F.lit("not a cat"))
    lk.append(spark, lake, tables.PAIRS, stranger)
    src = _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/"), ("http://x/c.jpg", "a dog", "http://x/")],
                 "run-1")
    got = pairs_insert.insert_new(spark, lake, src, "run-1")
    assert (got.inserted, got.present) == (2, 1)
    rows = {(r.image_url, r.text) for r in lk.read(spark, lake, tables.PAIRS).collect()}
    assert rows == {("http://elsewhere/b.jpg", "not a cat"), ("http://x/a.jpg", "a cat"), ("http://x/c.jpg", "a dog")}
    again = pairs_insert.insert_new(spark, lake, src, "run-2", at_most=2)  # the broadcast lookup
    assert (again.inserted, again.present) == (0, 2)
    v = lk.version(spark, lake, tables.PAIRS)
    ids_ = src.select("pair_id")
    assert sorted(pairs_insert.present_ids(spark, lake, ids_, v, 10, broadcast=True)) == sorted(
        pairs_insert.present_ids(spark, lake, ids_, v, 10))
    assert lk.read(spark, lake, tables.PAIRS).count() == 3


def test_a_second_writer_is_refused_while_one_inserts_and_changes_nothing(spark, lake, monkeypatch):
    """The scan and the MERGE run under the ingest-wat lease: a writer committing between them would go
    unseen (the pruned MERGE reads no files, so Delta has nothing to find a conflict in)."""
    lk.append(spark, lake, tables.PAIRS, _pairs(spark, [("http://x/old.jpg", "old", "http://x/")], "run-0"))
    src = _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/")], "run-mine")
    other = _pairs(spark, [("http://x/a.jpg", "a cat", "http://o/")], "run-other")
    scan = pairs_insert.present_ids
    refused: list[BaseException] = []

    def scan_then_other_writer(*args, **kwargs):
        found = scan(*args, **kwargs)
        monkeypatch.setattr(pairs_insert, "present_ids", scan)
        t = threading.Thread(target=lambda: _insert_or_keep(refused, spark, lake, other, "run-other"))
        t.start()
        t.join()
        return found

    monkeypatch.setattr(pairs_insert, "present_ids", scan_then_other_writer)
    got = pairs_insert.insert_new(spark, lake, src, "run-mine")
    assert (got.inserted, got.present) == (1, 0)
    assert len(refused) == 1 and isinstance(refused[0], ConcurrentRunError)
    assert "another ingest-wat run (run-mine on" in str(refused[0]) and "changed nothing" in str(refused[0])
    rows = sorted((r.image_url, r.run_id) for r in lk.read(spark, lake, tables.PAIRS).collect())
    assert rows == [("http://x/a.jpg", "run-mine"), ("http://x/old.jpg", "run-0")]
    again = pairs_insert.insert_new(spark, lake, other, "run-other")  # its re-run, once the first is done
    assert (again.inserted, again.present) == (0, 1)


def _insert_or_keep(out: list, spark, lake, df, run_id: str) -> None:
    try:
        pairs_insert.insert_new(spark, lake, df, run_id)
    except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
        out.append(exc)


def test_one_commit_and_the_earlier_row_kept(spark, lake):
    lk.append(spark, lake, tables.PAIRS, _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/")], "run-0"))
    v = lk.version(spark, lake, tables.PAIRS)
    src = _pairs(spark, [("http://x/a.jpg", "a cat", "http://y/"), ("http://x/c.jpg", "a dog", "http://x/")], "run-1")
    got = pairs_insert.insert_new(spark, lake, src, "run-1")
    assert (got.inserted, got.present) == (1, 1)
    assert lk.version(spark, lake, tables.PAIRS) == v + 1  # one commit
    assert {(r.image_url, r.page_url) for r in lk.read(spark, lake, tables.PAIRS).collect()} == {
        ("http://x/a.jpg", "http://x/"), ("http://x/c.jpg", "http://x/")}


def test_sql_in_keeps_every_bigint_exact(spark):
    values = [-(2**63), 2**63 - 1, 0, -1, 2**31]
    df = spark.createDataFrame([(v,) for v in values + [1, 2**63 - 2]], "x bigint")
    got = {r.x for r in df.where(F.expr(pairs_insert.sql_in("x", values))).collect()}
    assert got == set(values)


def test_with_no_pair_id_present_the_rows_are_appended_and_counted(spark, lake):
    """A run none of whose pair_ids is in the table (a new crawl) commits a plain append, not a MERGE:
    every row is new, so the MERGE's join would only cost."""
    lk.append(spark, lake, tables.PAIRS, _pairs(spark, [("http://x/old.jpg", "old", "http://x/")], "run-0"))
    src = _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/"), ("http://x/c.jpg", "a dog", "http://x/")], "run-1")
    got = pairs_insert.insert_new(spark, lake, src, "run-1")
    assert (got.inserted, got.present) == (2, 0)
    last = DeltaTable.forPath(spark, lk.table_path(lake, tables.PAIRS)).history(1).first()
    assert last["operation"] == "WRITE" and last["operationMetrics"]["numOutputRows"] == "2"
    assert lk.read(spark, lake, tables.PAIRS).count() == 3


def test_a_table_without_files_is_appended_to_without_gathering_ids(spark, lake, monkeypatch):
    """A lake's first ingest (and a table emptied since) needs no id lookup: the run's rows are appended
    as they are, and the lookup, which would read every staged pair, never runs."""
    looked_up: list[int] = []
    real = pairs_insert.present_ids
    monkeypatch.setattr(pairs_insert, "present_ids", lambda *a, **k: looked_up.append(1) or real(*a, **k))
    lk.ensure(spark, lake, tables.PAIRS)
    assert pairs_insert.holds_no_file(spark, lake)
    src = _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/"), ("http://x/c.jpg", "a dog", "http://x/")], "run-1")
    assert pairs_insert.insert_new(spark, lake, src, "run-1") == pairs_insert.Inserted(2, 0)
    assert looked_up == [] and not pairs_insert.holds_no_file(spark, lake)
    again = _pairs(spark, [("http://x/a.jpg", "a cat", "http://y/")], "run-2")
    assert pairs_insert.insert_new(spark, lake, again, "run-2") == pairs_insert.Inserted(0, 1)  # now looked up
    assert looked_up == [1]
    DeltaTable.forPath(spark, lk.table_path(lake, tables.PAIRS)).delete()  # every file removed
    assert pairs_insert.holds_no_file(spark, lake)
    assert pairs_insert.insert_new(spark, lake, again, "run-3") == pairs_insert.Inserted(1, 0)
    assert looked_up == [1] and _rows(spark, lake) == sorted(tuple(r) for r in again.select(*COLUMNS).collect())


@pytest.mark.parametrize("broadcast", [True, False])
def test_repeated_source_ids_count_once_and_the_split_setting_is_put_back(spark, lake, broadcast, monkeypatch):
    """The run's ids come with repeats (one per staged row, not deduplicated first): a present id still
    counts once toward MAX_LISTED. The broadcast lookup's query runs with the larger scan splits, which
    do not outlive it; the sort-merge lookup keeps the session's."""
    old = _pairs(spark, [("http://x/a.jpg", "a cat", "http://x/"), ("http://x/b.jpg", "a bat", "http://x/")], "run-0")
    lk.append(spark, lake, tables.PAIRS, old)
    v = lk.version(spark, lake, tables.PAIRS)
    a, b = (r.pair_id for r in old.orderBy("image_url").collect())
    repeats = spark.createDataFrame([(a,), (a,), (a,), (7,), (7,)], "pair_id bigint")
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key, None)
    seen: list[str | None] = []
    collect = type(repeats).collect
    monkeypatch.setattr(type(repeats), "collect", lambda df: seen.append(spark.conf.get(key, None)) or collect(df))
    assert pairs_insert.present_ids(spark, lake, repeats, v, 1, broadcast=broadcast) == [a]
    assert seen == [str(pairs_insert.ID_SCAN_SPLIT_BYTES) if broadcast else before]
    monkeypatch.undo()
    assert spark.conf.get(key, None) == before
    both = repeats.union(spark.createDataFrame([(b,), (b,)], "pair_id bigint"))
    assert sorted(pairs_insert.present_ids(spark, lake, both, v, 5, broadcast=broadcast)) == sorted([a, b])


def test_session_conf_is_set_inside_and_restored_or_unset_after(spark):
    key = "spark.kgcurate.test.setting"
    with lk.session_conf(spark, key, "inside"):
        assert spark.conf.get(key) == "inside"
    assert spark.conf.get(key, None) is None
    spark.conf.set(key, "outside")
    with pytest.raises(RuntimeError), lk.session_conf(spark, key, "inside"):
        raise RuntimeError("a failing query")
    assert spark.conf.get(key) == "outside"
    spark.conf.unset(key)
    # a registered key the cluster's configuration set (conf/cluster.yaml sets this one to 256 MB)
    split = "spark.sql.files.maxPartitionBytes"
    previous = spark.conf.get(split, None)
    spark.conf.set(split, "268435456")
    try:
        with lk.session_conf(spark, split, "2g"):
            assert spark.conf.get(split) == "2g"
        assert spark.conf.get(split) == "268435456"
    finally:
        if previous is None:
            spark.conf.unset(split)
        else:
            spark.conf.set(split, previous)


def test_session_conf_blocks_of_two_threads_do_not_overlap(spark):
    """Overlapping blocks in two threads would restore each other's value (and leave one set for good):
    a block holds the lock another thread's block needs, and gives it back on leaving."""
    def others_can_enter() -> bool:
        got: list[bool] = []

        def try_lock() -> None:
            got.append(lk._SESSION_CONF_LOCK.acquire(blocking=False))
            if got[0]:
                lk._SESSION_CONF_LOCK.release()

        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
        return got[0]

    with lk.session_conf(spark, "spark.kgcurate.test.setting", "inside"):
        assert not others_can_enter()
    assert others_can_enter() and spark.conf.get("spark.kgcurate.test.setting", None) is None
