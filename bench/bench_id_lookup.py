"""Would a Bloom filter make ingest's id lookup cheaper? ``pairs_insert.present_ids`` (the run's ids
broadcast, the table's pair_id column scanned and probed) against two Bloom-filter variants, side by
side in interleaved rounds on the same ids, one warm JVM:

- ``bloom+broadcast``: the table's ids first pass Spark's own Bloom filter of the run's ids
  (``DataFrame.stat.bloomFilter``, probed with its ``BloomFilterMightContain`` expression), then the
  same broadcast semi-join;
- ``bloom only``: the ids that pass the filter are the small side, broadcast against the run's ids.

Spark has no SQL function for the probe (the optimizer's runtime filter uses it internally), so the
bench builds the expression through py4j. The table is plain Parquet of random pair_ids (with a
40-byte column beside them, as ``pairs`` holds more than its ids): the lookup reads the pair_id column
alone, as it does from ``pairs``' Delta files. ``--present`` of the run's ids are in the table.

    .venv/bin/python bench/bench_id_lookup.py [--rows 50000000 --run-ids 2260000 --rounds 4 --work W]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rounds import interleaved  # noqa: E402 - after the path insert


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--run-ids", type=int, default=2_260_000, help="the run's ids (1 GB of WAT: 2.26M rows)")
    ap.add_argument("--present", type=float, default=0.005, help="share of the run's ids in the table")
    ap.add_argument("--fpp", type=float, default=0.01, help="the Bloom filter's false-positive rate")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--work", help="keeps the generated ids (default: a temporary directory)")
    args = ap.parse_args()
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from pyspark.sql import functions as F
    from pyspark.sql.classic.column import Column

    from kgcurate import lake, pairs_insert
    from kgcurate.session import get_spark

    spark = get_spark("bench-id-lookup", {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "8g"})
    work = Path(args.work or tempfile.mkdtemp(prefix="kgcurate-bench-ids-"))
    table_dir, run_dir = work / f"table-{args.rows}", work / f"run-{args.run_ids}-{args.present}"
    if not table_dir.exists():
        t0 = time.perf_counter()
        spark.range(args.rows, numPartitions=max(1, args.rows // 1_250_000)).select(
            F.xxhash64("id").alias("pair_id"), F.sha1(F.col("id").cast("string")).alias("pad"),
        ).write.parquet(str(table_dir))
        print(f"table: {args.rows:,} ids in {time.perf_counter() - t0:.1f} s")
    if not run_dir.exists():
        every = max(1, round(1 / args.present)) if args.present > 0 else None
        new_id = F.xxhash64(F.col("id") + F.lit(10**12))  # ids the table does not hold
        spark.range(args.run_ids, numPartitions=4).select(
            (F.when(F.col("id") % every == 0, F.xxhash64(F.col("id") * 7 % args.rows)).otherwise(new_id)
             if every else new_id).alias("pair_id")
        ).write.parquet(str(run_dir))
    table = spark.read.parquet(str(table_dir)).select("pair_id")
    run = spark.read.parquet(str(run_dir))
    jvm = spark._jvm
    exprs, utils = jvm.org.apache.spark.sql.catalyst.expressions, jvm.org.apache.spark.sql.classic.ExpressionUtils

    def might_contain() -> Column:
        """pair_id passes a Bloom filter of the run's ids (built by one Spark job, sent as a literal)."""
        bloom = run._jdf.stat().bloomFilter("pair_id", args.run_ids, args.fpp)
        out = jvm.java.io.ByteArrayOutputStream()
        bloom.writeTo(out)
        literal = exprs.Literal.create(out.toByteArray(), jvm.org.apache.spark.sql.types.DataTypes.BinaryType)
        return Column(utils.column(exprs.BloomFilterMightContain(literal, utils.expression(F.col("pair_id")._jc))))

    real_read = lake.read
    lake.read = lambda *_a, **_k: table  # present_ids reads pairs' pair_id column: here, the Parquet ids
    limit = pairs_insert.MAX_LISTED
    answers: dict[str, set[int]] = {}

    def side(name: str, lookup: Callable[[], list[int]]) -> Callable[[], float]:
        def go() -> float:
            t0 = time.perf_counter()
            answers[name] = set(lookup())
            return time.perf_counter() - t0
        return go

    def present_ids() -> list[int]:
        return pairs_insert.present_ids(spark, "unused", run, 0, limit, broadcast=True)

    def bloom_then_broadcast() -> list[int]:
        lake.read = lambda *_a, **_k: table.where(might_contain())
        try:
            return present_ids()
        finally:
            lake.read = lambda *_a, **_k: table

    def bloom_only() -> list[int]:
        candidates = table.where(might_contain())
        present = run.select("pair_id").join(F.broadcast(candidates), "pair_id", "left_semi")
        with lake.session_conf(spark, "spark.sql.files.maxPartitionBytes", str(pairs_insert.ID_SCAN_SPLIT_BYTES)):
            return [int(r[0]) for r in present.distinct().limit(limit + 1).collect()]

    sides = {"present_ids": side("present_ids", present_ids),
             "bloom+broadcast": side("bloom+broadcast", bloom_then_broadcast),
             "bloom only": side("bloom only", bloom_only)}
    try:
        for run_side in sides.values():  # warm-up: every plan compiled once
            run_side()
        med = interleaved(sides, args.rounds)
    finally:
        lake.read = real_read
    assert answers["bloom+broadcast"] == answers["present_ids"] == answers["bloom only"], "the lookups disagree"
    base = med["present_ids"]
    print(f"{args.rows:,} table ids, {args.run_ids:,} run ids, {len(answers['present_ids']):,} present "
          f"(at most {limit + 1} listed), fpp {args.fpp}")
    print("median: " + ", ".join(f"{n} {s:.2f} s ({s / base:.2f}x)" for n, s in med.items()))


if __name__ == "__main__":
    main()
