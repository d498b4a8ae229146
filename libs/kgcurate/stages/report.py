"""``kgcurate report --out DIR``: an HTML page with PNG plots of the curation.

``DIR`` is a local folder or ``s3://bucket/prefix`` (``s3a://`` too): a cluster's driver runs on a node
nobody looks at, so a scheduled refresh puts its report beside the lake. It is rendered into a temporary
folder there and uploaded, the plots first and ``index.html`` last.

Spark computes only aggregates here (count histograms, a top-k, per-source and bad-record totals);
what reaches the driver is bounded by the number of distinct counts, sources and reasons, never by
the number of pairs. Rendering is :mod:`kgcurate.report_plots` (pure).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import lake, report_plots, s3, settings, tables
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError
from kgcurate.stages import balance, build_metadata, match

JOB = "report"
TOP = 25
RUNS_SHOWN = 8  # curated sets compared side by side; train runs plotted
EVAL_ROWS_SHOWN = 200  # newest eval_runs rows in the metrics table
log = logging.getLogger("kgcurate.report")


def gather(spark: SparkSession, root: str) -> dict[str, Any]:
    """Every number the report shows, from aggregated tables."""
    has = {name: lake.exists(spark, root, name) for name in  # the optional tables this function checks
           (tables.PAIRS, tables.MATCHES, tables.CURATED, tables.BAD_RECORDS, tables.INGEST_LOG)}
    if not has[tables.PAIRS]:
        raise UserError(f"table 'pairs' not found in lake {root}: nothing to report (run ingest-wat first)")
    data: dict[str, Any] = {"lake": root, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    run = balance.latest_run(spark, root)
    data["run"] = run.asDict() if run else {}
    data["t"] = run["t"] if run else None

    # one pass gives the total and the pairs per crawl (a refresh adds a crawl: its share shows here)
    crawls = (lake.read(spark, root, tables.PAIRS).groupBy("crawl").count().orderBy(F.col("crawl").asc_nulls_last())
              .collect())
    data["crawls"] = [{"crawl": r["crawl"], "pairs": r["count"]} for r in crawls]
    sizes: dict[str, int] = {"pairs": sum(r["count"] for r in crawls)}
    if run is not None:
        sizes["matched"] = run["matched_pairs"]
    elif has[tables.MATCHES]:
        sizes["matched"] = lake.read(spark, root, tables.MATCHES).select("pair_id").distinct().count()
    data.update(entries(spark, root, run, has[tables.CURATED], sizes))
    data["sizes"] = sizes

    data["curated_runs"], data["run_overlap"] = curated_runs(spark, root)

    data["bad_records"] = []
    if has[tables.BAD_RECORDS]:
        data["bad_records"] = [{"job": r[0], "reason": r[1], "n": r[2]} for r in
                               lake.read(spark, root, tables.BAD_RECORDS).groupBy("job", "reason").count()
                               .orderBy(F.col("count").desc()).limit(40).collect()]
    data["ingest"] = []
    if has[tables.INGEST_LOG]:
        data["ingest"] = ingest_files(lake.read(spark, root, tables.INGEST_LOG))
    data["training"] = training(spark, root)
    return data


def ingest_files(log: DataFrame) -> list[dict[str, Any]]:
    """Files per (job, status) by each file's latest ``ingest_log`` row, as the jobs decide what is done
    (``ingest_wat.done_files``): a file that failed and was read on a retry counts once, as ok, and a
    ``--force`` re-read does not count its file, records and pairs twice; ``s3a://`` and ``s3://`` name one
    file, as for the jobs. ``attempts``: all its rows."""
    from kgcurate.stages.ingest_wat import file_key_column

    last = F.struct("finished_at", "status", "records", "rows_out", "bad_records")
    key = file_key_column().alias("file_key")
    latest = log.groupBy("job", key).agg(F.max(last).alias("r"), F.count(F.lit(1)).alias("attempts"))
    return [r.asDict() for r in latest.groupBy("job", F.col("r.status").alias("status")).agg(
        F.count(F.lit(1)).alias("files"), F.sum("r.records").alias("records"), F.sum("r.rows_out").alias("rows_out"),
        F.sum("r.bad_records").alias("bad_records"), F.sum("attempts").alias("attempts"))
        .orderBy("job", "status").collect()]


def entries(spark: SparkSession, root: str, run: Any, has_curated: bool, sizes: dict[str, int]) -> dict[str, Any]:
    """The entry sections: count histograms before and after balancing, the top entries and the
    per-source totals; adds the curated set's size to ``sizes``.

    The curated set (the recorded run's partition, never a dead run's rows) is read once: its per-entry
    counts (one row per entry, never per pair) are cached for the three sections that use them, which
    each read the whole set before (4 passes on a 400M-pair set, now 1). Its size is the run row's
    ``pairs_out``, counted when balance wrote it (the partition never changes after)."""
    data: dict[str, Any] = {}
    counts = lake.read(spark, root, tables.ENTRY_COUNTS)
    data["hist_before"] = [(r[0], r[1]) for r in counts.groupBy("count").count().collect()]
    if run is not None and run["per_qid"]:  # t applied to units: qids, and entries naming none
        latest = {tables.ENTRY_COUNTS: None, tables.METADATA: None, tables.QID_COUNTS: None}
        data["hist_units"] = balance.count_hist(spark, root, latest, True)
    if run is not None:
        data["moved_on"] = moved_on(spark, root, dict(run["input_versions"] or {}))
    after = None
    if run is not None and has_curated:
        curated = balance.run_partition(spark, root, run["run_id"])
        sizes["curated"] = run["pairs_out"] if run["pairs_out"] is not None else curated.count()
        after = curated.select(F.explode("entry_ids").alias("entry_id")).groupBy("entry_id").agg(
            F.count(F.lit(1)).alias("after")).persist()
    try:
        if after is not None:
            data["hist_after"] = [(r[0], r[1]) for r in after.groupBy("after").count().collect()]
        # An entry is one string; its sources are provenance: one top row per string, sources exploded
        # per source.
        build_metadata.check_layout(spark, root)
        # in the match's case mode: with --lowercase a group's counts sit on its smallest entry_id, and its
        # sources and qids are all its strings' ("Oak" from metaclip counts for metaclip too)
        meta = match.entry_groups(lake.read(spark, root, tables.METADATA), match.recorded_lowercase(spark, root),
                                  ("sources", "qids"))
        # the top ids first, then their strings and curated counts by a filter on the id (pushed into the scan
        # of the case-sensitive metadata; a --lowercase match's groups are a metadata-sized group-by first),
        # not joins that shuffle the whole metadata table for 25 rows
        top = counts.orderBy(F.col("count").desc(), "entry_id").limit(TOP).collect()
        top_ids = [r["entry_id"] for r in top]
        named = {r["entry_id"]: r.asDict() for r in meta.where(F.col("entry_id").isin(top_ids)).collect()}
        kept = ({r[0]: r[1] for r in after.where(F.col("entry_id").isin(top_ids)).collect()}
                if after is not None and top_ids else {})
        data["top_entries"] = []
        for r in top:
            m = named.get(r["entry_id"]) or {}
            data["top_entries"].append({
                "entry": m.get("entry") or str(r["entry_id"]), "source": ", ".join(m.get("sources") or []) or "?",
                "qid": ", ".join(m.get("qids") or []) or None, "count": r["count"],
                "after": kept.get(r["entry_id"], 0) if after is not None else None})  # None: no curated set

        # one join chain and one aggregate per source (the curated counts joined in, not a second one)
        by_source = meta.select("entry_id", F.explode("sources").alias("source")).join(counts, "entry_id", "left")
        sums = [F.count(F.lit(1)).alias("entries"), F.count("count").alias("entries_matched"),
                F.coalesce(F.sum("count"), F.lit(0)).alias("matches")]
        if after is not None:
            by_source = by_source.join(after, "entry_id", "left")
            sums.append(F.coalesce(F.sum("after"), F.lit(0)).alias("curated_matches"))
        data["sources"] = [r.asDict() for r in by_source.groupBy("source").agg(*sums).orderBy("source").collect()]
    finally:
        if after is not None:
            after.unpersist()
    return data


def moved_on(spark: SparkSession, root: str, recorded: dict[str, int | None]) -> str | None:
    """A note when the tables the entry sections read are newer than the versions the shown run read
    (a later match, say a refresh whose balance failed): those sections show the lake as it is now.
    (Reading the run's versions instead could fail once VACUUM has removed their files.) ``maintain``'s
    commits (OPTIMIZE, properties, VACUUM) change no row: no note for them."""
    now = {name: lake.version(spark, root, name) for name in (tables.PAIRS, tables.ENTRY_COUNTS, tables.METADATA)
           if recorded.get(name) is not None}
    moved = [f"{name} v{v} (the run read v{recorded[name]})" for name, v in now.items()
             if v != lake.content_version(spark, root, name, recorded[name])]
    if not moved:
        return None
    return ("Changed since this run: " + ", ".join(moved) + "; the pairs total, count histogram, head/tail split, "
            "top entries and per-source numbers are the lake's current ones, the matched and curated numbers "
            "the run's.")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def training(spark: SparkSession, root: str) -> dict[str, Any]:
    """The newest train runs with their loss curves (from each run's manifest) and every eval_runs row
    of their checkpoints; ``{}`` when neither table exists (no section in the report)."""
    from kgcurate.evaluate.manifest import loss_curve, read_manifest

    runs: list[dict[str, Any]] = []
    if lake.exists(spark, root, tables.TRAIN_RUNS):
        rows = (lake.read(spark, root, tables.TRAIN_RUNS).orderBy(F.col("finished_at").desc_nulls_last())
                .limit(RUNS_SHOWN).collect())
        for r in rows:
            manifest = read_manifest(r["experiment_dir"])
            # the row's own figures where the manifest is not readable from here (the experiments folder
            # lives on the GPU machines' volume in the compose and k8s deployments)
            runs.append({"train_run_id": r["train_run_id"], "model": r["model"], "status": r["status"],
                         "finished_at": r["finished_at"],
                         "samples_seen": _first(manifest.get("samples_seen"), r["samples_seen"]),
                         "final_loss": _first(manifest.get("final_loss"), r["final_loss"]),
                         "loss_curve": loss_curve(manifest)})
    evals: list[dict[str, Any]] = []
    if lake.exists(spark, root, tables.EVAL_RUNS):
        evals = [r.asDict() for r in lake.read(spark, root, tables.EVAL_RUNS)
                 .select("train_run_id", "model", "checkpoint", "dataset", "metric", "value", "samples", "created_at")
                 .orderBy(F.col("created_at").desc(), "dataset", "metric").limit(EVAL_ROWS_SHOWN).collect()]
    return {"runs": runs, "evals": evals} if runs or evals else {}


def curated_runs(spark: SparkSession, root: str) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The newest curated sets side by side: parameters, sizes, entity coverage of per-qid runs, and
    how many pairs each pair of runs shares (one pass: a bit mask of runs per pair, counted by mask;
    at most 2^RUNS_SHOWN distinct masks reach the driver)."""
    runs_df = balance.runs(spark, root)
    if runs_df is None or not lake.exists(spark, root, tables.CURATED):
        return [], []
    runs = [r.asDict() for r in runs_df.limit(RUNS_SHOWN).collect()]
    ids = [r["run_id"] for r in runs]
    cur = lake.read(spark, root, tables.CURATED).where(F.col("run_id").isin(ids))
    bit = F.lit(0)
    for i, run_id in enumerate(ids):
        bit = F.when(F.col("run_id") == run_id, F.lit(1 << i)).otherwise(bit)
    masks = [(int(r[0]), int(r[1])) for r in cur.select("pair_id", bit.alias("b")).groupBy("pair_id")
             .agg(F.bit_or("b").alias("m")).groupBy("m").count().collect()]
    overlap = [[run_id] + [sum(n for m, n in masks if m >> i & 1 and m >> j & 1) for j in range(len(ids))]
               for i, run_id in enumerate(ids)]
    per_qid = [r["run_id"] for r in runs if r["per_qid"]]
    covered: dict[str, int] = {}
    set_size = None
    if per_qid and lake.exists(spark, root, tables.METADATA):
        # the ids in curated are match's entry ids (case groups under --lowercase): match's own mapping
        qids = match.entry_qids(lake.read(spark, root, tables.METADATA), match.recorded_lowercase(spark, root))
        kept = (cur.where(F.col("run_id").isin(per_qid)).select("run_id", F.explode("entry_ids").alias("entry_id"))
                .join(qids, "entry_id").select("run_id", "qid").distinct().groupBy("run_id").count())
        covered = {r[0]: r[1] for r in kept.collect()}
        if lake.exists(spark, root, tables.ENTITY_SETS):
            set_size = lake.read(spark, root, tables.ENTITY_SETS).select("qid").distinct().count()
    for r in runs:
        r["entities_covered"] = covered.get(r["run_id"]) if r["per_qid"] else None
        r["entity_set_size"] = set_size if r["per_qid"] else None
    return runs, overlap


@dataclass
class ReportSummary(Summary):
    """The report written: its HTML page, the plots beside it and the sizes it shows (name -> rows)."""

    html: str
    plots: int
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def execute(ctx: Context, cfg: dict[str, Any]) -> ReportSummary:
    out = configured_folder(cfg)  # a bad one before any work
    spark = ctx.spark
    t0 = time.monotonic()
    data = gather(spark, cfg["lake"])
    if not s3.is_s3(out):
        files = report_plots.render(data, out)
        html = str(files["html"])
    else:
        with tempfile.TemporaryDirectory(prefix="kgcurate-report-") as tmp:
            files = report_plots.render(data, tmp)
            html = s3.put_files([p for k, p in files.items() if k != "html"] + [files["html"]], out)[-1]
    return ReportSummary(html=html, plots=len(files) - 1, sizes=dict(data["sizes"]),
                         seconds=round(time.monotonic() - t0, 2))


def out_folder(out: str) -> str:
    """The report's folder: ``s3://bucket/prefix`` or a local absolute path (:func:`kgcurate.s3.output_folder`)."""
    return s3.output_folder(out, f"report --out {out}: the report goes to a local folder or s3://bucket/prefix")


def configured_folder(cfg: dict[str, Any]) -> str:
    """``report.out`` checked (:func:`out_folder`); unset or empty, the default of :class:`settings.ReportOptions`."""
    return out_folder(str(settings.section(cfg, settings.ReportOptions).out or settings.ReportOptions.out))


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """A report folder nothing could write (a file, an S3 folder without credentials) is refused before
    Spark starts."""
    out = configured_folder(cfg)
    if s3.is_s3(out):
        s3.require_credentials(out)
    return {}


def report(s: ReportSummary, args: argparse.Namespace) -> int:
    print(f"report: {s.html} ({s.plots} plots)")
    return 0
