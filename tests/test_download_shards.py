"""Shard assignment, keys, the webdataset tar and sizes.json (kgcurate.download.shards)."""

from __future__ import annotations

import io
import json
import os
import random
import tarfile

import pytest

from kgcurate.download.shards import (
    TarSample,
    sample_key,
    sample_keys,
    shard_name,
    sizes_json,
    tar_bytes,
    write_shard,
    write_sizes,
)


def test_keys_are_ranks_in_url_order():
    assert sample_key(42, 7) == "000420007"
    assert shard_name(42) == "00042.tar"
    urls = ["https://b/2.jpg", "https://a/1.jpg", "https://c/3.jpg", "https://a/1.jpg"]
    keys = sample_keys(3, urls)
    assert keys == {"https://a/1.jpg": "000030000", "https://b/2.jpg": "000030001", "https://c/3.jpg": "000030002"}
    shuffled = urls[:]
    random.Random(1).shuffle(shuffled)
    assert sample_keys(3, shuffled) == keys
    with pytest.raises(ValueError):
        sample_key(100_000, 0)
    with pytest.raises(ValueError):
        sample_key(0, 10_000)
    with pytest.raises(ValueError):
        sample_keys(0, (f"u{i}" for i in range(10_001)))


def names(path: str) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def samples() -> list[TarSample]:
    return [
        TarSample("000000002", b"\xff\xd8jpeg-two", "zwei Bilder", {"url": "u2", "texts": [{"text": "zwei"}]}),
        TarSample("000000000", b"\xff\xd8jpeg-zero", "caf\u00e9 \u2615", {"url": "u0", "width": 3, "sha256": "ab"}),
        TarSample("000000001", b"\xff\xd8jpeg-one", "", {"url": "u1"}),
    ]


def test_tar_is_webdataset_shaped_and_byte_identical():
    data = tar_bytes(samples())
    assert tar_bytes(list(reversed(samples()))) == data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            f"00000000{i}.{ext}" for i in range(3) for ext in ("jpg", "txt", "json")
        ]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)
            assert m.isfile()
        assert tar.extractfile("000000000.jpg").read() == b"\xff\xd8jpeg-zero"
        assert tar.extractfile("000000000.txt").read().decode("utf-8") == "caf\u00e9 \u2615"
        assert json.loads(tar.extractfile("000000000.json").read()) == {"url": "u0", "width": 3, "sha256": "ab"}
        assert tar.extractfile("000000001.txt").read() == b""
    with pytest.raises(ValueError, match="duplicate"):
        tar_bytes(samples() + samples()[:1])


def test_write_shard_replaces_whole_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "shards"
    path = write_shard(str(out), 7, samples())
    assert path == str(out / "00007.tar")
    first = (out / "00007.tar").read_bytes()
    assert first == tar_bytes(samples())
    path = write_shard(str(out), 7, samples()[:1])  # a rerun replaces the file
    assert names(path) == ["000000002.jpg", "000000002.txt", "000000002.json"]

    def broken():
        yield samples()[0]
        raise RuntimeError("task killed mid-write")

    with pytest.raises(RuntimeError):
        write_shard(str(out), 7, broken())
    assert os.listdir(out) == ["00007.tar"]  # the temp file is gone, the previous tar untouched
    assert names(path) == ["000000002.jpg", "000000002.txt", "000000002.json"]
    empty = write_shard(str(out), 8, [])
    assert names(empty) == []


def test_sizes_json_is_what_open_clip_sums(tmp_path):
    sizes = {"00001.tar": 3, "00000.tar": 9998, "00002.tar": 0}
    path = write_sizes(str(tmp_path), sizes)
    assert path == str(tmp_path / "sizes.json")
    loaded = json.loads((tmp_path / "sizes.json").read_bytes())
    assert list(loaded) == ["00000.tar", "00001.tar", "00002.tar"]
    # open_clip's get_dataset_size: sum(int(sizes[os.path.basename(shard)]) for shard in shards)
    shards = [str(tmp_path / f"{i:05d}.tar") for i in range(3)]
    assert sum(int(loaded[os.path.basename(s)]) for s in shards) == 10001
    assert sizes_json(sizes) == sizes_json(dict(reversed(list(sizes.items()))))
    with pytest.raises(ValueError):
        sizes_json({"s3://bucket/00000.tar": 1})


def test_remove_stale_temps_takes_only_unfinished_shard_writes(tmp_path) -> None:
    from kgcurate.download.shards import remove_stale_temps, write_file_atomically

    write_file_atomically(str(tmp_path / "00000.tar"), lambda f: f.write(b"done"))
    for name in (".00001.tar.ab12cd.tmp", ".00002.tar.x.tmp", ".notes.tmp", "00003.tar.tmp", "keep.tmp"):
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_temps(str(tmp_path)) == [".00001.tar.ab12cd.tmp", ".00002.tar.x.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "00000.tar", "00003.tar.tmp", "keep.tmp"]
    assert remove_stale_temps(str(tmp_path / "absent")) == []
