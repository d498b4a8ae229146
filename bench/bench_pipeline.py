"""The whole pipeline's per-file cost on this machine, and what a full crawl would cost.

Runs ingest-wat -> build-metadata (WordNet) -> match -> balance on generated WAT files in one local
Spark session, times each stage, and compares with a baseline measured in the same run on the
same files: a single-core gzip inflation of every byte (the least any pipeline must do).
Then projects a full crawl (~90k WAT files of ~357 MB, ~400k alt-bearing image links each):
ingest scales with bytes, match and balance with pairs, so each stage is scaled by its own unit.

    .venv/bin/python bench/bench_pipeline.py                       # ~20 MB, a few minutes on 2 cores
    .venv/bin/python bench/bench_pipeline.py --size-mb 200 --price-per-core-hour 0.048

Core-seconds are wall seconds x the cores Spark had (local[N]); the price default is an
on-demand m6i/m7i-class vCPU in us-east-1 ($0.384/h for 8 vCPU = $0.048 per vCPU-hour).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

CRAWL_FILES = 90_000
FILE_MB = 357.0
PAIRS_PER_FILE = 400_000


def inflate_baseline(paths: list[Path]) -> tuple[float, int]:
    """Seconds to inflate every gzip member of every file on one core; uncompressed bytes."""
    t0 = time.perf_counter()
    out = 0
    for path in paths:
        data = path.read_bytes()
        while data:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += len(d.decompress(data))
            data = d.unused_data
    return time.perf_counter() - t0, out


def wordnet_dir() -> str | None:
    for cand in ("/usr/share/wordnet", str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "wordnet")):
        if Path(cand, "data.noun").exists():
            return cand
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=20.0, help="generated WAT input, MB compressed (default 20)")
    ap.add_argument("--files", type=int, default=4, help="number of files the input is split into (default 4)")
    ap.add_argument("--cores", type=int, default=2, help="local[N] (default 2)")
    ap.add_argument("--target-size", type=int, default=10_000)
    ap.add_argument("--price-per-core-hour", type=float, default=0.048)
    ap.add_argument("--workdir", help="keep input and lake here (default: a temp dir)")
    args = ap.parse_args(argv)

    os.environ.setdefault("KGCURATE_MASTER", f"local[{args.cores}]")
    from kgcurate import config, lake, tables
    from kgcurate.context import execute_stage
    from kgcurate.session import get_spark
    from kgcurate.stages import balance, build_metadata, ingest_wat, match
    from kgcurate.wat.sample import write_sample

    work = Path(args.workdir or tempfile.mkdtemp(prefix="kgcurate-bench-"))
    m = write_sample(work / "wat", files=args.files, seed=1, corrupt=False, size_mb=args.size_mb)
    paths = [Path(f) for f in m.files]
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    base_s, raw = inflate_baseline(paths)

    spark = get_spark("kgcurate-bench-pipeline", {"spark.sql.shuffle.partitions": str(args.cores * 2)})
    cfg = config.load(None)
    cfg["lake"] = str(work / "lake")
    cfg["wat"].update(inputs=[m.listing], progress_interval=3600)
    cfg["metadata"].update(wordnet=wordnet_dir() is not None, wordnet_dir=wordnet_dir())
    cfg["balance"]["target_size"] = args.target_size
    secs: dict[str, float] = {}
    out: dict[str, object] = {}  # each stage's summary
    for name, stage in (("ingest-wat", ingest_wat), ("build-metadata", build_metadata), ("match", match),
                        ("balance", balance)):
        t0 = time.perf_counter()
        out[name] = execute_stage(stage, cfg, spark)
        secs[name] = time.perf_counter() - t0
    pairs = lake.read(spark, cfg["lake"], tables.PAIRS).count()
    entries = lake.read(spark, cfg["lake"], tables.METADATA).count()
    spark.stop()

    cores = args.cores
    total = sum(secs.values())
    print(f"input: {len(paths)} files, {size_mb:.1f} MB gzip ({raw / 1e6:.0f} MB raw), {pairs:,} distinct pairs, "
          f"{entries:,} metadata entries, local[{cores}]")
    print(f"baseline: gzip inflate only, 1 core: {base_s:.2f}s = {size_mb / base_s:.1f} MB/s/core")
    for name, s in secs.items():
        print(f"  {name:15s} {s:8.1f}s wall  {s * cores:8.1f} core-s  {s * cores / base_s:6.1f}x baseline core-s")
    print(f"pipeline: {total:.1f}s wall, {total * cores / len(paths):.1f} core-s per file, "
          f"{size_mb / (total * cores):.2f} MB/s/core ({total * cores / base_s:.1f}x the inflate-only core-s)")

    # Projection: ingest by bytes, match/balance by pairs, build-metadata once (fixed).
    crawl_mb = CRAWL_FILES * FILE_MB
    crawl_pairs = CRAWL_FILES * PAIRS_PER_FILE
    proj = {
        "ingest-wat": secs["ingest-wat"] * cores / size_mb * crawl_mb,
        "build-metadata": secs["build-metadata"] * cores,
        "match": secs["match"] * cores / max(pairs, 1) * crawl_pairs,
        "balance": secs["balance"] * cores / max(pairs, 1) * crawl_pairs,
    }
    hours = {k: v / 3600 for k, v in proj.items()}
    all_h = sum(hours.values())
    print(f"projection for a full crawl ({CRAWL_FILES:,} files x {FILE_MB:.0f} MB, {crawl_pairs / 1e9:.0f}e9 pairs):")
    for k, h in sorted(hours.items(), key=lambda kv: -kv[1]):
        print(f"  {k:15s} {h:10,.0f} core-h  ({h / all_h:5.1%})  ${h * args.price_per_core_hour:,.0f}")
    print(f"  total           {all_h:10,.0f} core-h  ${all_h * args.price_per_core_hour:,.0f} "
          f"at ${args.price_per_core_hour}/core-h; dominant stage: {max(hours, key=hours.get)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
