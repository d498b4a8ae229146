"""What writing a balance run's ``pair_texts`` again costs when nothing changed: the MERGE fed only the
rows that insert or update (``kg_texts.write_pair_texts``, no commit) against the MERGE fed every row of
the run (what it did before: Delta rewrote each file holding one of them), side by side on the same lake
in interleaved rounds, one warm JVM. Both compute the rows and the stale keys the same way.

Needs a balanced lake with KG texts, e.g. the demo's (``make demo`` writes ``lake/``); the newest run in
``curated`` is written again.

    .venv/bin/python bench/bench_pair_texts_rerun.py --lake lake [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rounds import interleaved  # noqa: E402 - after the path insert


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default=str(ROOT / "lake"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--languages", default="en")
    args = ap.parse_args()
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from kgcurate import kg_texts, lake, tables
    from kgcurate.session import get_spark

    spark = get_spark("bench-pair-texts-rerun", {"spark.sql.shuffle.partitions": "4"})
    root, languages = args.lake, args.languages.split(",")
    newest = (lake.read(spark, root, tables.CURATION_RUNS).orderBy(F.col("created_at").desc())
              .select("run_id").first()["run_id"])
    curated = lake.read(spark, root, tables.CURATED).where(F.col("run_id") == newest)
    print(f"run {newest}: {curated.count():,} curated pairs, pair_texts at version "
          f"{lake.version(spark, root, tables.PAIR_TEXTS)}")

    def every_row() -> float:
        """The write before: every row of the run in the MERGE's source."""
        t0 = time.perf_counter()
        own = curated.select("pair_id", "text", "entry_ids").join(
            lake.read(spark, root, tables.PAIRS).select("pair_id", "text_source"), "pair_id")
        rows = kg_texts.build_pair_texts(own, lake.read(spark, root, tables.METADATA),
                                         lake.read(spark, root, tables.ENTITIES), languages)
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        existing = lake.read(spark, root, tables.PAIR_TEXTS).join(own.select("pair_id"), "pair_id", "left_semi")
        stale = existing.join(rows, [existing[k].eqNullSafe(rows[k]) for k in kg_texts.KEYS], "left_anti")
        lake.merge_insert_delete(spark, root, tables.PAIR_TEXTS, rows, stale.select(*kg_texts.KEYS),
                                 kg_texts.KEYS, update_columns=["language"])
        rows.unpersist()
        return time.perf_counter() - t0

    def changed_rows() -> float:
        t0 = time.perf_counter()
        kg_texts.write_pair_texts(spark, root, curated, None, None, languages)
        return time.perf_counter() - t0

    def counted(run, name: str):
        def go() -> float:
            before = lake.version(spark, root, tables.PAIR_TEXTS)
            seconds = run()
            commits[name] += lake.version(spark, root, tables.PAIR_TEXTS) - before
            return seconds
        return go

    commits = {"changed rows": 0, "every row": 0}
    changed_rows(), every_row()  # warm-up: both plans compiled once
    med = interleaved({"changed rows": counted(changed_rows, "changed rows"),
                       "every row": counted(every_row, "every row")}, args.rounds)
    print(f"median: changed rows {med['changed rows']:.2f} s ({commits['changed rows']} commits), every row "
          f"{med['every row']:.2f} s ({commits['every row']} commits): {med['changed rows'] / med['every row']:.2f}x")


if __name__ == "__main__":
    main()
