"""The training input read from the lake with deltalake: newest or named download run, shards of every run
into the same folder, pinned versions, one-line errors."""

from __future__ import annotations

import os

import pytest

import train_data
from kgcurate.errors import UserError
from kgcurate.train.lake_input import read_input


def test_the_newest_download_and_its_counts(tmp_path) -> None:
    lake, out = str(tmp_path / "lake"), str(tmp_path / "shards")
    train_data.record_download(lake, out, {0: 5, 1: 4})
    inp = read_input(lake)
    assert (inp.download_run_id, inp.curated_run_id, inp.samples, inp.downloaded_samples) == (
        "download-1", "balance-abc", 9, 9)
    assert inp.files == [f"{out}/00000.tar", f"{out}/00001.tar"]
    assert (inp.download_runs_version, inp.downloads_version) == (0, 0)


def test_runs_into_one_folder_add_up_and_a_version_pins_what_is_read(tmp_path) -> None:
    lake, out = str(tmp_path / "lake"), str(tmp_path / "shards")
    train_data.record_download(lake, out, {0: 5, 1: 4}, run_id="download-1")
    train_data.record_download(lake, out, {2: 3}, run_id="download-2")  # a resumed / retried download
    train_data.record_download(lake, str(tmp_path / "other"), {0: 7}, run_id="download-3", curated_run_id="balance-x")
    assert read_input(lake, "download-2").samples == 12
    assert read_input(lake, "download-1").download_run_id == "download-2"  # the folder's newest run
    assert read_input(lake).curated_run_id == "balance-x"
    pinned = read_input(lake, version=0)
    assert (pinned.samples, pinned.download_runs_version) == (9, 0)


def _maintained(lake: str, table: str) -> None:
    """What `kgcurate maintain` does to a table once its window has passed: compaction, then VACUUM."""
    from deltalake import DeltaTable

    from kgcurate.lake_rs import table_uri

    dt = DeltaTable(table_uri(lake, table))
    dt.optimize.compact()
    assert dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)


def test_a_resume_reads_its_pinned_version_after_maintain_removed_it(tmp_path) -> None:
    """A training run resumes from its manifest's download_runs version for as long as it runs; maintain's
    compaction + VACUUM removed that version's files (FileNotFoundError, every resume failing) and Delta's log
    cleanup its log. The table is append-only, so the version's rows come from the newest one."""
    lake, out = str(tmp_path / "lake"), str(tmp_path / "shards")
    train_data.record_download(lake, out, {0: 5, 1: 4}, run_id="download-1")
    train_data.record_download(lake, out, {2: 3}, run_id="download-2")
    pinned = read_input(lake)  # what `kgcurate train` records in its manifest: version 1
    train_data.record_download(lake, out, {3: 8}, run_id="download-3")  # later into the same folder: not pinned
    train_data.record_download(lake, str(tmp_path / "x"), {0: 7}, run_id="download-4", curated_run_id="balance-x")
    _maintained(lake, "download_runs")
    with pytest.raises(UserError, match="version 1 .*cannot be read .*--download-run-id"):
        read_input(lake, version=1)  # a bare version cannot be rebuilt: one line, not the trace
    resumed = read_input(lake, pinned.download_run_id, pinned.download_runs_version)
    assert resumed == pinned
    assert (resumed.samples, resumed.download_runs_version, len(resumed.shards)) == (12, 1, 3)
    assert read_input(lake, "download-1").samples == 20  # unpinned: the folder as it stands

    # the log of version 1 cleaned up as well (a checkpoint, then the older commits gone)
    from deltalake import DeltaTable

    from kgcurate.lake_rs import table_uri

    DeltaTable(table_uri(lake, "download_runs")).create_checkpoint()
    for n in range(2):
        os.remove(os.path.join(table_uri(lake, "download_runs"), "_delta_log", f"{n:020d}.json"))
    assert read_input(lake, pinned.download_run_id, pinned.download_runs_version) == pinned


def test_a_pinned_read_checks_downloads_as_they_stood(tmp_path) -> None:
    """The sample-count cross-check reads `downloads` as of the pinned run: a later download of the same curated
    set into another folder rewrites its rows (keyed by curated run and URL), which made a resume warn that
    the tables disagree."""
    lake = str(tmp_path / "lake")
    train_data.record_download(lake, str(tmp_path / "a"), {0: 5, 1: 4}, run_id="download-1")
    train_data.record_download(lake, str(tmp_path / "b"), {0: 6, 1: 6}, run_id="download-2")
    pinned = read_input(lake, version=0)
    assert (pinned.samples, pinned.downloaded_samples, pinned.downloads_version) == (9, 9, 0)
    _maintained(lake, "downloads")  # its state then is gone: no cross-check, no false warning
    assert (read_input(lake, version=0).downloaded_samples, read_input(lake, version=0).samples) == (None, 9)


def test_missing_input_is_one_line(tmp_path) -> None:
    lake = str(tmp_path / "lake")
    with pytest.raises(UserError, match="no download_runs table .*kgcurate download"):
        read_input(lake)
    train_data.record_download(lake, str(tmp_path / "s"), {0: 1})
    with pytest.raises(UserError, match="no download run 'nope'"):
        read_input(lake, "nope")
    with pytest.raises(UserError, match="no version 9"):
        read_input(lake, version=9)
    # with the run named too: a version never written is still the error, not rebuilt and pinned as if vacuumed
    with pytest.raises(UserError, match="no version 9"):
        read_input(lake, "download-1", version=9)


def test_train_runs_has_one_row_per_experiment_in_the_declared_schema(tmp_path) -> None:
    from dataclasses import replace

    from kgcurate import tables
    from kgcurate.lake_rs import open_table
    from kgcurate.train import runs
    from kgcurate.train.experiment import Manifest

    lake, schema = str(tmp_path / "lake"), tables.arrow_schema(tables.TRAIN_RUNS)
    m = Manifest(train_run_id="train-1", model="kgc-tiny", model_config_dir=None, experiment_dir="/e", args=["--a"],
                 curated_run_id="c", download_run_id="d", download_runs_version=1, downloads_version=2,
                 kg_text_share=0.5, seed=0, packages={"torch": "2.15.0"}, started_at="2026-12-03T09:00:00+00:00")
    assert runs.record(lake, tables.TRAIN_RUNS, schema, m) == 0
    runs.record(lake, tables.TRAIN_RUNS, schema, m)  # a rerun
    runs.record(lake, tables.TRAIN_RUNS, schema, replace(m, status="completed", steps=40, final_loss=2.1))  # a resume
    runs.record(lake, tables.TRAIN_RUNS, schema, replace(m, train_run_id="train-2"))
    table = open_table(lake, tables.TRAIN_RUNS).to_pyarrow_table()
    assert table.schema.names == schema.names
    rows = {r["train_run_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["train-1", "train-2"]
    one = rows["train-1"]
    assert (one["status"], one["steps"], one["final_loss"]) == ("completed", 40, 2.1)
    assert one["args"] == '["--a"]' and one["started_at"].year == 2026


def test_deltalake_gets_the_s3_compatible_endpoint_the_other_stages_use(monkeypatch) -> None:
    from kgcurate.lake_rs import storage_options

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("KGCURATE_S3_ENDPOINT", raising=False)
    assert storage_options("s3://b/lake/train_runs") is None  # AWS itself: deltalake's defaults
    monkeypatch.setenv("KGCURATE_S3_ENDPOINT", "http://minio:9000")
    assert storage_options("s3://b/lake/train_runs") == {"AWS_ENDPOINT_URL": "http://minio:9000",
                                                         "AWS_ALLOW_HTTP": "true"}
    assert storage_options("/data/lake/train_runs") is None
    monkeypatch.setenv("KGCURATE_S3_ENDPOINT", "https://s3.example.internal")
    assert storage_options("s3://b/lake/t") == {"AWS_ENDPOINT_URL": "https://s3.example.internal"}
    secrets = {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"}
    assert not secrets & set(storage_options("s3://b/lake/t"))  # credentials stay with the default chain
