"""(d) of the WAT benchmark: the Spark ingest job on all local cores vs our parser on one core.

Same generated input, same run: the parser alone (one core, no Spark) is the baseline, and the
job's per-core throughput is reported as a ratio of it (target: >= 70%). The job's time here
includes the Delta MERGE of the pairs, the part a pure parse does not pay.

    python bench/bench_ingest_spark.py [--size-mb 60] [--files 4] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from kgcurate.wat.parse import WatParser
from kgcurate.wat.sample import write_sample


def parse_one_core(files: list[str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    records = pairs = 0
    for path in files:
        parser = WatParser()
        with open(path, "rb") as fh:
            for batch in parser.parse(fh):
                pairs += len(batch.image_url)
        records += parser.stats.records
    return time.perf_counter() - t0, records, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=60.0, help="compressed MB of generated WAT in all")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kgcurate-bench-"))
    try:
        manifest = write_sample(work / "wat", files=args.files, size_mb=args.size_mb, seed=1, corrupt=False)
        mb = sum(os.path.getsize(f) for f in manifest.files) / 1e6
        secs, records, pairs = parse_one_core(manifest.files)
        print(f"input: {len(manifest.files)} files, {mb:.1f} MB gzip, {records:,} records, {pairs:,} pairs")
        print(f"(c) parser, 1 core : {mb / secs:7.1f} MB/s  {records / secs:9,.0f} records/s")

        os.environ["KGCURATE_MASTER"] = f"local[{args.cores}]"
        from kgcurate import config
        from kgcurate.session import get_spark
        from kgcurate.stages import ingest_wat

        spark = get_spark("bench-ingest", {"spark.sql.shuffle.partitions": str(args.cores)})
        cfg = config.load(None)
        cfg["lake"] = str(work / "lake")
        cfg["wat"]["inputs"] = manifest.files
        cfg["wat"]["progress_interval"] = 3600
        # warm the JVM and Delta once on a tiny table so the timing is the job, not start-up
        spark.range(1).write.format("delta").save(str(work / "warm"))
        t0 = time.perf_counter()
        summary = ingest_wat.execute(spark, cfg)
        job = time.perf_counter() - t0
        assert summary["rows_out"] == pairs, (summary["rows_out"], pairs)
        per_core = mb / job / args.cores
        print(f"(d) Spark job, {args.cores} cores: {mb / job:7.1f} MB/s in all, {per_core:.1f} MB/s per core, "
              f"{records / job / args.cores:9,.0f} records/s per core "
              f"(incl. Delta MERGE of {summary['pairs_inserted']:,} new pairs)")
        print(f"ratio (d) per core / (c): {per_core / (mb / secs):.2f}  (target >= 0.70)")
        parse = summary["parse_seconds"]
        print(f"(d') parse stage of the job (read + parse + staged Parquet, before the Delta commits): "
              f"{mb / parse / args.cores:.1f} MB/s per core, ratio to (c) {mb / parse / args.cores / (mb / secs):.2f}; "
              f"commits took {job - parse:.1f} s (a fixed cost per run, not per file)")
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
