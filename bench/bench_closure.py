"""Entity-set closure cost on generated graphs of growing size (local Spark, this machine's cores).

The graph is generated in Spark (nothing on the driver): node i > 0 has a P279 edge to a parent
drawn from the nodes before it (a random-recursive tree: depth ~ ln n, so the number of BFS
rounds grows slowly), and a tenth of the nodes get a second edge (P31 or P171) to another random
earlier node (diamonds) -- about 1.1 edges per node. The set is ``P31/P279* | P279+ | P171+``
below node 0, i.e. the organisms rule shape, which reaches every node. The baseline is the
smallest size in the same run: time per edge should stay about flat if cost grows linearly.

    .venv/bin/python bench/bench_closure.py [--edges 200000 600000]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from pyspark.sql import functions as F

from kgcurate.entity_sets import compute, spec_from_dict
from kgcurate.session import get_spark


def graph(spark, n_nodes: int, seed: int = 1):
    ids = spark.range(n_nodes).withColumnRenamed("id", "i")
    # a uniform earlier node: floor(u * i) with u from a hash, so no driver data and no shuffle
    u1 = (F.abs(F.xxhash64(F.col("i"), F.lit(seed))) % 1_000_003) / 1_000_003.0
    u2 = (F.abs(F.xxhash64(F.col("i"), F.lit(seed + 1))) % 1_000_003) / 1_000_003.0
    parent = F.concat(F.lit("Q"), F.floor(u1 * F.col("i")).cast("long").cast("string"))
    other = F.concat(F.lit("Q"), F.floor(u2 * F.col("i")).cast("long").cast("string"))
    extra = (F.abs(F.xxhash64(F.col("i"), F.lit(seed + 2))) % 10) == 0
    kind = F.abs(F.xxhash64(F.col("i"), F.lit(seed + 3))) % 2
    none = F.array().cast("array<string>")
    return ids.select(
        F.concat(F.lit("Q"), F.col("i").cast("string")).alias("qid"),
        F.when(extra & (kind == 0) & (F.col("i") > 0), F.array(other)).otherwise(none).alias("instance_of"),
        F.when(F.col("i") > 0, F.array(parent)).otherwise(none).alias("subclass_of"),
        F.when(extra & (kind == 1) & (F.col("i") > 0), F.array(other)).otherwise(none).alias("parent_taxon"),
        F.lit(True).alias("has_image"), F.lit(10).alias("sitelinks"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, nargs="+", default=[200_000, 600_000])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spark = get_spark("bench-closure", {"spark.sql.shuffle.partitions": "8"})
    cores = os.cpu_count() or 1  # local[*]: one task slot per core of this machine
    spec = spec_from_dict({"name": "bench", "roots": ["Q0"], "rules": ["P31/P279*", "P279+", "P171+"],
                           "max_depth": 200})
    base = None
    print(f"closure benchmark: {cores} cores (local[*]), load average {os.getloadavg()[0]:.1f}")
    compute(spark, graph(spark, 2000), spec).count()  # warm-up: JVM, Python workers, first jobs
    for edges in args.edges:
        n_nodes = int(edges / 1.1)
        ents = graph(spark, n_nodes).persist()
        n_edges = ents.select((F.size("instance_of") + F.size("subclass_of") + F.size("parent_taxon")).alias("e")) \
            .agg(F.sum("e")).first()[0]
        t0 = time.perf_counter()
        members = compute(spark, ents, spec)
        n = members.count()
        depth = members.agg(F.max("depth")).first()[0]
        secs = time.perf_counter() - t0
        ents.unpersist()
        per_edge = secs / n_edges * 1e6
        base = base or per_edge
        print(f"  {n_edges:>11,} edges {n:>11,} members  max depth {depth:3d}  {secs:7.1f}s  "
              f"{n_edges / secs / cores:9,.0f} edges/s/core  {per_edge:6.2f} us/edge  "
              f"x{per_edge / base:.2f} vs smallest")
    spark.stop()


if __name__ == "__main__":
    main()
