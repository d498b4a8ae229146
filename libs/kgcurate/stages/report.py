"""``kgcurate report --out DIR``: an HTML page with PNG plots of the curation.

Spark computes only aggregates here (count histograms, a top-k, per-source and bad-record totals);
what reaches the driver is bounded by the number of distinct counts, sources and reasons, never by
the number of pairs. Rendering is :mod:`kgcurate.report_plots` (pure).
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from kgcurate import config, lake, report_plots, tables
from kgcurate.errors import UserError
from kgcurate.session import get_spark
from kgcurate.stages import balance, build_metadata

JOB = "report"
TOP = 25
log = logging.getLogger("kgcurate.report")


def gather(spark: SparkSession, root: str) -> dict[str, Any]:
    """Every number the report shows, from aggregated tables."""
    has = {name: lake.exists(spark, root, name) for name in
           (tables.PAIRS, tables.MATCHES, tables.ENTRY_COUNTS, tables.METADATA, tables.CURATED,
            tables.CURATION_RUNS, tables.BAD_RECORDS, tables.INGEST_LOG)}
    if not has[tables.PAIRS]:
        raise UserError(f"table 'pairs' not found in lake {root}: nothing to report (run ingest-wat first)")
    data: dict[str, Any] = {"lake": root, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    run = balance.latest_run(spark, root)
    data["run"] = run.asDict() if run else {}
    data["t"] = run["t"] if run else None

    sizes: dict[str, int] = {"pairs": lake.read(spark, root, tables.PAIRS).count()}
    if run is not None:
        sizes["matched"] = run["matched_pairs"]
    elif has[tables.MATCHES]:
        sizes["matched"] = lake.read(spark, root, tables.MATCHES).select("pair_id").distinct().count()
    counts = lake.read(spark, root, tables.ENTRY_COUNTS)
    data["hist_before"] = [(r[0], r[1]) for r in counts.groupBy("count").count().collect()]
    after = None
    curated = balance.latest_curated(spark, root)  # the recorded run's version: never a dead run's rows
    if curated is not None:
        sizes["curated"] = curated.count()
        after = curated.select(F.explode("entry_ids").alias("entry_id")).groupBy("entry_id").agg(
            F.count(F.lit(1)).alias("after"))
        data["hist_after"] = [(r[0], r[1]) for r in after.groupBy("after").count().collect()]
    data["sizes"] = sizes

    # An entry is one string; its sources are provenance: one top row per string, sources exploded per source.
    build_metadata.check_layout(spark, root)
    meta = lake.read(spark, root, tables.METADATA)
    top = counts.orderBy(F.col("count").desc(), "entry_id").limit(TOP).join(meta, "entry_id", "left")
    if after is not None:
        top = top.join(after, "entry_id", "left")
    top_rows = top.orderBy(F.col("count").desc(), "entry_id").collect()
    data["top_entries"] = [
        {"entry": r["entry"] or str(r["entry_id"]), "source": ", ".join(r["sources"] or []) or "?",
         "qid": ", ".join(r["qids"] or []) or None,
         "count": r["count"], "after": (r["after"] or 0) if after is not None else 0} for r in top_rows]

    by_source = meta.select("entry_id", F.explode("sources").alias("source"))
    per_source = (by_source.join(counts, "entry_id", "left").groupBy("source").agg(
        F.count(F.lit(1)).alias("entries"), F.count("count").alias("entries_matched"),
        F.coalesce(F.sum("count"), F.lit(0)).alias("matches")))
    if after is not None:
        cur_src = after.join(by_source, "entry_id").groupBy("source").agg(
            F.sum("after").alias("curated_matches"))
        per_source = per_source.join(cur_src, "source", "left")
    data["sources"] = [{k: (v if v is not None else 0) for k, v in r.asDict().items()}
                       for r in per_source.orderBy("source").collect()]

    data["bad_records"] = []
    if has[tables.BAD_RECORDS]:
        data["bad_records"] = [{"job": r[0], "reason": r[1], "n": r[2]} for r in
                               lake.read(spark, root, tables.BAD_RECORDS).groupBy("job", "reason").count()
                               .orderBy(F.col("count").desc()).limit(40).collect()]
    data["ingest"] = []
    if has[tables.INGEST_LOG]:
        data["ingest"] = [r.asDict() for r in lake.read(spark, root, tables.INGEST_LOG).groupBy("job", "status").agg(
            F.count(F.lit(1)).alias("files"), F.sum("records").alias("records"), F.sum("rows_out").alias("rows_out"),
            F.sum("bad_records").alias("bad_records")).orderBy("job", "status").collect()]
    return data


def execute(spark: SparkSession, cfg: dict[str, Any]) -> dict[str, Any]:
    root = cfg["lake"]
    out = Path(cfg.get("report", {}).get("out") or "./reports/latest")
    data = gather(spark, root)
    files = report_plots.render(data, out)
    return {"html": str(files["html"]), "plots": len(files) - 1, **{f"size_{k}": v for k, v in data["sizes"].items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output folder for index.html and the PNGs (default: report.out)")


def run(args: argparse.Namespace, cfg: dict[str, Any]) -> int:
    config.set_if_given(cfg, "report.out", args.out)
    spark = get_spark(f"kgcurate-{JOB}", cfg["spark"]["conf"])
    s = execute(spark, cfg)
    print(f"report: {s['html']} ({s['plots']} plots)")
    return 0
