"""ingest-wat on files with damage to the container (issue #15): every intact record's pairs are in
``pairs``, every damaged span is in ``bad_records``, ``ingest_log`` accounts for every record, the
files are ``partial`` (exit 0 with a warning), and re-runs add nothing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from helpers import execute, wat_cfg
from kgcurate import cli, tables
from kgcurate import lake as lk
from kgcurate.stages import ingest_wat
from kgcurate.wat.sample import write_sample
from wat_damage import GZ_KINDS, PLAIN_KINDS, damage, mixed_plan, split_records


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Two files gzip per record and two uncompressed, each from a different generated file, each
    with every kind of damage twice at random positions and a cut end."""
    out_dir = tmp_path_factory.mktemp("damaged")
    m = write_sample(out_dir / "clean", files=4, records=60, seed=21, corrupt=False)
    files = {}
    for k, path in enumerate(m.files):
        gz = k < 2
        records = split_records(Path(path).read_bytes(), gz=True)
        plan = mixed_plan(GZ_KINDS if gz else PLAIN_KINDS, len(records), random.Random(k), times=2)
        d = damage(records, plan, gz, seed=k)
        target = out_dir / f"CC-MAIN-2099-01-damaged-{k:02d}.warc.wat{'.gz' if gz else ''}"
        target.write_bytes(d.data)
        files[str(target)] = d
    return files


def test_damaged_files_lose_nothing_and_rerun_adds_nothing(spark, lake, damaged, capsys):
    inputs = sorted(damaged)
    summary = execute(ingest_wat, spark, wat_cfg(lake, inputs))
    assert summary.files == len(inputs) and summary.partial == len(inputs) and summary.failed == []

    # every intact record's pairs are in, and nothing else
    expected = {(u, t) for d in damaged.values() for (u, t, _s, _p) in d.expected_pairs}
    pairs = {(r.image_url, r.text) for r in lk.read(spark, lake, tables.PAIRS).select("image_url", "text").collect()}
    assert pairs == expected and summary.pairs_inserted == len(expected)

    log = {r.source_file: r for r in lk.read(spark, lake, tables.INGEST_LOG).collect()}
    bad = {}
    for r in lk.read(spark, lake, tables.BAD_RECORDS).select("source_file", "offset", "reason").collect():
        bad.setdefault(r.source_file, []).append((r.offset, r.reason))
    for path, d in damaged.items():
        row = log[path]
        name = os.path.basename(path)
        # records = intact records + one bad record per damaged span (or more): nothing silently missing
        assert row.status == "partial" and row.error.startswith("partial: "), (name, row.error)
        assert row.records - row.bad_records == len(d.intact), name
        assert row.rows_out == sum(d.expected_pairs.values()), name
        assert row.bad_records == len(bad[path]) >= len(d.merged_spans()), name
        spans = d.merged_spans()
        assert all(any(a <= off < b for a, b in spans) for off, _ in bad[path]), (name, bad[path], spans)
        assert all(any(a <= off < b for off, _ in bad[path]) for a, b in spans), (name, bad[path], spans)
        assert all("skipped" in reason for _, reason in bad[path]), name

    # a re-run skips partial files (their damaged bytes cannot be recovered) ...
    again = execute(ingest_wat, spark, wat_cfg(lake, inputs))
    assert again.files == 0 and again.skipped_done == len(inputs)
    # ... and --force re-reads them, adding nothing; the CLI says so and exits 0 with a warning
    capsys.readouterr()
    rc = cli.main(["ingest-wat", "--lake", lake, "--force", *inputs])
    out, err = capsys.readouterr()
    assert rc == 0 and f"{len(inputs)} partial, 0 failed" in out and "partial: " in out
    assert "kgcurate: warning: " in err and os.path.basename(inputs[0]) in err
    assert lk.read(spark, lake, tables.PAIRS).count() == len(expected)
    assert lk.read(spark, lake, tables.BAD_RECORDS).count() == sum(len(v) for v in bad.values())
    assert lk.read(spark, lake, tables.INGEST_LOG).where(F.col("status") != "partial").count() == 0
