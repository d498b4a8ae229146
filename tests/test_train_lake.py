"""The training input read from the lake with deltalake: newest or named download run, shards of every run
into the same folder, pinned versions, one-line errors."""

from __future__ import annotations

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


def test_missing_input_is_one_line(tmp_path) -> None:
    lake = str(tmp_path / "lake")
    with pytest.raises(UserError, match="no download_runs table .*kgcurate download"):
        read_input(lake)
    train_data.record_download(lake, str(tmp_path / "s"), {0: 1})
    with pytest.raises(UserError, match="no download run 'nope'"):
        read_input(lake, "nope")
    with pytest.raises(UserError, match="no version 9"):
        read_input(lake, version=9)


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
