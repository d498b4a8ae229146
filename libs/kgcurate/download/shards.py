"""Which shard an image goes to, what its key is, and the webdataset tar and sizes.json written for it.

Everything here is a function of the input only (URL, run id, shard count, sample content), so a rerun
of a shard yields the same keys and a byte-identical tar: reruns replace files instead of adding variants.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

MAX_SHARDS = 100_000  # keys give the shard 5 digits
MAX_PER_SHARD = 10_000  # ... and the index within it 4 digits
SIZES_FILE = "sizes.json"
_MTIME = 0  # fixed member metadata: identical input, identical bytes
_MODE = 0o644


def sample_key(shard: int, index: int) -> str:
    """``SSSSSIIII``: the img2dataset key layout (5-digit shard, 4-digit index within it)."""
    if not 0 <= shard < MAX_SHARDS or not 0 <= index < MAX_PER_SHARD:
        raise ValueError(f"shard {shard} / index {index} out of range for a {MAX_SHARDS}x{MAX_PER_SHARD} key")
    return f"{shard:05d}{index:04d}"


def sample_keys(shard: int, image_urls: Iterable[str]) -> dict[str, str]:
    """Key per distinct URL of a shard: index = rank of the URL in sorted order, so input order, thread
    order and which downloads failed never change a key."""
    urls = sorted(set(image_urls))
    if len(urls) > MAX_PER_SHARD:
        raise ValueError(f"shard {shard} has {len(urls)} images, more than {MAX_PER_SHARD} keys can number")
    return {url: sample_key(shard, index) for index, url in enumerate(urls)}


def shard_name(shard: int) -> str:
    """The tar's file name, ``00042.tar``: what sizes.json and the training ``--train-data`` braces name."""
    return f"{shard:05d}.tar"


@dataclass(frozen=True)
class TarSample:
    """One webdataset sample: written as ``key.jpg``, ``key.txt`` and ``key.json``."""

    key: str
    jpg: bytes
    text: str
    meta: Mapping[str, Any]


def tar_bytes(samples: Iterable[TarSample]) -> bytes:
    """A webdataset tar of ``samples`` in key order, members jpg, txt, json per key, fixed metadata."""
    buffer = io.BytesIO()
    write_tar(buffer, samples)
    return buffer.getvalue()


def write_tar(fileobj: BinaryIO, samples: Iterable[TarSample]) -> int:
    """Write the tar to a binary file object; returns the number of samples. Members of one key are
    adjacent (webdataset groups by the name up to the first dot), keys ascending."""
    ordered = sorted(samples, key=lambda s: s.key)
    keys = [s.key for s in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate sample keys")
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in ordered:
            meta = json.dumps(dict(sample.meta), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            for ext, payload in (("jpg", sample.jpg), ("txt", sample.text.encode()), ("json", meta.encode())):
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mtime, info.mode = len(payload), _MTIME, _MODE
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(payload))
    return len(ordered)


def remove_stale_temps(directory: str) -> list[str]:
    """Remove the temp files of shard writes that never finished (a task killed between ``mkstemp`` and
    ``os.replace``: ``.NNNNN.tar.XXXX.tmp``) and return their names. Only safe while no task writes into
    ``directory``: the download stage calls it under its lease, before its tasks start."""
    if not os.path.isdir(directory):
        return []
    stale = sorted(n for n in os.listdir(directory)
                   if n.startswith(".") and n.endswith(".tmp") and ".tar." in n and n[1:6].isdigit())
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    return stale


def write_file_atomically(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Have ``write`` fill ``path`` whole: a temp file in the same directory, fsync, then ``os.replace``,
    so a reader (or a killed task's leftovers) never sees a half-written file under the final name."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_shard(out_dir: str, shard: int, samples: Iterable[TarSample]) -> str:
    """Write shard ``shard``'s tar under its final name in ``out_dir`` and return its path.

    For S3, pass a local scratch directory and upload the returned file once (one PUT: whole or absent).
    """
    path = os.path.join(out_dir, shard_name(shard))
    write_file_atomically(path, lambda f: write_tar(f, samples))
    return path


def sizes_json(sizes: Mapping[str, int]) -> bytes:
    """``{"00000.tar": n, ...}``: the sizes.json open_clip's ``get_dataset_size`` sums for
    ``--train-num-samples`` (keys are shard base names)."""
    for name in sizes:
        if os.path.basename(name) != name:
            raise ValueError(f"sizes.json keys are shard base names, got {name!r}")
    return (json.dumps({name: int(n) for name, n in sorted(sizes.items())}, indent=0) + "\n").encode()


def write_sizes(out_dir: str, sizes: Mapping[str, int]) -> str:
    """Write ``out_dir/sizes.json`` atomically; returns its path."""
    path = os.path.join(out_dir, SIZES_FILE)
    data = sizes_json(sizes)
    write_file_atomically(path, lambda f: f.write(data))
    return path
