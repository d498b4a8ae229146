"""Parquet files written by Python tasks themselves, into a run's staging folder.

Why: a task that hands its rows to the JVM (``mapInArrow`` output) has the JVM turn every Arrow
row into a Spark row and encode it again, on the same cores that parse. For the ingest job that
was ~20% of the parse stage; pyarrow writes the same batch as Parquet in C++ for a fraction of
it, and Spark reads the folder back columnar. Only local paths and S3 (boto3, same endpoint and
credential chain as our reads) are written this way; :func:`supported` says so for a folder, and
callers keep the Spark route for anything else (hdfs://, gs://, ...).

Each call writes one whole file under a name the caller makes unique and deterministic (input
file number + batch number), so a retried task overwrites what a failed attempt left, and a
reader never sees half a file: local files are renamed into place, S3 objects are one PUT.
"""

from __future__ import annotations

import io
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from kgcurate import s3
from kgcurate.wat.inputs import strip_file_uri


def supported(folder: str) -> bool:
    """True when tasks can write Parquet into ``folder`` themselves (a local path or S3)."""
    return s3.is_s3(folder) or folder.startswith("file:") or "://" not in folder


def write_parquet(url: str, table: pa.Table) -> None:
    """Write ``table`` as one Parquet file at ``url`` (replacing any file of that name)."""
    if s3.is_s3(url):
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="snappy")
        _, bucket, key = s3.split_url(url)
        s3.client().put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
        return
    path = strip_file_uri(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
