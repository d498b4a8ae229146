"""Balance job cost on generated matches, against baselines in the same run.

Matches are generated with built-in Spark expressions (no Python rows): ``--pairs`` pairs with 1-4
entries each, entry popularity log-uniform (Zipf-like) over ``--entries`` entries. Timed:
  baseline 1: one bare pass over ``matches`` (per-pair min of a hash coin, noop sink): the floor;
  baseline 2: exact N-th threshold by a global sort (orderBy + limit): the obvious alternative;
  balance --t, balance --target-size (histogram passes), balance --tail-share.
Prints seconds, matches/s per core and ratios to baseline 1.

    .venv/bin/python bench/bench_balance.py [--pairs 2500000] [--entries 500000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; >1 prints median ratios")
    args = ap.parse_args()
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from pyspark.sql import functions as F

    from kgcurate import config, lake, tables
    from kgcurate.context import execute_stage
    from kgcurate.session import get_spark
    from kgcurate.stages import balance as balance_stage
    from kgcurate.stages import match as match_stage

    spark = get_spark("bench-balance", {"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "3g"})
    master = spark.conf.get("spark.master")
    cores = int(master[6:-1]) if master.startswith("local[") and master[6:-1].isdigit() else os.cpu_count() or 1
    root = tempfile.mkdtemp(prefix="bench-balance-")
    t0 = time.perf_counter()
    pairs = spark.range(args.pairs, numPartitions=cores * 2).select(
        F.xxhash64("id").alias("pair_id"), F.concat(F.lit("http://i.example/"), F.col("id")).alias("image_url"),
        F.concat(F.lit("caption "), F.col("id")).alias("text"), F.lit("alt").alias("text_source"),
        *[F.lit(None).cast("string").alias(c) for c in ("page_url", "crawl", "source_file", "run_id")])
    lake.overwrite(spark, root, tables.PAIRS, pairs)
    k = (F.abs(F.xxhash64("pair_id", F.lit(1))) % 4 + 1).cast("int")
    m = (lake.read(spark, root, tables.PAIRS).select("pair_id", F.sequence(F.lit(1), k).alias("ks"))
         .select("pair_id", F.explode("ks").alias("j"))
         .select("pair_id", F.floor(F.pow(F.lit(float(args.entries)),
                                          (F.abs(F.xxhash64("pair_id", "j")) % 1_000_000) / 1e6)).cast("long")
                 .alias("entry_id"))
         .distinct())
    lake.overwrite(spark, root, tables.MATCHES, m)
    matches = lake.read(spark, root, tables.MATCHES)
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, match_stage.entry_delta(matches))
    meta = spark.range(args.entries + 1).select(F.col("id").alias("entry_id"), F.col("id").cast("string").alias(
        "entry"), F.array(F.lit("bench")).alias("sources"), F.array().cast("array<string>").alias("qids"))
    lake.overwrite(spark, root, tables.METADATA, meta)
    match_stage.record_state(spark, root, lake.version(spark, root, tables.METADATA), "bench", False,
                             lake.version(spark, root, tables.PAIRS))  # as a completed match would
    n_matches = matches.count()
    print(f"generated {args.pairs:,} pairs, {n_matches:,} matches in {time.perf_counter() - t0:.1f}s; {cores} cores")

    def timed(label: str, fn) -> float:
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        print(f"{label:42s} {dt:7.1f}s  {n_matches / dt / cores:12,.0f} matches/s/core  {out if out else ''}",
              flush=True)
        return dt

    counts = lake.read(spark, root, tables.ENTRY_COUNTS)

    def bare_pass() -> None:
        (matches.join(F.broadcast(counts), "entry_id")
         .select("pair_id", (balance_stage.coin(F.col("pair_id"), F.col("entry_id"), 0) * F.col("count")).alias("w"))
         .groupBy("pair_id").agg(F.min("w").alias("th")).write.format("noop").mode("overwrite").save())

    target = args.pairs // 4

    def sort_select() -> str:
        pp = (matches.join(F.broadcast(counts), "entry_id")
              .select("pair_id", (balance_stage.coin(F.col("pair_id"), F.col("entry_id"), 0) * F.col("count"))
                      .alias("w")).groupBy("pair_id").agg(F.min("w").alias("th")))
        tau = pp.orderBy("th", "pair_id").limit(target).agg(F.max("th")).first()[0]
        return f"tau={tau:.6g}"

    def balance(**kw) -> str:
        cfg = config.load(None)
        cfg["lake"] = root
        cfg["balance"].update(kw)
        s = execute_stage(balance_stage, cfg, spark)
        # a selection from all matches each time: not built on the run before, not skipped as recorded
        assert s.done_by is None and s.basis_run_id is None, (s.done_by, s.basis_run_id)
        return f"t={s.t:.6g} out={s.pairs_out:,} selection_passes={s.selection_passes or 0}"

    modes = (("baseline 2: N-th threshold by global sort", sort_select),
             ("balance --t 50 (curated written)", lambda: balance(t=50.0, full=True)),
             (f"balance --target-size {target:,}", lambda: balance(target_size=target, full=True)),
             ("balance --tail-share 0.3", lambda: balance(tail_share=0.3, full=True)))
    ratios: dict[str, list[float]] = {label: [] for label, _ in modes}
    for r in range(args.rounds):  # interleaved: each round times the baseline again, next to the modes
        print(f"-- round {r + 1} of {args.rounds}")
        base = timed("baseline 1: one pass, per-pair min (noop)", bare_pass)
        for label, fn in modes:
            dt = timed(label, fn)
            ratios[label].append(dt / base)
            print(f"{'':42s} = {dt / base:.2f}x baseline 1")
    if args.rounds > 1:
        print(f"-- median ratio to baseline 1 over {args.rounds} interleaved rounds (min-max)")
        for label, rs in ratios.items():
            print(f"{label:42s} {statistics.median(rs):5.2f}x  ({min(rs):.2f}-{max(rs):.2f}x)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
