"""ingest-wat end to end on Spark: exact pairs, accounting, idempotence, failures, real WAT."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
from pyspark.sql import functions as F

from helpers import execute, wat_cfg
from kgcurate import cli, tables
from kgcurate import lake as lk
from kgcurate.stages import ingest_wat
from kgcurate.wat.sample import write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("wat"), files=3, records=60, seed=7, corrupt=True)


def test_generated_sample_exact_pairs_accounting_and_idempotence(spark, lake, sample):
    summary = execute(ingest_wat, spark, wat_cfg(lake, [sample.listing]))
    expected = {(u, t) for (u, t, _src, _page) in sample.pairs}
    got = lk.read(spark, lake, tables.PAIRS)
    rows = {(r.image_url, r.text) for r in got.select("image_url", "text").collect()}
    assert rows == expected
    assert got.count() == len(expected)  # distinct (image_url, text)
    assert got.where(F.col("crawl") != sample.crawl).count() == 0

    # one log row per file; the truncated file is partial (its cut member is a bad record), the others ok
    log = {os.path.basename(r.source_file): r for r in lk.read(spark, lake, tables.INGEST_LOG).collect()}
    assert set(log) == {os.path.basename(f) for f in sample.files}
    for name, row in log.items():
        assert row.records == sample.records_by_file[name]
        assert row.bad_records == sample.bad_by_file[name]
        assert row.rows_out == len(sample.pairs_by_file[name])
        if name == sample.truncated_file:
            assert row.status == "partial" and "truncated gzip member" in row.error
        else:
            assert row.status == "ok" and row.error is None
    bad = lk.read(spark, lake, tables.BAD_RECORDS)
    assert bad.count() == sample.bad_records > 0
    assert bad.where(F.col("offset").isNull() | (F.col("reason") == "")).count() == 0
    assert summary.pairs_inserted == len(expected)
    assert not summary.failed and summary.partial == 1
    assert os.path.basename(summary.partial_files[0][0]) == sample.truncated_file

    # re-run: a partial file is done too (re-reading cannot recover its damaged bytes); --force re-reads
    again = execute(ingest_wat, spark, wat_cfg(lake, [sample.listing]))
    assert again.files == 0 and again.skipped_done == len(sample.files)
    forced = execute(ingest_wat, spark, wat_cfg(lake, [sample.listing], force=True))
    assert forced.files == len(sample.files) and forced.pairs_inserted == 0
    assert lk.read(spark, lake, tables.PAIRS).count() == len(expected)
    assert lk.read(spark, lake, tables.BAD_RECORDS).count() == sample.bad_records
    runs = lk.read(spark, lake, tables.INGEST_LOG).select("run_id").distinct().count()
    assert runs == 2


def test_pairs_written_by_tasks_equal_pairs_sent_through_spark(spark, tmp_path, sample):
    """The two staging routes (parse tasks writing Parquet themselves, or rows sent to the JVM)
    give the same tables, row for row, on a sample with bad records and a partial file."""
    def tables_of(route: str) -> dict[str, set]:
        root = str(tmp_path / route)
        summary = execute(ingest_wat, spark, wat_cfg(root, [sample.listing], pairs_staging=route))
        assert summary.pairs_staging == route
        out = {}
        for name, drop in ((tables.PAIRS, ["run_id"]), (tables.BAD_RECORDS, ["run_id"]),
                           (tables.INGEST_LOG, ["run_id", "started_at", "finished_at"])):
            out[name] = {tuple(r) for r in lk.read(spark, root, name).drop(*drop).collect()}
        return out

    by_task, by_spark = tables_of("task"), tables_of("spark")
    assert len(by_task[tables.PAIRS]) == len({(u, t) for u, t, _s, _p in sample.pairs}) > 0
    assert by_task == by_spark
    # a task-written staging file never lingers: the run's staging folder is removed
    assert not (tmp_path / "task" / "_staging").exists() or not any((tmp_path / "task" / "_staging").iterdir())


def test_listing_with_missing_objects_fails_those_and_does_the_rest(spark, lake, sample, tmp_path, capsys):
    good = [f for f in sample.files if os.path.basename(f) != sample.truncated_file]
    listing = tmp_path / "wat.paths.gz"
    names = [os.path.relpath(good[0], tmp_path), "crawl-data/missing-00001.warc.wat.gz"]
    listing.write_bytes(gzip.compress("\n".join(names).encode()))
    summary = execute(ingest_wat, spark, wat_cfg(lake, [str(listing)]))
    assert summary.files == 2 and summary.ok == 1
    (path, error), = summary.failed
    assert path.endswith("missing-00001.warc.wat.gz") and "FileNotFoundError" in error
    name = os.path.basename(good[0])
    assert lk.read(spark, lake, tables.PAIRS).count() == len({(u, t) for u, t, _s, _p in sample.pairs_by_file[name]})
    # the command: the missing object is read again and fails again, exit 1; a scheduler whose later tasks
    # must run anyway passes --allow-failed-files: the same line as a warning, exit 0 (the other input is in)
    assert cli.main(["ingest-wat", "--lake", lake, str(listing)]) == 1
    assert capsys.readouterr().err.startswith("kgcurate: error: 1 of 1 input files failed (missing-00001")
    assert cli.main(["ingest-wat", "--lake", lake, "--allow-failed-files", str(listing)]) == 0
    assert capsys.readouterr().err.startswith("kgcurate: warning: 1 of 1 input files failed (missing-00001")


def test_real_commoncrawl_wat(spark, lake, shared_data):
    wat = shared_data / "commoncrawl" / "CC-MAIN-2014-35-excerpt.warc.wat"
    whirl = shared_data / "commoncrawl" / "whirlwind.warc.wat.gz"
    execute(ingest_wat, spark, wat_cfg(lake, [str(wat), str(whirl)]))
    rows = {(r.image_url, r.text, r.text_source, r.page_url, r.crawl)
            for r in lk.read(spark, lake, tables.PAIRS).collect()}
    page = "http://0pointer.de/photos/?gallery=Australia&photo=496"
    gallery = "http://0pointer.de/photos/galleries/Australia"
    assert rows == {
        (f"{gallery}/lq/img-496.jpg", "496", "alt", page, "CC-MAIN-2014-35"),
        (f"{gallery}/thumbs/img-495.jpg", "Previous", "alt", page, "CC-MAIN-2014-35"),
        (f"{gallery}/thumbs/img-497.jpg", "Next", "alt", page, "CC-MAIN-2014-35"),
        ("http://creativecommons.org/images/public/somerights20.png", "Creative Commons License", "alt", page,
         "CC-MAIN-2014-35"),
    }
    statuses = {r.status for r in lk.read(spark, lake, tables.INGEST_LOG).collect()}
    assert statuses == {"ok"}


def test_done_means_the_latest_status_and_s3_spellings_are_one_file(spark, lake):
    """A forced re-read that failed is read again (the latest row decides, as kgcurate.units says), a
    file logged as s3a://... is done for a refresh that names it s3://..., and one logged as file:///w/x
    for a run that names /w/x (listings from a file:// mirror used to keep such keys)."""
    from datetime import datetime, timedelta

    t0 = datetime(2026, 12, 1)

    def row(f, status, minutes):
        return ("ingest-wat", "r", f, status, 1, 1, 0, 0, 1, None, t0, t0 + timedelta(minutes=minutes))

    rows = [row("/w/a.wat.gz", "ok", 1), row("/w/a.wat.gz", "failed", 2),  # re-read with --force, failed
            row("/w/b.wat.gz", "failed", 1), row("/w/b.wat.gz", "partial", 2),  # retried: done
            row("s3a://cc/c.wat.gz", "ok", 1), ("match", "r", "/w/d.wat.gz", "ok", 1, 1, 0, 0, 1, None, t0, t0),
            row("file:///w/e.wat.gz", "ok", 1), row("file:/w/f.wat.gz", "ok", 1)]  # logged through file: URIs
    lk.append(spark, lake, tables.INGEST_LOG, spark.createDataFrame(rows, tables.schema(tables.INGEST_LOG)))
    files = ["/w/a.wat.gz", "/w/b.wat.gz", "s3://cc/c.wat.gz", "/w/d.wat.gz", "/w/e.wat.gz", "file:///w/f.wat.gz"]
    assert ingest_wat.done_files(spark, lake, files, force=False) == {
        "/w/b.wat.gz", "s3://cc/c.wat.gz", "/w/e.wat.gz", "file:///w/f.wat.gz"}
    assert ingest_wat.done_files(spark, lake, files, force=True) == set()


def _member_ends(data: bytes) -> list[int]:
    """The offset after each gzip member of ``data``."""
    ends, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        pos = len(data) - len(d.unused_data)
        ends.append(pos)
    return ends


def test_a_local_file_that_grew_since_it_was_read_is_read_again(spark, lake, sample, tmp_path):
    """A mirror's file read while it was still being copied was done for good: cut inside a member it was
    `partial`, cut between members `ok`, and neither ingest nor refresh read its rest again."""
    good = next(f for f in sample.files if os.path.basename(f) != sample.truncated_file)
    with open(good, "rb") as f:
        data = f.read()
    ends = _member_ends(data)
    half = ends[len(ends) // 2]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    a, b = mirror / "a.warc.wat.gz", mirror / "b.warc.wat.gz"
    a.write_bytes(data[:half])
    b.write_bytes(data[:half + 100])
    first = execute(ingest_wat, spark, wat_cfg(lake, [str(mirror)]))
    assert (first.files, first.ok, first.partial) == (2, 1, 1)  # a cut between members reads as a whole file
    a.write_bytes(data)
    b.write_bytes(data)
    again = execute(ingest_wat, spark, wat_cfg(lake, [str(mirror)]))
    assert (again.files, again.ok) == (2, 2)
    rows = {(r.image_url, r.text) for r in lk.read(spark, lake, tables.PAIRS).collect()}
    assert rows == {(u, t) for u, t, _s, _p in sample.pairs_by_file[os.path.basename(good)]}
    third = execute(ingest_wat, spark, wat_cfg(lake, [str(mirror)]))
    assert third.files == 0 and third.skipped_done == 2


def test_a_run_whose_pair_files_were_never_written_still_logs_its_files(spark, lake, tmp_path):
    """rows_out counts the pairs a file parsed: if every task's write of them failed, no pair folder
    exists, and reading it ended the job before ingest_log recorded the failed files."""
    from datetime import datetime, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    now = datetime.now(timezone.utc)
    row = {f.name: None for f in ingest_wat.STAGED}
    row.update(kind="log", source_file="/w/x.wat.gz", status="failed", records=10, rows_out=7, bad_records=0,
               filtered=0, bytes=100, error="OSError: staging store refused the write", started_at=now,
               finished_at=now)
    staging = tmp_path / "staged"
    staging.mkdir()
    pq.write_table(pa.Table.from_pylist([row], schema=ingest_wat.STAGED), staging / "part-0.parquet")
    summary = ingest_wat.commit(spark, lake, str(staging), "run-nopairs", pairs_dir=str(tmp_path / "pairs"))
    assert summary["failed"] and summary["pairs_inserted"] == 0
    [logged] = lk.read(spark, lake, tables.INGEST_LOG).where(F.col("run_id") == "run-nopairs").collect()
    assert logged.status == "failed" and "refused" in logged.error
