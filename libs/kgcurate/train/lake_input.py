"""What a training run reads of the lake, without Spark: the ``download_runs`` and ``downloads`` tables at
pinned Delta versions (``deltalake``, so a GPU node needs no JVM), and from them the shard list and the
sample count handed to open_clip's trainer.

A pinned version outlives its files: ``kgcurate maintain`` compacts ``download_runs`` and VACUUM removes
the old files after ``--vacuum-hours``, and Delta's log cleanup drops old versions after 30 days, while a
training run resumes from its manifest's version for as long as it runs. ``download_runs`` is append-only
(one row per completed download, appended last), so the rows a version held for a named download run are
the newest version's rows of that run's folder up to the run's own row: a resume gets them from there."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kgcurate.errors import UserError, first_line
from kgcurate.lake_rs import open_table

DOWNLOADS = "downloads"  # kgcurate.tables.DOWNLOADS / DOWNLOAD_RUNS (tables.py imports pyspark's types)
DOWNLOAD_RUNS = "download_runs"
RUN_COLUMNS = ["run_id", "curated_run_id", "out", "shards", "finished_at"]
log = logging.getLogger("kgcurate.train")


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
    runs, runs_version, rebuilt = _runs_at(lake, version, download_run_id)
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
    same = [r for r in runs if r["curated_run_id"] == chosen["curated_run_id"] and r["out"] == chosen["out"]
            and not (rebuilt and _after(r, chosen))]
    shards = merge_shards(r["shards"] or [] for r in sorted(same, key=lambda r: (r["finished_at"] is None,
                                                                                   r["finished_at"], r["run_id"])))
    newest = max(same, key=lambda r: (r["finished_at"] is not None, r["finished_at"], r["run_id"]))
    downloads_version, downloaded = _cross_check(lake, chosen["curated_run_id"], [s.shard for s in shards],
                                                 newest["finished_at"] if version is not None else None)
    return TrainInput(newest["run_id"], chosen["curated_run_id"], chosen["out"], shards, runs_version,
                      downloads_version, downloaded)


def _runs_at(lake: str, version: int | None, download_run_id: str | None) -> tuple[list[dict], int, bool]:
    """(``download_runs``' rows at ``version``, that version, whether they were rebuilt from the newest
    version): see the module docstring. Only a read naming its download run is rebuilt (a resume's); a bare
    ``--download-runs-version`` that is gone stays the one-line error."""
    try:
        table = open_table(lake, DOWNLOAD_RUNS, version)
        if table is None:
            raise UserError(f"no download_runs table in lake {lake}: run `kgcurate download --lake {lake}` first")
        return table.to_pyarrow_table(columns=RUN_COLUMNS).to_pylist(), table.version(), False
    except (UserError, OSError) as exc:  # the version's log (UserError) or files (FileNotFoundError) are gone
        if version is None or download_run_id is None:
            if isinstance(exc, OSError) and version is not None:
                raise UserError(f"download_runs version {version} in lake {lake} cannot be read "
                                f"({first_line(exc)[:200]}): its files may be vacuumed (kgcurate maintain); "
                                "pass --download-run-id too, or a newer version") from None
            raise
        newest = open_table(lake, DOWNLOAD_RUNS)
        if newest is None or version > newest.version():  # never written: not a vacuumed version
            raise
        rows = newest.to_pyarrow_table(columns=RUN_COLUMNS).to_pylist()
        if not any(r["run_id"] == download_run_id for r in rows):
            raise
        log.warning("download_runs version %d is no longer readable (%s); its rows of download run %s are "
                    "taken from version %d (the table is append-only)", version, first_line(exc)[:200],
                    download_run_id, newest.version())
        return rows, version, True


def _after(row: dict, run: dict) -> bool:
    """``row`` was appended after ``run``'s row (the version that listed ``run`` as its folder's newest did not
    hold it)."""
    return row["finished_at"] is not None and run["finished_at"] is not None and row["finished_at"] > run["finished_at"]


def _cross_check(lake: str, curated_run_id: str, shards: list[int], when: datetime | None
                 ) -> tuple[int | None, int | None]:
    """(``downloads``' version, its successes in ``shards``): now, or with ``when`` (a pinned read: its newest
    download run's end) as it stood then, since a later download of the same curated set (into another
    folder, say) rewrites its rows. (None, None) without the table, or when its state at ``when`` is no
    longer readable (vacuumed, or a log cleaned up): only the cross-check is lost."""
    dl = open_table(lake, DOWNLOADS)
    if dl is None:
        return None, None
    if when is None:
        return dl.version(), count_successes(dl, curated_run_id, shards)
    try:
        dl.load_as_version(when)
        return dl.version(), count_successes(dl, curated_run_id, shards)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.info("downloads as of %s is not readable (%s): no cross-check of the sample count", when,
                 first_line(exc)[:200])
        return None, None


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
