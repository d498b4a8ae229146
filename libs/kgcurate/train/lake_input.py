"""What a training run reads of the lake, without Spark: the ``download_runs`` and ``downloads`` tables at
pinned Delta versions (``deltalake``, so a GPU node needs no JVM), and from them the shard list and the
sample count handed to open_clip's trainer."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from kgcurate.errors import UserError
from kgcurate.lake_rs import open_table

DOWNLOADS = "downloads"  # kgcurate.tables.DOWNLOADS / DOWNLOAD_RUNS (tables.py imports pyspark's types)
DOWNLOAD_RUNS = "download_runs"


@dataclass(frozen=True)
class Shard:
    shard: int
    file: str  # base name, 00042.tar
    samples: int


@dataclass(frozen=True)
class TrainInput:
    """The shards of one curated run's download and where they were read from."""

    download_run_id: str  # the newest run that wrote into the folder
    curated_run_id: str
    out: str  # the shard folder
    shards: tuple[Shard, ...]
    download_runs_version: int
    downloads_version: int | None  # None when the table is absent
    downloaded_samples: int | None  # successes in `downloads` for these shards (a cross-check)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def files(self) -> list[str]:
        return [join(self.out, s.file) for s in self.shards if s.samples > 0]


def join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if "://" in folder else os.path.join(folder, name)


def read_input(lake: str, download_run_id: str | None = None, version: int | None = None) -> TrainInput:
    """The shards to train on: those of ``download_run_id``'s curated run and folder (default: the newest
    download run), over every completed download run into that folder (a resumed or retried download
    lists its shards in several rows), as ``download_runs`` stood at ``version``."""
    runs_table = open_table(lake, DOWNLOAD_RUNS, version)
    if runs_table is None:
        raise UserError(f"no download_runs table in lake {lake}: run `kgcurate download --lake {lake}` first")
    runs = runs_table.to_pyarrow_table(columns=["run_id", "curated_run_id", "out", "shards", "finished_at"]).to_pylist()
    if not runs:
        raise UserError(f"download_runs in lake {lake} is empty: run `kgcurate download --lake {lake}` first")
    if download_run_id is None:
        chosen = max(runs, key=lambda r: (r["finished_at"] is not None, r["finished_at"], r["run_id"]))
    else:
        chosen = next((r for r in runs if r["run_id"] == download_run_id), None)
        if chosen is None:
            known = ", ".join(sorted(r["run_id"] for r in runs)[-3:])
            raise UserError(f"no download run {download_run_id!r} in lake {lake} (newest: {known}): pass one of "
                            "download_runs.run_id or leave --download-run-id out for the newest")
    same = [r for r in runs if r["curated_run_id"] == chosen["curated_run_id"] and r["out"] == chosen["out"]]
    shards = merge_shards(r["shards"] or [] for r in sorted(same, key=lambda r: (r["finished_at"] is None,
                                                                                   r["finished_at"], r["run_id"])))
    newest = max(same, key=lambda r: (r["finished_at"] is not None, r["finished_at"], r["run_id"]))
    downloads_version, downloaded = None, None
    dl = open_table(lake, DOWNLOADS)
    if dl is not None:
        downloads_version = dl.version()
        downloaded = count_successes(dl, chosen["curated_run_id"], [s.shard for s in shards])
    return TrainInput(newest["run_id"], chosen["curated_run_id"], chosen["out"], shards, runs_table.version(),
                      downloads_version, downloaded)


def merge_shards(lists: Iterable[Iterable[dict]]) -> tuple[Shard, ...]:
    """One entry per shard over several runs' shard lists, a later list winning (a rerun replaced it)."""
    by_shard: dict[int, Shard] = {}
    for rows in lists:
        for r in rows:
            by_shard[int(r["shard"])] = Shard(int(r["shard"]), str(r["file"]), int(r["samples"] or 0))
    return tuple(by_shard[s] for s in sorted(by_shard))


def count_successes(table, curated_run_id: str, shards: list[int]) -> int:
    """Rows of ``downloads`` stored (status success) in ``shards`` for the curated run."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    data = table.to_pyarrow_dataset()
    expr = ((ds.field("curated_run_id") == curated_run_id) & (ds.field("status") == "success")
            & ds.field("shard").isin(shards))
    return int(pc.count(data.to_table(columns=["shard"], filter=expr)["shard"]).as_py())


def brace_list(files: list[str]) -> str:
    """open_clip's ``--train-data``: consecutive shard names of one folder as a brace range
    (``/out/{00000..00041}.tar``), groups joined with ``::``, so 100,000 shards stay a short argument."""
    groups: list[tuple[str, str, str]] = []  # (folder, first stem, last stem)
    for path in files:
        folder, name = os.path.split(path)
        stem = name.removesuffix(".tar")
        if groups and name.endswith(".tar") and _follows(groups[-1], folder, stem):
            groups[-1] = (folder, groups[-1][1], stem)
        else:
            groups.append((folder, stem, stem) if name.endswith(".tar") else (folder, name, ""))
    return "::".join(join(f, f"{a}.tar" if a == b else f"{{{a}..{b}}}.tar") if b else join(f, a)
                     for f, a, b in groups)


def _follows(group: tuple[str, str, str], folder: str, stem: str) -> bool:
    """``stem`` is the next number after the group's last, same folder and width."""
    g_folder, first, last = group
    return (g_folder == folder and stem.isdigit() and last.isdigit() and len(stem) == len(first)
            and int(stem) == int(last) + 1)
