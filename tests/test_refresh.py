"""Scheduled refresh and maintenance on a CommonCrawl-like layout of generated WAT files."""

from __future__ import annotations

import copy
import gzip
import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from helpers import assert_other_readers_agree, execute
from kgcurate import config, tables
from kgcurate import lake as lakemod
from kgcurate.context import Skipped
from kgcurate.errors import UserError
from kgcurate.stages import balance, maintain, refresh
from kgcurate.wat.sample import ANIMALS, CRAWL, OBJECTS, write_sample

SEGMENT = f"crawl-data/{CRAWL}/segments/1700000000000.0/wat"


def make_crawl(root: Path, files: int = 3, records: int = 40) -> list[str]:
    """A folder laid out like s3://commoncrawl/: segments/.../wat/*.wat.gz and a listing of keys."""
    src = root.parent / "generated"
    write_sample(src, files=files, records=records, seed=7, corrupt=False)
    seg = root / SEGMENT
    seg.mkdir(parents=True, exist_ok=True)
    keys = []
    for path in sorted(src.glob("*.warc.wat.gz")):
        shutil.copy2(path, seg / path.name)
        keys.append(f"{SEGMENT}/{path.name}")
    return keys


def publish(root: Path, keys: list[str]) -> None:
    listing = root / "crawl-data" / CRAWL / "wat.paths.gz"
    listing.write_bytes(gzip.compress(("\n".join(keys) + "\n").encode()))


def seed_metadata(spark, root: str) -> None:
    from kgcurate.stages import build_metadata

    rows = [(e, "test", None) for e in ANIMALS + OBJECTS]
    df = build_metadata.derive(spark.createDataFrame(rows, "entry string, source string, qid string"))
    lakemod.overwrite(spark, root, tables.METADATA, df)


def cfg_for(lake_root: str, cc_root: Path, target: int = 15) -> dict:
    cfg = config.load(None)
    cfg["lake"] = lake_root
    cfg["balance"]["target_size"] = target
    cfg["refresh"] = {"crawl": CRAWL, "listing_base": str(cc_root) + "/"}
    cfg["wat"]["progress_interval"] = 3600
    return cfg


def versions(spark, root: str) -> dict:
    return {n: lakemod.version(spark, root, n) for n in refresh.WATCHED}


@pytest.fixture(scope="module")
def crawl_root(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("cc") / "commoncrawl"
    return root, make_crawl(root)


def test_a_refresh_stopped_by_a_lease_says_what_it_had_committed():
    from kgcurate.stages.ingest_wat import IngestWatSummary
    from kgcurate.stages.match import MatchSummary

    summary = refresh.RefreshSummary(crawl="CC-MAIN-2024-51", listing="l")
    assert refresh._done_so_far(summary, "C") == "this refresh changed nothing"
    summary.ingest = IngestWatSummary(run_id="i", inputs=3, skipped_done=3)  # every file ok before: nothing new
    assert refresh._done_so_far(summary, "C") == "this refresh changed nothing"
    summary.ingest = IngestWatSummary(run_id="i", inputs=3, skipped_done=1, files=2, ok=2)
    assert refresh._done_so_far(summary, "C") == "this refresh ingested 2 of C's files, then stopped"
    summary.match = MatchSummary(mode="incremental", reason="r", metadata_version=1, pairs_version=2, entries=5,
                                 entries_skipped=0, pairs_matched=40)
    assert refresh._done_so_far(summary, "C") == "this refresh ingested 2 of C's files and matched 40 new pairs, " \
        "then stopped"


def test_a_refresh_with_failed_files_is_exit_1_unless_they_are_allowed(capsys):
    """The scheduled refresh passes --allow-failed-files: a WAT object that stays unreadable is a warning and
    exit 0, so the maintain task after it (which runs only on success) is not stopped for good."""
    import dataclasses

    from kgcurate.stages.ingest_wat import IngestWatSummary
    from kgcurate.stages.match import MatchSummary

    summary = refresh.RefreshSummary(crawl="CC-MAIN-2024-51", listing="l", changed_tables=["pairs"])
    summary.ingest = IngestWatSummary(run_id="i", inputs=3, skipped_done=0, files=3, ok=2,
                                      failed=[("s3://cc/x.warc.wat.gz", "FileNotFoundError")])
    summary.match = MatchSummary(mode="incremental", reason="r", metadata_version=1, pairs_version=2, entries=5,
                                 entries_skipped=0, pairs_matched=40)
    assert refresh.report(summary, None) == 1
    assert capsys.readouterr().err.startswith("kgcurate: error: 1 files of CC-MAIN-2024-51 failed")
    summary.ingest = dataclasses.replace(summary.ingest, allow_failed_files=True)
    assert refresh.report(summary, None) == 0
    out, err = capsys.readouterr()
    assert err.startswith("kgcurate: warning: 1 files of CC-MAIN-2024-51 failed") and "failed: s3://cc/x" in out
    # the next week's refresh reads only that file again, and it fails again: still the one bad file
    summary.ingest = dataclasses.replace(summary.ingest, ok=0, files=1, skipped_done=2)
    assert refresh.report(summary, None) == 0
    capsys.readouterr()
    # every file failed (expired credentials, a wrong listing): not one bad file, the run failed
    summary.ingest = dataclasses.replace(summary.ingest, ok=0, files=1, skipped_done=0)
    assert refresh.report(summary, None) == 1
    assert capsys.readouterr().err.startswith("kgcurate: error: 1 files of CC-MAIN-2024-51 failed")


def test_listing_for_commoncrawl_and_local():
    assert refresh.listing_for("CC-MAIN-2024-51", None) == (
        "s3://commoncrawl/crawl-data/CC-MAIN-2024-51/wat.paths.gz", "s3://commoncrawl/")
    assert refresh.listing_for("CC-MAIN-2024-51", "/data/cc") == (
        "/data/cc/crawl-data/CC-MAIN-2024-51/wat.paths.gz", "/data/cc/")
    with pytest.raises(UserError, match="CC-MAIN-YYYY-WW"):
        refresh.listing_for("2024-51", None)


def test_the_summary_watches_every_table_a_refresh_writes() -> None:
    """The summary's "changed" list comes from WATCHED's versions: pair_texts, which the refresh's balance
    writes, was missing from it."""
    from kgcurate import registry

    assert set(registry.BY_NAME["refresh"].writes) - {tables.LEASES} <= set(refresh.WATCHED)


def test_latest_is_the_newest_crawl_with_a_published_listing(tmp_path) -> None:
    for crawl in ("CC-MAIN-2024-10", "CC-MAIN-2024-51", "CC-MAIN-2025-05", "CC-MAIN-2099-99"):
        (tmp_path / "crawl-data" / crawl).mkdir(parents=True)
    (tmp_path / "crawl-data" / "not-a-crawl").mkdir()
    for crawl in ("CC-MAIN-2024-10", "CC-MAIN-2024-51"):
        (tmp_path / "crawl-data" / crawl / "wat.paths.gz").write_bytes(gzip.compress(b"x\n"))
    (tmp_path / "crawl-data" / "CC-MAIN-2025-05" / "warc.paths.gz").write_bytes(b"")  # WAT listing not yet out
    assert refresh.latest_crawl(f"{tmp_path}/") == refresh.latest_crawl(f"file://{tmp_path}") == "CC-MAIN-2024-51"
    cfg = cfg_for(str(tmp_path / "lake"), tmp_path)
    cfg["refresh"]["crawl"] = "latest"
    assert refresh.prepare(None, cfg) == {"crawl": "CC-MAIN-2024-51"}  # before Spark, as the CLI runs it
    with pytest.raises(UserError, match="no crawl-data/CC-MAIN-YYYY-WW/wat.paths.gz under"):
        refresh.latest_crawl(str(tmp_path / "crawl-data" / "not-a-crawl"))
    with pytest.raises(UserError, match="which an https base cannot do: pass --crawl CC-MAIN-YYYY-WW"):
        refresh.latest_crawl("https://data.commoncrawl.org/")


def test_refresh_needs_metadata_and_target(spark, lake, crawl_root):
    root, keys = crawl_root
    publish(root, keys)
    with pytest.raises(UserError, match="build-metadata"):
        execute(refresh, spark, cfg_for(lake, root))
    cfg = cfg_for(lake, root)
    cfg["balance"]["target_size"] = None
    with pytest.raises(UserError, match="target"):
        execute(refresh, spark, cfg)


@pytest.mark.slow
def test_refresh_incremental_noop_and_time_travel(spark, lake, crawl_root):
    root, keys = crawl_root
    seed_metadata(spark, lake)
    # The crawl is being published: two files listed first.
    publish(root, keys[:2])
    first = execute(refresh, spark, cfg_for(lake, root))
    assert first.ingest.files == 2 and first.ingest.ok == 2
    assert first.match.mode == "full" and first.balance.pairs_out == 15
    assert not first.noop
    runs1 = lakemod.read(spark, lake, tables.CURATION_RUNS).collect()
    assert len(runs1) == 1
    curated_v1 = {r[0] for r in balance.latest_curated(spark, lake).select("pair_id").collect()}

    # Same crawl again, nothing new: no table gets a new version. `--crawl latest` finds it: the newest crawl
    # whose listing is published (the schedule's default).
    before = versions(spark, lake)
    latest = cfg_for(lake, root)
    latest["refresh"]["crawl"] = "latest"
    again = execute(refresh, spark, latest)
    assert again.crawl == CRAWL
    assert again.noop and again.changed_tables == []
    assert again.ingest.files == 0 and again.ingest.skipped_done == 2
    assert again.balance == Skipped("up to date", run_id=runs1[0]["run_id"])
    assert versions(spark, lake) == before
    # by balance's own rule (balance.done_before), which --full overrides as `kgcurate balance --full` does
    assert refresh.balance_is_current(spark, lake, cfg_for(lake, root)) == runs1[0]["run_id"]
    full = cfg_for(lake, root)
    full["balance"]["full"] = True
    assert refresh.balance_is_current(spark, lake, full) is None

    # The third file appears: only it is read, only its pairs are matched, a new run is recorded.
    publish(root, keys)
    third = execute(refresh, spark, cfg_for(lake, root))
    assert third.ingest.files == 1 and third.ingest.skipped_done == 2
    assert third.match.mode == "incremental"
    pairs = lakemod.read(spark, lake, tables.PAIRS)
    new_pairs = pairs.where(F.col("source_file").endswith(Path(keys[2]).name)).count()
    assert third.match.pairs_matched <= new_pairs < pairs.count()
    runs = lakemod.read(spark, lake, tables.CURATION_RUNS).orderBy("created_at").collect()
    assert len(runs) == 2 and runs[1]["pairs_in"] == pairs.count() > runs[0]["pairs_in"]
    # Incremental counts equal a recount from all matches.
    recount = {(r[0], r[1]) for r in lakemod.read(spark, lake, tables.MATCHES).groupBy("entry_id").count().collect()}
    counts = {(r[0], r[1]) for r in lakemod.read(spark, lake, tables.ENTRY_COUNTS).where("count > 0").collect()}
    assert counts == recount
    # The first curated set stays side by side with the new one (and at the version its run recorded).
    v1 = runs[0]["input_versions"][tables.CURATED]
    old = {r[0] for r in lakemod.read(spark, lake, tables.CURATED, version=v1).select("pair_id").collect()}
    assert old == curated_v1
    first_set = {r[0] for r in balance.latest_curated(spark, lake, runs[0]["run_id"]).select("pair_id").collect()}
    assert first_set == curated_v1
    assert balance.latest_curated(spark, lake).where(F.col("run_id") == runs[1]["run_id"]).count() == 15
    log = lakemod.read(spark, lake, tables.INGEST_LOG)
    assert log.where("status = 'ok'").select("source_file").distinct().count() == 3
    assert log.count() == 3  # each file read once over three refreshes
    # DuckDB and delta-rs read the lake as Spark does, the first run's curated version too (time travel)
    assert assert_other_readers_agree(spark, lake, {tables.CURATED: v1}) == [tables.CURATED]

    # --- maintenance on the same lake --------------------------------------------------------------
    stale = Path(lake) / "_staging" / "ingest-wat-killed-run"
    (stale / "rows").mkdir(parents=True)
    (stale / "rows" / "part-0.parquet").write_bytes(b"x")
    old_time = time.time() - 3 * 3600
    for path in (stale / "rows" / "part-0.parquet", stale / "rows", stale):
        os.utime(path, (old_time, old_time))
    fresh = Path(lake) / "_staging" / "match-running-now"
    fresh.mkdir()
    # a long run: its folder's own time is old (its subfolder was made hours ago), but it is writing now
    writing = Path(lake) / "_staging" / "ingest-wikidata-long-run"
    (writing / "rows").mkdir(parents=True)
    for path in (writing / "rows", writing):
        os.utime(path, (old_time, old_time))
    (writing / "rows" / "part-9.parquet").write_bytes(b"y")
    os.utime(writing / "rows", (old_time, old_time))

    before = versions(spark, lake)
    cfg = cfg_for(lake, root)
    cfg["maintain"] = {"vacuum_hours": 1, "dry_run": True, "staging_hours": 2}
    dry = execute(maintain, spark, copy.deepcopy(cfg))
    assert versions(spark, lake) == before and stale.exists()
    assert [Path(p).name for p in dry.stale_staging] == [stale.name]
    assert dry.tables[tables.PAIRS]["files_before"] >= 1

    curated_now = sorted(r[0] for r in lakemod.read(spark, lake, tables.CURATED).select("pair_id").collect())
    before = {n: lakemod.version(spark, lake, n) for n in dry.tables}
    cfg["maintain"] = {"vacuum_hours": 0, "dry_run": False, "staging_hours": 2}
    done = execute(maintain, spark, cfg)
    assert not stale.exists() and fresh.exists() and writing.exists()
    assert set(done.tables) == set(dry.tables) and len(done.tables) >= 10  # maintained four at a time
    for name, info in done.tables.items():
        # files after: from OPTIMIZE's metrics, not read again; one file or none: no OPTIMIZE, no commit (but
        # leases: maintain gives back the writers' leases it held only after it counted)
        if name != tables.LEASES:
            assert info["files_after"] == lakemod.files_and_bytes(spark, lake, name)[0], name
        assert info["files_before"] > 1 or not info["optimized"], name
        ops = [r["operation"] for r in lakemod._commits(spark, lake, name, 5) if int(r["version"]) > before[name]]
        if name != tables.LEASES:  # (removing orphan curated runs takes the balance lease)
            assert ops == (["OPTIMIZE"] if info["optimized"] else []), (name, ops)  # no VACUUM START/END
    assert any(info["optimized"] for info in done.tables.values())
    assert spark.conf.get(maintain.VACUUM_LOGGING, None) is None
    assert sorted(r[0] for r in lakemod.read(spark, lake, tables.CURATED).select("pair_id").collect()) == curated_now
    assert lakemod.read(spark, lake, tables.PAIRS).count() == pairs.count()
    # ... and after OPTIMIZE and VACUUM, every table
    assert len(assert_other_readers_agree(spark, lake)) >= 10
    # VACUUM with a zero window keeps every listed run readable: runs live in partitions of the current
    # version, not in time travel.
    first_set = {r[0] for r in balance.latest_curated(spark, lake, runs[0]["run_id"]).select("pair_id").collect()}
    assert first_set == curated_v1
    assert spark.conf.get(maintain.RETENTION_CHECK) == "true"  # the safety check is restored
    # A non-zero window becomes the table's retention property, set once (no commit when unchanged).
    v = lakemod.version(spark, lake, tables.CURATED)
    assert maintain.set_retention(spark, lake, tables.CURATED, 48)
    assert maintain.retention_of(spark, lake, tables.CURATED) == "interval 172800 seconds"
    assert not maintain.set_retention(spark, lake, tables.CURATED, 48)
    assert lakemod.version(spark, lake, tables.CURATED) == v + 1

    # The next refresh with nothing new changes no table: maintain's OPTIMIZE and property commits moved
    # pairs' and metadata's versions, and match took that for new pairs: it wrote entry_counts and match_state,
    # and balance a second, identical curated set under a new run id (the weekly DAG runs maintain after refresh).
    assert done.tables[tables.PAIRS]["optimized"]
    maintain.set_retention(spark, lake, tables.METADATA, 48)
    before = versions(spark, lake)
    quiet = execute(refresh, spark, cfg_for(lake, root))
    assert quiet.noop and quiet.changed_tables == [] and quiet.match.up_to_date
    assert versions(spark, lake) == before
    assert len(lakemod.read(spark, lake, tables.CURATION_RUNS).collect()) == 2


def test_maintain_rejects_empty_lake(spark, lake):
    cfg = config.load(None)
    cfg["lake"] = lake
    with pytest.raises(UserError, match="no Delta table"):
        execute(maintain, spark, cfg)
    cfg["maintain"] = {"parallel_tables": 0}
    with pytest.raises(UserError, match="--parallel-tables must be >= 1"):
        execute(maintain, spark, cfg)


def test_maintain_holds_the_writers_leases_and_waits_for_no_one(spark, lake):
    """maintain took no lease: the weekly DAG's could compact and vacuum beside a pipeline run writing the same
    tables (on S3 two drivers' commits can overwrite each other). It now holds every lease-taking stage's
    lease, refuses while one is held elsewhere, and gives back the ones it took."""
    from kgcurate import leases

    lakemod.append(spark, lake, tables.CURATION_RUNS, spark.createDataFrame([], tables.schema(tables.CURATION_RUNS)))
    cfg = config.load(None)
    cfg["lake"] = lake
    cfg["maintain"] = {"parallel_tables": 1}
    other = leases.acquire(lake, "match", "match-elsewhere")  # a match run of another process
    try:
        with pytest.raises(UserError, match="match"):
            execute(maintain, spark, cfg)
        assert leases.current_row(lake, "ingest-wat") is None  # the one it had taken first is given back
        cfg["maintain"]["dry_run"] = True  # reads only: no lease
        assert execute(maintain, spark, cfg).dry_run
    finally:
        leases.release(lake, other)
    cfg["maintain"]["dry_run"] = False
    execute(maintain, spark, cfg)
    assert all(leases.current_row(lake, scope) is None for scope in maintain.writer_scopes())


@pytest.mark.parametrize(("key", "value"), [("vacuum_hours", float("nan")), ("vacuum_hours", float("inf")),
                                            ("vacuum_hours", -1.0), ("staging_hours", 0.0),
                                            ("staging_hours", float("nan"))])
def test_maintain_windows_are_checked_before_spark(key, value):
    """NaN or inf once failed half way, after tables had been compacted; staging 0 would delete the
    staging of runs in progress."""
    with pytest.raises(UserError, match=f"--{key.replace('_', '-')} must be a finite number"):
        maintain.prepare(None, {"maintain": {key: value}})


def test_maintain_keeps_vacuum_commits_when_the_session_asks_for_them(spark, lake):
    """Delta's own setting wins where a user made one (an audit trail on HDFS): maintain leaves it as it is."""
    lakemod.append(spark, lake, tables.CURATION_RUNS, spark.createDataFrame([], tables.schema(tables.CURATION_RUNS)))
    cfg = config.load(None)
    cfg["lake"] = lake
    cfg["maintain"] = {"vacuum_hours": 0, "parallel_tables": 1}
    with lakemod.session_conf(spark, maintain.VACUUM_LOGGING, "true"):
        execute(maintain, spark, cfg)
        assert spark.conf.get(maintain.VACUUM_LOGGING) == "true"
    ops = [r["operation"] for r in lakemod._commits(spark, lake, tables.CURATION_RUNS, 5)]
    assert ops[:2] == ["VACUUM END", "VACUUM START"]
    assert lakemod.content_version(spark, lake, tables.CURATION_RUNS, 0) == lakemod.version(
        spark, lake, tables.CURATION_RUNS)  # walked past: the same rows
