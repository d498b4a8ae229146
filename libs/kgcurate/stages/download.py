"""``kgcurate download``: one curated run's images -> webdataset shards, ``downloads``, ``download_runs``.

The img2dataset step, done on the lake. The curated pairs of one run (``--run-id``, default the
newest) are grouped by image URL: one sample per image, carrying every curated text of it and, when
``pair_texts`` holds them, the knowledge-graph texts of its pairs. A URL's shard is a hash of the
curated run and the URL (``xxhash64``, a Spark expression), so a rerun writes the same shard names.

One Spark task per shard (:func:`kgcurate.download.shard_task.download_shard`): polite fetching (an
identifying User-Agent, opt-out headers honoured and recorded as a status, a per-host cap and delay,
retries with backoff only for timeouts, 429 and 5xx, private addresses refused), validation with
Pillow, resizing, and a tar written whole under its final name (local: temp + rename; S3: one upload).

Commit order: every task's rows are staged as Parquet, then MERGEd into ``downloads`` on (curated run,
image URL), then the run's row with its shard list goes into ``download_runs``, then ``sizes.json``.
A shard counts as done only once a ``download_runs`` row lists it, so a run killed at any point is
redone shard by shard, never half; a URL has one row whatever the reruns. So that a run killed at 99%
(preemption, a driver lost) is not redone from zero, each task also leaves its shard's rows in a resume
folder of the lake's staging (:func:`resume_folder`, keyed by the curated run, the folder and the
layout) right after the tar: the next plain run takes a shard whose tar and rows are both there as
downloaded when the tar has the size the rows were written beside, MERGEs its rows under its own run id
and lists it in its ``download_runs`` row. ``--retry-failed`` puts the
URLs that failed with a retryable status (timeouts, connection errors, 429, 5xx) into new shards
(numbered after the existing ones); it marks the folder while it runs (``.<run id>.retry``), so that
the next ``--retry-failed`` redoes the URLs of one killed after its MERGE.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from kgcurate import leases, s3, settings, tables, units
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError

JOB = "download"
log = logging.getLogger(f"kgcurate.{JOB}")
# Statuses worth another try later (the server or the network, not the content).
RETRYABLE = ("status IN ('timeout', 'connection_error') "
             "OR (status = 'http_error' AND (http_status = 429 OR http_status >= 500))")


@dataclass
class DownloadSummary(Summary):
    """One download run: shards (done before, run now), images tried and stored, statuses, where the
    shards and ``sizes.json`` are. ``urls`` is 0 when nothing was left to download."""

    run_id: str
    curated_run_id: str
    out: str
    images: int = 0
    shards_done_before: int = 0
    shards: int = 0
    shards_resumed: int = 0  # of ``shards``: downloaded by a killed run, taken from the resume folder
    urls: int = 0
    succeeded: int = 0
    success_rate: float | None = None
    counts: dict[str, int] = field(default_factory=dict)  # downloads per status
    bytes: int = 0
    seconds: float = 0.0
    sizes: str = ""  # the sizes.json written
    low_success: bool = False
    min_success_rate: float | None = None


# ---------------------------------------------------------------- planning (driver)


def out_folder(out: str) -> str:
    """Where shards go: ``s3://bucket/prefix`` or a local absolute path (:func:`kgcurate.s3.output_folder`)."""
    return s3.output_folder(out, f"download --out {out}: shards go to a local folder or s3://bucket/prefix")


def check_user_agent(user_agent: str | None) -> None:
    """A User-Agent no request can carry is refused up front: every URL of the run would fail with it."""
    from kgcurate.download.policy import user_agent_problem

    problem = user_agent_problem(user_agent) if user_agent else None
    if problem:
        raise UserError(f"download --user-agent {user_agent!r}: {problem}: pass a one-line User-Agent in plain "
                        "ASCII, e.g. 'AcmeResearch/1.0 (+https://acme.example)'")


def samples_of(ctx: Context, curated: DataFrame) -> DataFrame:
    """(image_url, text, texts) per distinct image URL of a curated set: ``text`` the smallest curated
    text (the primary one), ``texts`` every text of its pairs, from ``pair_texts`` when it has them."""
    own = curated.select("pair_id", "image_url", "text")
    alt = own.select("pair_id", "text", F.lit("alt").alias("text_source"), F.lit(None).cast("string").alias("qid"),
                     F.lit(None).cast("string").alias("language"))
    if ctx.lake.exists(tables.PAIR_TEXTS):
        kg = (ctx.lake.read(tables.PAIR_TEXTS).join(own.select("pair_id"), "pair_id", "left_semi")
              .select("pair_id", "text", "text_source", "qid", "language"))
        # pairs pair_texts knows keep its rows (own text with its real source, KG texts); others get "alt"
        texts = kg.unionByName(alt.join(kg.select("pair_id").distinct(), "pair_id", "left_anti"))
    else:
        texts = alt
    per_url = (texts.join(own.select("pair_id", "image_url"), "pair_id")
               .groupBy("image_url")
               .agg(F.array_sort(F.collect_set(F.struct("text", "text_source", "qid", "pair_id", "language")))
                    .alias("texts")))
    primary = own.groupBy("image_url").agg(F.min("text").alias("text"))
    return primary.join(per_url, "image_url", "left")


def folder_runs(ctx: Context, out: str) -> list[dict[str, Any]]:
    """The completed download runs into ``out`` (run_id, curated_run_id, finished_at, params, shards): a
    few rows per folder, read once for the folder check, the shards done and the failures to retry."""
    if not ctx.lake.exists(tables.DOWNLOAD_RUNS):
        return []
    rows = (ctx.lake.read(tables.DOWNLOAD_RUNS).where(F.col("out") == out)
            .select("run_id", "curated_run_id", "finished_at", "params", "shards").collect())
    return [r.asDict(recursive=True) for r in rows]


def check_own_folder(runs: list[dict[str, Any]], curated_run_id: str, out: str) -> None:
    """A folder holds one curated run's shards: another run's download would overwrite its ``00000.tar``...
    under the same names, and training on the first run would read the second's images."""
    other = sorted((r for r in runs if r["curated_run_id"] != curated_run_id), key=lambda r: str(r["finished_at"]))
    if other:
        raise UserError(f"{out} holds the shards of curated run {other[-1]['curated_run_id']} (download run "
                        f"{other[-1]['run_id']}): pass a new --out for curated run {curated_run_id}")


def committed_shards(runs: list[dict[str, Any]], curated_run_id: str) -> dict[int, dict[str, Any]]:
    """Shards a completed run of this curated set wrote into the folder (``runs``: :func:`folder_runs`):
    shard -> its row (file, samples, the run's params)."""
    return {s["shard"]: {**s, "params": r["params"]} for r in runs if r["curated_run_id"] == curated_run_id
            for s in r["shards"] or []}


# The params (as download_runs records them) every shard of a folder shares: another shard size renumbers
# the hash shards, another image size or resize mode mixes image sizes in one training set.
LAYOUT = (("shard_size", "--shard-size"), ("image_size", "--image-size"), ("resize_mode", "--resize-mode"))


def check_same_layout(done: dict[int, dict[str, Any]], o: settings.DownloadOptions, out: str) -> None:
    """A resume or ``--retry-failed`` with another :data:`LAYOUT` param than the folder's shards is refused
    (params a run older than the key did not record are not compared)."""
    for key, flag in LAYOUT:
        now = str(getattr(o, key))
        before = {r["params"][key] for r in done.values() if r["params"] and key in r["params"]}
        if before and before != {now}:
            raise UserError(f"shards in {out} were made with {flag} {sorted(before)[0]}, not {now}: use the same "
                            f"{flag} to resume or retry, or a new --out")


def opt_out_before(done: dict[int, dict[str, Any]], o: settings.DownloadOptions) -> str | None:
    """The ``--opt-out`` list the folder's shards were made with, when this run's differs (as a set): a
    resume or retry keeps what was stored under the old list and applies the new one to the rest, so the
    folder mixes the two. None when the same, or not recorded."""
    now = {t for t in o.opt_out if t}
    before = {r["params"]["opt_out"] for r in done.values() if r["params"] and "opt_out" in r["params"]}
    changed = sorted(b for b in before if {t for t in b.split(",") if t} != now)
    return changed[0] if changed else None


def check_shard_numbers(shards: list[int], out: str) -> None:
    """Sample keys give a shard 5 digits: a set that needs shard 100,000 or more (about 900M images, or
    many --retry-failed rounds) is refused before any download, not failed task by task."""
    from kgcurate.download.shards import MAX_SHARDS

    if shards and shards[-1] >= MAX_SHARDS:
        raise UserError(f"download into {out} would need shard {shards[-1]:,}, past the {MAX_SHARDS:,} that 5-digit "
                        "sample keys allow: download the curated run in parts (--run-id of smaller curated runs)")


def shard_count(images: int, shard_size: int) -> int:
    """Shards for ``images`` hashed ones: a mean of 90% of ``shard_size`` per shard, so that the hash's
    spread (a few standard deviations are ~100 images at 10,000) never overflows a shard's 10,000 keys."""
    return max(1, math.ceil(images / (0.9 * shard_size)))


def _digest(*parts: str) -> str:
    import hashlib

    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


def _resume_prefix(curated_run_id: str, out: str) -> str:
    return f"{JOB}-resume-{_digest(curated_run_id, out)}"


def resume_folder(root: str, curated_run_id: str, out: str, o: settings.DownloadOptions, n_shards: int) -> str | None:
    """Where a plain run's tasks leave each shard's rows as they finish (see the module docstring): the
    lake's staging, named by the curated run and folder, then by what makes a shard's contents (shard size
    and count, image size, resize mode, opt-out list), so a run with another layout never takes them. None
    where tasks cannot write Parquet themselves (an hdfs:// lake, say): such a lake redoes a killed run whole."""
    from kgcurate import lake, staging

    layout = _digest(str(o.shard_size), str(n_shards), str(o.image_size), o.resize_mode, ",".join(sorted(o.opt_out)))
    name = f"{_resume_prefix(curated_run_id, out)}-{layout}"
    folder = lake.staging_path(root, name)
    return folder if staging.supported(folder) else None


def resume_file(folder: str, shard: int, tar_bytes: int) -> str:
    """A shard's rows, named with the size of the tar they were written beside: a tar written since (another
    layout's run into the same folder, a task retry killed before its rows) has another size, almost surely."""
    return f"{folder}/{shard:05d}.{tar_bytes}.parquet"


def _local(folder: str) -> str:
    from kgcurate.wat.inputs import strip_file_uri

    return folder if s3.is_s3(folder) else strip_file_uri(folder)


def forget_shard(folder: str, shard: int) -> None:
    """Remove a shard's rows from the resume folder before its task writes the tar again (a task retry)."""
    for name in _names(_local(folder), f"{shard:05d}."):
        _remove(f"{_local(folder)}/{name}")


def resumable(folder: str | None, out: str, shards: list[int]) -> dict[int, str]:
    """Of ``shards`` (not done), those a killed run finished: shard -> its rows' file in the resume ``folder``,
    where the tar of that name and size is in ``out`` (a tar is written whole before its rows)."""
    from kgcurate.download.shards import shard_name

    if folder is None or not shards:
        return {}
    rows: dict[int, tuple[int, str]] = {}
    for name in _names(_local(folder), ""):
        parts = name.split(".")
        if len(parts) == 3 and parts[2] == "parquet" and parts[0].isdigit() and parts[1].isdigit():
            rows[int(parts[0])] = (int(parts[1]), f"{folder}/{name}")
    tars = _sizes(out, "") if rows else {}
    return {s: rows[s][1] for s in shards if s in rows and tars.get(shard_name(s)) == rows[s][0]}


def remove_resume_folders(ctx: Context, curated_run_id: str, out: str) -> None:
    """Every resume folder of this curated run and ``out`` (any layout): once a run is recorded its shards are
    done, and a folder of another layout could only pair old rows with tars rewritten since."""
    from kgcurate import lake

    fs, pattern = lake.hadoop_fs(ctx.spark, lake.staging_path(ctx.root, f"{_resume_prefix(curated_run_id, out)}-*"))
    for status in fs.globStatus(pattern) or []:
        fs.delete(status.getPath(), True)


RETRY_MARK = ".retry"  # OUT/.<run id>.retry: a --retry-failed run into OUT under way, or killed


def retry_mark(out: str, run_id: str) -> str:
    return f"{out}/.{run_id}{RETRY_MARK}"


def _put(path: str, data: bytes) -> None:
    """A small file in the output folder, local (whole or absent) or on S3 (one PUT)."""
    from kgcurate.download.shards import write_file_atomically

    if s3.is_s3(path):
        _, bucket, key = s3.split_url(path)
        s3.client().put_object(Bucket=bucket, Key=key, Body=data)
    else:
        write_file_atomically(path, lambda f: f.write(data))


def _names(folder: str, start: str) -> list[str]:
    """The names directly in an output folder, local or on S3, that begin with ``start`` (on S3 only those
    are listed, not every shard)."""
    return list(_sizes(folder, start))


def _sizes(folder: str, start: str) -> dict[str, int]:
    """:func:`_names` with each file's size in bytes."""
    if s3.is_s3(folder):
        _, bucket, prefix = s3.split_url(f"{folder}/")
        sizes = s3.list_sizes(bucket, prefix + start)
        return {k[len(prefix):]: n for k, n in sizes.items() if "/" not in k[len(prefix):]}
    if not os.path.isdir(folder):
        return {}
    return {e.name: e.stat().st_size for e in os.scandir(folder) if e.name.startswith(start) and e.is_file()}


def _remove(path: str) -> None:
    if s3.is_s3(path):
        _, bucket, key = s3.split_url(path)
        s3.client().delete_object(Bucket=bucket, Key=key)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def mark_retry(out: str, run_id: str) -> None:
    """Say in the folder, before any row is MERGEd, that ``run_id`` retries into it: ``downloads`` rows
    do not name their folder, and a run killed between its MERGE and its ``download_runs`` row has
    nothing else that ties its rows (and the URLs they hold) to this folder."""
    _put(retry_mark(out, run_id), b"")


def marked_retries(out: str) -> set[str]:
    """The run ids of the retry marks in ``out`` (:func:`mark_retry`)."""
    return {n[1:-len(RETRY_MARK)] for n in _names(out, ".") if n.endswith(RETRY_MARK) and len(n) > 1 + len(RETRY_MARK)}


def unmark_retries(out: str, run_ids: list[str]) -> None:
    """Remove the marks of runs whose rows a recorded run now holds (or that left no rows)."""
    for run_id in run_ids:
        _remove(retry_mark(out, run_id))


def killed_retries(out: str, runs: list[str]) -> list[str]:
    """``--retry-failed`` runs into ``out`` that never wrote their ``download_runs`` row (``runs``: the
    completed ones): their rows, failed or stored in a shard no run lists, are retried again."""
    completed = set(runs)
    return sorted(r for r in marked_retries(out) if r not in completed)


def plan(ctx: Context, samples: DataFrame, curated_run_id: str, n_urls: int, o: settings.DownloadOptions,
         done: dict[int, dict[str, Any]], runs: list[str], killed: list[str] | None = None) -> DataFrame:
    """(shard, image_url, text, texts): the samples with their shard (shards already done included: which
    of them to skip is :func:`kgcurate.units.plan`'s); with ``--retry-failed`` the retryable failures
    of ``runs`` (the completed runs into this folder), and every row of ``killed`` (:func:`killed_retries`),
    in new shards numbered after the ``done`` ones.

    ``downloads`` holds a URL's newest outcome: a failure recorded by a download into another folder, or by
    a plain run killed before its ``download_runs`` row (its hash shards are redone by the next plain run),
    is not this folder's to retry: retrying it stored images the folder already held a second time. A
    killed retry into this folder is: its rows moved its URLs out of the failures of ``runs``, and those
    it stored lie in a shard no ``download_runs`` row lists, so nothing else would ever redo them."""
    n_shards = shard_count(n_urls, o.shard_size)
    if not o.retry_failed:
        shard_of = F.pmod(F.xxhash64(F.lit(curated_run_id), F.col("image_url")), F.lit(n_shards)).cast("int")
        return samples.withColumn("shard", shard_of)
    if not ctx.lake.exists(tables.DOWNLOADS):
        return samples.limit(0).withColumn("shard", F.lit(0))
    failed = (ctx.lake.read(tables.DOWNLOADS)
              .where((F.col("curated_run_id") == curated_run_id)
                     & ((F.expr(RETRYABLE) & F.col("download_run_id").isin(runs))
                        | F.col("download_run_id").isin(killed or [])))
              .select("image_url"))
    n_failed = failed.count()
    if not n_failed:
        return samples.limit(0).withColumn("shard", F.lit(0))
    first = max([*done, n_shards - 1]) + 1
    k = shard_count(n_failed, o.shard_size)
    # ~n/k per shard: a hash over k shards numbered after the existing ones
    shard_of = (F.lit(first) + F.pmod(F.xxhash64(F.lit(f"{curated_run_id}/retry{first}"), F.col("image_url")),
                                      F.lit(k))).cast("int")
    return samples.join(failed, "image_url", "left_semi").withColumn("shard", shard_of)


# ---------------------------------------------------------------- the tasks


def download_config(o: settings.DownloadOptions) -> Any:
    from kgcurate.download.fetch import FetchConfig
    from kgcurate.download.images import ImageConfig
    from kgcurate.download.policy import OptOut, RetryPolicy, user_agent_tokens
    from kgcurate.download.shard_task import DownloadConfig

    fetch = FetchConfig(connect_timeout=o.timeout, read_timeout=o.timeout, max_redirects=o.max_redirects,
                        max_bytes=o.max_bytes, allow_private=o.allow_private,
                        opt_out=OptOut(tuple(o.opt_out), user_agent_tokens(o.user_agent)),
                        retry=RetryPolicy(max_attempts=o.attempts))
    if o.user_agent:
        fetch = dataclasses.replace(fetch, user_agent=o.user_agent)
    image = ImageConfig(image_size=o.image_size, resize_mode=o.resize_mode, max_pixels=o.max_pixels)
    return DownloadConfig(fetch=fetch, image=image, threads=o.threads, max_per_host=o.max_per_host,
                          host_min_interval=o.host_delay)


def rows_schema() -> pa.Schema:
    from kgcurate.download.shard_task import DOWNLOAD_ROWS

    return pa.schema([pa.field("curated_run_id", pa.string(), False), *DOWNLOAD_ROWS,
                      pa.field("download_run_id", pa.string())])


def shard_task(out: str, curated_run_id: str, run_id: str, config: Any, accs: tuple, resume: str | None = None):
    """The mapInArrow function: (shard, samples) rows -> ``downloads`` rows, one shard at a time; each shard's
    rows also go to the ``resume`` folder (:func:`resume_folder`) once its tar is written."""
    schema = rows_schema()

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from kgcurate.download.shard_task import download_shard

        for batch in batches:
            for shard, samples in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if resume is not None:
                    forget_shard(resume, shard)  # an earlier attempt's rows, before this attempt's tar
                local = tempfile.mkdtemp(prefix="kgcurate-shard-") if s3.is_s3(out) else out
                try:
                    result = download_shard(samples, shard, local, config)
                    tar_bytes = os.path.getsize(result.tar_path)
                    if s3.is_s3(out):
                        _, bucket, key = s3.split_url(f"{out}/{os.path.basename(result.tar_path)}")
                        s3.client().upload_file(result.tar_path, bucket, key)  # one object, whole
                finally:
                    if local != out:
                        shutil.rmtree(local, ignore_errors=True)
                accs[0].add(len(result.rows))  # tried
                accs[1].add(result.samples)  # stored
                accs[2].add(result.bytes)
                table = result.rows_table()
                n = table.num_rows
                table = table.add_column(0, schema.field(0), pa.array([curated_run_id] * n, pa.string()))
                table = table.append_column(schema.field(schema.get_field_index("download_run_id")),
                                            pa.array([run_id] * n, pa.string())).cast(schema)
                if resume is not None:
                    from kgcurate.staging import write_parquet

                    write_parquet(resume_file(resume, shard, tar_bytes), table)
                yield from table.to_batches()

    return run


# ---------------------------------------------------------------- the job


def write_sizes(out: str, sizes: dict[str, int]) -> str:
    from kgcurate.download.shards import SIZES_FILE, sizes_json

    path = f"{out}/{SIZES_FILE}"
    _put(path, sizes_json(sizes))
    return path


def curated_run(ctx: Context, run_id: str | None) -> str:
    """The curated run to download: ``run_id`` or the newest recorded one (a one-line error when none)."""
    from kgcurate.stages import balance

    run = balance.latest_run(ctx.spark, ctx.root, run_id)
    if run is None:
        raise UserError(f"no curated run {'named ' + repr(run_id) + ' ' if run_id else ''}in lake {ctx.root}: "
                        f"run `kgcurate balance --lake {ctx.root}` first (see `kgcurate curated list`)")
    return str(run["run_id"])


def progress_line(o: settings.DownloadOptions, shards: int, accs: tuple, started: float, done: int) -> str:
    """Shards done of total, images tried and their success rate (warned under the floor), rate, bytes."""
    secs = max(time.monotonic() - started, 1e-9)
    tried, ok = accs[0].value, accs[1].value
    rate = f"{ok / tried:.0%}" if tried else "-"
    low = (f" -- WARNING: success rate under the floor of {o.min_success_rate:.0%}"
           if tried and ok / tried < o.min_success_rate else "")
    return (f"{JOB}: {done}/{shards} shards, {tried:,} images ({rate} ok), "
            f"{tried / secs:.1f} images/s, {accs[2].value / 1e6:.1f} MB{low}")


def run_shards(ctx: Context, todo: DataFrame, shards: int, o: settings.DownloadOptions, out: str,
               curated_run_id: str, run_id: str, resume: str | None = None,
               resumed: dict[int, str] | None = None) -> tuple[dict[int, dict[str, Any]], dict[str, int]]:
    """One task per shard, rows staged then MERGEd into ``downloads`` with those of the ``resumed`` shards (a
    killed run's, from ``resume``, taken as this run's); per-shard stats and status counts."""
    grouped = todo.groupBy("shard").agg(F.collect_list(F.struct("image_url", "text", "texts")).alias("samples"))
    sc = ctx.spark.sparkContext
    accs = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))  # shards done: Spark's task counts
    line = functools.partial(progress_line, o, shards, accs, time.monotonic())
    with ctx.staging(run_id) as staging:
        if shards:
            fn = shard_task(out, curated_run_id, run_id, download_config(o), accs, resume)
            ctx.run_units(grouped, fn, tables.from_arrow(rows_schema()), f"{staging}/rows", line,
                          o.progress_interval, key="shard", count=shards)
            rows = ctx.spark.read.parquet(f"{staging}/rows")
        else:
            rows = ctx.spark.createDataFrame([], tables.from_arrow(rows_schema()))
        if resumed:
            earlier = (ctx.spark.read.schema(tables.from_arrow(rows_schema())).parquet(*resumed.values())
                       .withColumn("download_run_id", F.lit(run_id)))
            rows = rows.unionByName(earlier)
        ctx.lake.merge(tables.DOWNLOADS, rows, "t.curated_run_id = s.curated_run_id AND t.image_url = s.image_url",
                       matched_update_when="true")
        ok_rows = F.sum(F.when(F.col("status") == "success", 1).otherwise(0)).alias("samples")
        per_shard = rows.groupBy("shard").agg(F.count("*").alias("urls"), ok_rows,
                                              F.sum(F.coalesce("bytes", F.lit(0))).alias("bytes"))
        stats = {r["shard"]: r.asDict() for r in per_shard.collect()}  # one row per shard
        counts = {r["status"]: r["count"] for r in rows.groupBy("status").count().collect()}
    return stats, counts


def record_run(ctx: Context, run_id: str, curated_run_id: str, curated_version: int | None, out: str,
               o: settings.DownloadOptions, stats: dict[int, dict[str, Any]], started: datetime) -> None:
    """The ``download_runs`` row, written last: its shard list is what makes those shards done."""
    from kgcurate.download.shards import shard_name

    urls = sum(int(r["urls"]) for r in stats.values())
    ok = sum(int(r["samples"]) for r in stats.values())
    shard_rows = [(s, shard_name(s), int(stats[s]["samples"]), int(stats[s]["urls"])) for s in sorted(stats)]
    params = {"shard_size": str(o.shard_size), "image_size": str(o.image_size), "resize_mode": o.resize_mode,
              "opt_out": ",".join(o.opt_out), "retry_failed": str(o.retry_failed).lower()}
    record = ctx.spark.createDataFrame(
        [(run_id, curated_run_id, curated_version, out, params, shard_rows, urls, ok, ok / urls if urls else None,
          sum(int(r["bytes"]) for r in stats.values()), started, datetime.now(timezone.utc))],
        tables.schema(tables.DOWNLOAD_RUNS))
    ctx.lake.append(tables.DOWNLOAD_RUNS, record)


def execute(ctx: Context, cfg: dict[str, Any]) -> DownloadSummary:
    from kgcurate.download.shards import remove_stale_temps, shard_name

    o = settings.section(cfg, settings.DownloadOptions)
    out = out_folder(o.out)
    check_user_agent(o.user_agent)  # also here for callers without prepare: before Spark starts
    curated_run_id = curated_run(ctx, o.run_id)
    if not s3.is_s3(out):
        os.makedirs(out, exist_ok=True)
    run_id = ctx.new_run_id()
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    summary = DownloadSummary(run_id=run_id, curated_run_id=curated_run_id, out=out)
    with leases.held(ctx.root, JOB, run_id):
        stale = [] if s3.is_s3(out) else remove_stale_temps(out)  # S3 shards are single uploads: no temps
        if stale:
            ctx.log.info("%s: removed %d unfinished shard temp files a killed run left in %s", JOB, len(stale), out)
        curated_version = ctx.lake.version(tables.CURATED)
        samples = samples_of(ctx, ctx.lake.read(tables.CURATED).where(F.col("run_id") == curated_run_id))
        n_urls = samples.count()
        runs = folder_runs(ctx, out)
        check_own_folder(runs, curated_run_id, out)
        done = committed_shards(runs, curated_run_id)
        check_same_layout(done, o, out)
        was = opt_out_before(done, o)
        if was is not None:
            ctx.log.warning("%s: shards in %s were made with --opt-out %s, this run honours %s: the images stored "
                            "before stay as they are; download into a new --out to apply one list to the whole set",
                            JOB, out, was or '""', ",".join(o.opt_out) or '""')
        run_ids = [r["run_id"] for r in runs]
        killed = killed_retries(out, run_ids) if o.retry_failed else []
        if killed:
            ctx.log.info("%s: retrying again the URLs of %d killed --retry-failed run(s) into %s: %s", JOB,
                         len(killed), out, ", ".join(killed))
        assigned = plan(ctx, samples, curated_run_id, n_urls, o, done, run_ids, killed)
        every = sorted(r[0] for r in assigned.select("shard").distinct().collect())  # one per shard: small
        shards = units.plan(every, {str(s) for s in done}, key=str).todo  # skip the shards done
        resume = None if o.retry_failed else resume_folder(ctx.root, curated_run_id, out, o,
                                                             shard_count(n_urls, o.shard_size))
        resumed = resumable(resume, out, shards)
        if resumed:
            ctx.log.info("%s: %d of %d shards were downloaded by a killed run (tar and rows there): taken as "
                         "they are", JOB, len(resumed), len(shards))
        fetch = [s for s in shards if s not in set(resumed)]
        todo = assigned.where(F.col("shard").isin(fetch)) if len(fetch) < len(every) else assigned
        check_shard_numbers(shards, out)
        summary.images, summary.shards_done_before, summary.shards = n_urls, len(done), len(shards)
        summary.shards_resumed = len(resumed)
        if not shards:
            ctx.log.info("%s: nothing to download for curated run %s (%d shards done)", JOB, curated_run_id, len(done))
            unmark_retries(out, killed)  # no row names them any more (another folder's run took their URLs)
            remove_resume_folders(ctx, curated_run_id, out)  # one a run killed after its record left
            summary.sizes = write_sizes(out, {shard_name(s): int(r["samples"] or 0) for s, r in done.items()})
            return summary
        if o.retry_failed:
            mark_retry(out, run_id)
        stats, counts = run_shards(ctx, todo, len(fetch), o, out, curated_run_id, run_id, resume, resumed)
        record_run(ctx, run_id, curated_run_id, curated_version, out, o, stats, started)
        if o.retry_failed:
            unmark_retries(out, [run_id, *killed])  # their rows are this run's now, its shards listed
        remove_resume_folders(ctx, curated_run_id, out)  # every shard listed now (a crash's: maintain's staging)
    urls = sum(int(r["urls"]) for r in stats.values())
    ok = sum(int(r["samples"]) for r in stats.values())
    per_shard = {**{s: r["samples"] for s, r in done.items()}, **{s: stats[s]["samples"] for s in stats}}
    summary.urls, summary.succeeded, summary.success_rate = urls, ok, ok / urls if urls else None
    summary.counts, summary.bytes = counts, sum(int(r["bytes"]) for r in stats.values())
    summary.seconds = round(time.monotonic() - t0, 2)
    summary.sizes = write_sizes(out, {shard_name(s): int(n or 0) for s, n in sorted(per_shard.items())})
    summary.low_success = bool(urls and ok / urls < o.min_success_rate)
    summary.min_success_rate = o.min_success_rate
    return summary


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """An output nothing could write (a file, an S3 folder without credentials) is refused before Spark
    starts, not after the downloads it was to store. An ``--opt-out`` list without ``noai``/``noimageai``
    is warned about here, at the start: the flag replaces the defaults, it does not add to them."""
    from kgcurate.download.policy import defaults_left_out

    o = settings.section(cfg, settings.DownloadOptions)
    out = out_folder(o.out)
    check_user_agent(o.user_agent)
    if s3.is_s3(out):
        s3.require_credentials(out)
    missing = defaults_left_out(o.opt_out)
    if missing:
        log.warning("%s: --opt-out %s leaves out %s: images whose X-Robots-Tag says %s are downloaded; pass "
                    "--opt-out %s to honour them too", JOB, ",".join(o.opt_out) or '""', ", ".join(missing),
                    " or ".join(missing), ",".join([*missing, *o.opt_out]))
    return {}


def report(s: DownloadSummary, args: argparse.Namespace) -> int:
    if not s.urls:
        print(f"{JOB}: curated run {s.curated_run_id}: nothing to download ({s.shards_done_before} shards done, "
              f"{s.images:,} images); sizes {s.sizes}")
        return 0
    counts = ", ".join(f"{k}={v:,}" for k, v in sorted(s.counts.items()))
    resumed = f" ({s.shards_resumed} taken from a killed run)" if s.shards_resumed else ""
    print(f"{JOB} {s.run_id}: curated run {s.curated_run_id}: {s.shards} shards{resumed}, {s.urls:,} images tried, "
          f"{s.succeeded:,} stored ({s.success_rate:.1%}; {counts}), {s.bytes / 1e6:.1f} MB in "
          f"{s.seconds}s -> {s.out} (sizes {s.sizes})")
    if s.low_success:
        print(f"kgcurate: warning: only {s.success_rate:.1%} of downloads succeeded (floor "
              f"{s.min_success_rate:.0%}): see table downloads for the statuses; `kgcurate download "
              "--retry-failed` tries timeouts, connection errors, 429 and 5xx again", file=sys.stderr)
    return 0
