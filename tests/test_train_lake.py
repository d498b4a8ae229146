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
