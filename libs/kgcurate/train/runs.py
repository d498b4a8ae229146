"""The ``train_runs`` table, written with ``deltalake`` (no Spark on a GPU node): one row per experiment,
MERGEd on ``train_run_id`` so a resume updates its row and a rerun never adds one."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import metadata

import pyarrow as pa

from kgcurate import lease_rules
from kgcurate.lake_rs import open_table, storage_options, table_uri
from kgcurate.train.experiment import Manifest

PACKAGES = ("kgcurate", "torch", "torchvision", "open_clip_torch", "webdataset", "deltalake", "numpy", "pillow",
            "pyarrow")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def row_of(m: Manifest) -> dict:
    def ts(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return {"train_run_id": m.train_run_id, "curated_run_id": m.curated_run_id, "download_run_id": m.download_run_id,
            "downloads_version": m.downloads_version, "download_runs_version": m.download_runs_version,
            "model": m.model, "args": json.dumps(m.args), "packages": json.dumps(m.packages, sort_keys=True),
            "samples_seen": m.samples_seen, "steps": m.steps, "final_loss": m.final_loss, "checkpoint": m.checkpoint,
            "experiment_dir": m.experiment_dir, "status": m.status, "started_at": ts(m.started_at),
            "finished_at": ts(m.finished_at)}


def record(lake: str, name: str, schema: pa.Schema, m: Manifest) -> int:
    """Insert or update the experiment's row in one commit; the table's new version."""
    from deltalake import write_deltalake

    lease_rules.check_not_lost()
    source = pa.Table.from_pylist([row_of(m)], schema=schema)
    table = open_table(lake, name)
    if table is None:
        uri = table_uri(lake, name)
        write_deltalake(uri, source, mode="append", storage_options=storage_options(uri))
    else:
        (table.merge(source, "t.train_run_id = s.train_run_id", source_alias="s", target_alias="t")
         .when_matched_update_all().when_not_matched_insert_all().execute())
    return open_table(lake, name).version()
