"""Task-side Parquet writes: where they are allowed, whole files only, replaced on a retry."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from kgcurate import staging


def test_supported_folders() -> None:
    assert staging.supported("/tmp/lake/_staging/r1/pairs")
    assert staging.supported("file:/tmp/lake/_staging")
    assert staging.supported("s3a://bucket/lake/_staging") and staging.supported("s3://bucket/x")
    assert not staging.supported("hdfs://nn/lake/_staging")
    assert not staging.supported("gs://bucket/lake/_staging")


def test_write_replaces_and_leaves_no_temporary_file(tmp_path) -> None:
    target = tmp_path / "pairs" / "part-000001-00000.parquet"
    staging.write_parquet(f"file:{target}", pa.table({"x": [1, 2, 3]}))
    staging.write_parquet(str(target), pa.table({"x": [4, 5]}))  # a retried task writes the same name
    assert pq.read_table(target).column("x").to_pylist() == [4, 5]
    assert [p.name for p in target.parent.iterdir()] == [target.name]
