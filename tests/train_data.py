"""Training input for the train tests: generated shards (kgcurate.train.sample) and the download_runs /
downloads rows that list them, written with deltalake in the tables' declared schemas (no Spark)."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pyarrow as pa

from kgcurate import tables
from kgcurate.download.shards import shard_name
from kgcurate.lake_rs import table_uri
from kgcurate.train.sample import write_shards


def record_download(lake: str, out: str, counts: dict[int, int], run_id: str = "download-1",
                    curated_run_id: str = "balance-abc") -> None:
    """The downloads rows of the shards' images, then the download_runs row listing the shards (deltalake), in
    the download stage's order: the run's row is written last, its ``finished_at`` after the rows'."""
    from deltalake import write_deltalake

    started = datetime.now(timezone.utc)
    rows = [{"curated_run_id": curated_run_id, "image_url": f"http://img.test/{s}-{i}.jpg", "shard": s,
             "key": f"{s:05d}{i:04d}", "status": "success", "attempts": 1, "download_run_id": run_id}
            for s, c in counts.items() for i in range(c)]
    write_deltalake(table_uri(lake, tables.DOWNLOADS),
                    pa.Table.from_pylist(rows, schema=tables.arrow_schema(tables.DOWNLOADS)), mode="append")
    run = {"run_id": run_id, "curated_run_id": curated_run_id, "curated_version": 3, "out": out,
           "params": [("shard_size", str(max(counts.values())))],
           "shards": [{"shard": s, "file": shard_name(s), "samples": c, "urls": c} for s, c in sorted(counts.items())],
           "urls": sum(counts.values()), "succeeded": sum(counts.values()), "success_rate": 1.0,
           "bytes": 0, "started_at": started, "finished_at": datetime.now(timezone.utc)}
    write_deltalake(table_uri(lake, tables.DOWNLOAD_RUNS),
                    pa.Table.from_pylist([run], schema=tables.arrow_schema(tables.DOWNLOAD_RUNS)), mode="append")


def make_input(root: str, n: int = 256, per_shard: int = 64, seed: int = 0) -> tuple[str, str]:
    """A lake and a shard folder under ``root`` holding one download of ``n`` generated samples."""
    lake, out = os.path.join(root, "lake"), os.path.join(root, "shards")
    record_download(lake, out, write_shards(out, n, per_shard, seed))
    return lake, out
