"""Faults: a job killed with SIGKILL mid-write, two refreshes at once. Each subprocess starts a JVM,
so there are few of them; the clean baselines and re-runs use the shared in-process session."""

from __future__ import annotations

import gzip
import re
import shutil
import signal
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from helpers import execute, kill_when, start_cli
from kgcurate import config, tables
from kgcurate import lake as lakemod
from kgcurate.stages import balance, build_metadata, ingest_wat, match, refresh
from kgcurate.wat.sample import ANIMALS, CRAWL, OBJECTS, write_sample

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PAIR_COLS = ["pair_id", "image_url", "text", "text_source", "page_url", "crawl", "source_file"]


def checksum(df, cols: list[str]) -> tuple[int, int]:
    """(rows, order-independent sum of row hashes): equal content <=> equal checksum (up to hash collisions)."""
    row = df.select(F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("h")).first()
    return int(row["n"]), int(row["h"] or 0)


def latest_status(spark, root: str) -> dict[str, str]:
    log = lakemod.read(spark, root, tables.INGEST_LOG)
    rows = log.groupBy("source_file").agg(F.max_by("status", "finished_at").alias("s")).collect()
    return {r[0]: r[1] for r in rows}


def base_cfg(root: str) -> dict:
    cfg = config.load(None)
    cfg["lake"] = root
    cfg["wat"]["progress_interval"] = 3600
    return cfg


def seed_metadata(spark, root: str) -> None:
    rows = [(e, "test", None) for e in ANIMALS + OBJECTS]
    df = build_metadata.derive(spark.createDataFrame(rows, "entry string, source string, qid string"))
    lakemod.overwrite(spark, root, tables.METADATA, df)


def _has_parts(path: Path) -> bool:
    return path.is_dir() and any(p.suffix == ".parquet" or p.name.endswith(".parquet") for p in path.rglob("*"))


def test_sigkill_ingest_mid_write_then_rerun_equals_clean_run(spark, tmp_path):
    sample = write_sample(tmp_path / "gen", files=6, records=900, seed=11, corrupt=True)
    listing = sample.listing
    clean, killed = str(tmp_path / "clean"), tmp_path / "killed"

    proc = start_cli(["ingest-wat", "--lake", str(killed), listing], tmp_path)
    # Killed once task output is being written (staged Parquet), before or while the tables commit.
    assert kill_when(proc, lambda: _has_parts(killed / "_staging")), proc.communicate()[1][-2000:]
    assert proc.returncode == -signal.SIGKILL

    cfg = base_cfg(clean)
    cfg["wat"]["inputs"] = [listing]
    execute(ingest_wat, spark, cfg)
    cfg = base_cfg(str(killed))
    cfg["wat"]["inputs"] = [listing]
    rerun = execute(ingest_wat, spark, cfg)
    assert rerun.files >= 1  # the killed run had not logged every file as ok

    for name, cols in ((tables.PAIRS, PAIR_COLS), (tables.BAD_RECORDS, ["source_file", "offset", "reason", "sample"])):
        assert checksum(lakemod.read(spark, str(killed), name), cols) == checksum(
            lakemod.read(spark, clean, name), cols), name
    pairs = lakemod.read(spark, str(killed), tables.PAIRS)
    assert pairs.groupBy("image_url", "text").count().where("count > 1").count() == 0
    assert latest_status(spark, str(killed)) == latest_status(spark, clean)
    ok_rows = lakemod.read(spark, str(killed), tables.INGEST_LOG).where("status = 'ok'")
    assert ok_rows.groupBy("source_file").count().where("count > 1").count() == 0  # no file ok twice
    assert ok_rows.count() == 5  # the sample's last file ends in a truncated gzip member: partial
    # The killed run's staging may be left behind: it is kgcurate maintain's to remove, never read again.


def test_sigkill_balance_mid_write_then_rerun_equals_clean_run(spark, tmp_path):
    sample = write_sample(tmp_path / "gen", files=2, records=300, seed=5, corrupt=False)
    clean = str(tmp_path / "clean")
    cfg = base_cfg(clean)
    cfg["wat"]["inputs"] = [sample.listing]
    execute(ingest_wat, spark, cfg)
    seed_metadata(spark, clean)
    execute(match, spark, cfg)
    killed = tmp_path / "killed"
    shutil.copytree(clean, killed)

    cfg["balance"]["target_size"] = 40
    clean_run = execute(balance, spark, cfg)

    proc = start_cli(["balance", "--lake", str(killed), "--target-size", "40"], tmp_path)
    assert kill_when(proc, lambda: (killed / tables.CURATED).exists()), proc.communicate()[1][-2000:]
    kcfg = base_cfg(str(killed))
    kcfg["balance"]["target_size"] = 40
    rerun = execute(balance, spark, kcfg)
    assert rerun.run_id == clean_run.run_id and rerun.pairs_out == 40
    cols = ["pair_id", "image_url", "text", "run_id"]
    assert checksum(lakemod.read(spark, str(killed), tables.CURATED), cols) == checksum(
        lakemod.read(spark, clean, tables.CURATED), cols)
    runs = lakemod.read(spark, str(killed), tables.CURATION_RUNS).collect()
    assert [r["run_id"] for r in runs] == [clean_run.run_id]


def test_two_refreshes_at_once_stay_consistent(spark, tmp_path):
    root = tmp_path / "cc"
    write_sample(tmp_path / "gen", files=3, records=300, seed=9, corrupt=False)
    seg = root / "crawl-data" / CRAWL / "segments" / "1.0" / "wat"
    seg.mkdir(parents=True)
    keys = []
    for path in sorted((tmp_path / "gen").glob("*.warc.wat.gz")):
        shutil.copy2(path, seg / path.name)
        keys.append(str((seg / path.name).relative_to(root)))
    (root / "crawl-data" / CRAWL / "wat.paths.gz").write_bytes(gzip.compress(("\n".join(keys) + "\n").encode()))
    lake_dir = str(tmp_path / "lake")
    seed_metadata(spark, lake_dir)

    args = ["refresh", "--lake", lake_dir, "--crawl", CRAWL, "--listing-base", str(root), "--target-size", "30"]
    procs = [start_cli(args, tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    print(f"concurrent refresh exit codes: {codes}")
    assert codes in ([0, 0], [0, 2]), [(rc, err[-1500:]) for rc, _, err in results]
    for rc, _out, err in results:
        if rc == 2:  # the loser says what happened and what to do, in one line
            line = [x for x in err.splitlines() if x.startswith("kgcurate: error:")]
            assert line and re.search(r"another (match |balance |ingest-wat )?run", line[-1]), err[-1500:]
            assert "re-run" in line[-1], err[-1500:]

    pairs = lakemod.read(spark, lake_dir, tables.PAIRS)
    assert pairs.groupBy("image_url", "text").count().where("count > 1").count() == 0
    matches = lakemod.read(spark, lake_dir, tables.MATCHES)
    assert matches.groupBy("pair_id", "entry_id").count().where("count > 1").count() == 0
    assert set(latest_status(spark, lake_dir).values()) == {"ok"} and len(latest_status(spark, lake_dir)) == 3
    # Whatever the interleaving, the next refresh converges and then has nothing to do.
    cfg = base_cfg(lake_dir)
    cfg["balance"]["target_size"] = 30
    cfg["refresh"] = {"crawl": CRAWL, "listing_base": str(root)}
    execute(refresh, spark, cfg)
    assert execute(refresh, spark, cfg).noop
    recount = {(r[0], r[1])
               for r in lakemod.read(spark, lake_dir, tables.MATCHES).groupBy("entry_id").count().collect()}
    counts = {(r[0], r[1]) for r in lakemod.read(spark, lake_dir, tables.ENTRY_COUNTS).where("count > 0").collect()}
    assert counts == recount
    assert balance.latest_curated(spark, lake_dir).count() == 30
