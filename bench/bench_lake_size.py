"""Ingest cost vs the size of the lake (issue #14, goal 3): the same WAT into an empty lake and into a
lake whose ``pairs`` already holds ``--rows`` rows; goal: prefilled / empty <= 1.25x.

The existing rows are written directly (no WAT parse): Spark built-in expressions give each row an
image URL (~80 chars), an alt text of 4-9 words (~40 chars), a page URL, crawl, source file and run
id, and its real pair_id (:func:`kgcurate.ids.pair_id`), none of them equal to a generated WAT pair.
The WAT is :func:`kgcurate.wat.sample.write_sample` (what ``kgcurate make-sample`` writes).

Rounds are interleaved (each round runs every variant once, in a rotated order) and the medians
compared: ``empty`` (a fresh lake), ``prefilled`` (this code: the MERGE reads only the pair_id
column plus the candidates, :mod:`kgcurate.pairs_insert`) and, with ``--plain``, ``prefilled-plain``
(the plain insert-only MERGE over the whole table, as before). After each prefilled run ``pairs`` is
RESTOREd to the prefilled version, so every run inserts the same pairs into the same table.

    python bench/bench_lake_size.py [--rows 10000000] [--size-mb 50] [--files 2] [--rounds 3] [--plain]
    python bench/bench_lake_size.py --goal      # the issue's sizes: 50M rows, 1 GB of WAT (an idle machine)
    python bench/bench_lake_size.py --goal --work W [--reuse]   # keep (then reuse) the WAT and the 50M lake

RESTORE leaves each round's inserted files in ``W/prefilled`` (unreferenced, never read): delete ``W``
after a series of ``--reuse`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

WORDS = ("red", "blue", "green", "small", "large", "old", "new", "vintage", "modern", "wooden", "metal",
         "glass", "cat", "dog", "bird", "flower", "tree", "house", "garden", "kitchen", "chair", "table",
         "lamp", "car", "bike", "road", "river", "mountain", "beach", "sunset", "city", "street", "portrait",
         "logo", "icon", "photo", "image", "banner", "product", "sale", "shop", "women", "men", "kids",
         "shoes", "dress", "shirt", "jacket", "bag", "watch", "ring", "necklace", "book", "cover", "poster",
         "art", "painting", "drawing", "map", "chart", "view")


def prefill(spark, root: str, rows: int, files: int, seed: int = 11) -> int:
    """Write ``rows`` generated ``pairs`` rows in one append of ``files`` files; the table's version."""
    from pyspark.sql import functions as F

    from kgcurate import ids, lake, tables

    words = F.array(*[F.lit(w) for w in WORDS])

    def word(k: int):
        return F.element_at(words, (F.pmod(F.xxhash64("id", F.lit(seed * 100 + k)), F.lit(len(WORDS))) + 1).cast("int"))

    n_words = F.pmod(F.xxhash64("id", F.lit(seed)), F.lit(6)) + 4  # 4-9 words
    text = F.concat_ws(" ", *[F.when(n_words > k, word(k)) for k in range(9)])
    h = F.md5(F.concat(F.lit(f"{seed}:"), F.col("id").cast("string")))
    site = F.concat(F.lit("https://www."), F.substring(h, 1, 9), F.lit(".example.com"))
    df = (spark.range(rows, numPartitions=files)
          .select(F.concat(site, F.lit("/wp-content/uploads/20"), F.substring(h, 10, 2), F.lit("/"),
                           F.substring(h, 12, 18), F.lit(".jpg")).alias("image_url"),
                  text.alias("text"), F.lit("alt").alias("text_source"),
                  F.concat(site, F.lit("/blog/"), F.substring(h, 20, 12), F.lit(".html")).alias("page_url"),
                  F.lit("CC-MAIN-2024-10").alias("crawl"),
                  F.concat(F.lit("crawl-data/CC-MAIN-2024-10/segments/1707947/wat/CC-MAIN-2024-"),
                           F.pmod(F.col("id"), F.lit(900)).cast("string"), F.lit(".warc.wat.gz")).alias("source_file"),
                  F.concat(F.lit("ingest-wat-prefill-"), F.pmod(F.col("id"), F.lit(50)).cast("string")).alias("run_id"))
          .withColumn("pair_id", ids.pair_id()))
    lake.append(spark, root, tables.PAIRS, df)
    version = lake.version(spark, root, tables.PAIRS)
    assert version is not None
    return version


def interleaved(variants: list[str], run, rounds: int, label: str = "", per_core_mb: float = 0.0) -> dict:
    """``run(variant)`` -> seconds for every variant, ``rounds`` times in rotated order (so neither side
    always runs first); prints each round, the medians and each variant's per-round ratio to the first
    (the empty lake), against the issue's 1.25x. Returns the times."""
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            times[v].append(run(v))
        print(f"round {r + 1}: " + ", ".join(f"{v} {times[v][-1]:.1f} s" for v in variants), flush=True)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    for v in variants:
        rate = f", {per_core_mb / med[v]:5.2f} MB/s per core" if per_core_mb else ""
        print(f"{label}{v:20s}: median {med[v]:6.1f} s ({', '.join(f'{t:.1f}' for t in times[v])}){rate}")
    base = variants[0]
    for v in variants[1:]:
        ratios = [p / e for p, e in zip(times[v], times[base], strict=True)]
        print(f"{label}{v} / {base}: median time ratio {med[v] / med[base]:.2f}x "
              f"(per round {', '.join(f'{x:.2f}' for x in ratios)}); goal <= 1.25x", flush=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows already in pairs")
    ap.add_argument("--prefill-files", type=int, default=0, help="files they are in (default: one per 500k rows)")
    ap.add_argument("--size-mb", type=float, default=50.0, help="compressed MB of generated WAT ingested")
    ap.add_argument("--files", type=int, default=2, help="WAT files")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--plain", action="store_true", help="also time the plain MERGE into the prefilled lake")
    ap.add_argument("--goal", action="store_true", help="the issue's sizes: --rows 50M --size-mb 1000 --files 8")
    ap.add_argument("--work", default=None, help="folder for the lakes and WAT (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the WAT and prefilled lake a previous run with these sizes left in --work")
    args = ap.parse_args()
    if args.goal:
        args.rows, args.size_mb, args.files = 50_000_000, 1000.0, 8
    if args.reuse and not args.work:
        raise SystemExit("--reuse needs --work (the folder a previous run set up)")
    args.prefill_files = args.prefill_files or max(1, args.rows // 500_000)
    work = Path(args.work or tempfile.mkdtemp(prefix="kgcurate-lake-size-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["KGCURATE_MASTER"] = f"local[{args.cores}]"
    from kgcurate import config, lake, pairs_insert, tables
    from kgcurate.context import execute_stage
    from kgcurate.session import get_spark
    from kgcurate.stages import ingest_wat
    from kgcurate.wat.sample import load_manifest, write_sample

    setup = work / "setup.json"
    sizes = {"rows": args.rows, "prefill_files": args.prefill_files, "size_mb": args.size_mb, "files": args.files}
    saved = json.loads(setup.read_text()) if args.reuse and setup.exists() else None
    if saved is not None and saved["sizes"] != sizes:
        raise SystemExit(f"--reuse: {work} was set up for {saved['sizes']}, not {sizes}")
    try:
        if saved is None:
            setup.unlink(missing_ok=True)
            manifest = write_sample(work / "wat", files=args.files, size_mb=args.size_mb, seed=1, corrupt=False)
        else:
            manifest = load_manifest(work / "wat")
        mb = sum(os.path.getsize(f) for f in manifest.files) / 1e6
        distinct = len({(u, t) for (u, t, _s, _p) in manifest.pairs})
        print(f"input: {len(manifest.files)} WAT files, {mb:.1f} MB gzip, {distinct:,} distinct pairs; "
              f"{args.cores} cores", flush=True)
        spark = get_spark("bench-lake-size", {"spark.sql.shuffle.partitions": str(args.cores)})
        full = str(work / "prefilled")
        if saved is None:
            shutil.rmtree(full, ignore_errors=True)
            t0 = time.perf_counter()
            v_full = prefill(spark, full, args.rows, args.prefill_files)
            print(f"prefilled pairs with {args.rows:,} rows in {time.perf_counter() - t0:.0f} s "
                  f"({sum(f.stat().st_size for f in Path(full, 'pairs').rglob('*.parquet')) / 1e9:.2f} GB Parquet)",
                  flush=True)
            setup.write_text(json.dumps({"sizes": sizes, "v_full": v_full}))
        else:
            v_full = saved["v_full"]
            lake.restore(spark, full, tables.PAIRS, v_full)  # as prefilled, whatever a killed run left
            print(f"reusing {full}: pairs at version {v_full}", flush=True)

        def job(root: str) -> float:
            cfg = config.load(None)
            cfg["lake"] = root
            cfg["wat"].update(inputs=manifest.files, progress_interval=3600, force=True)
            t = time.perf_counter()
            summary = execute_stage(ingest_wat, cfg, spark)
            secs = time.perf_counter() - t
            assert summary.pairs_inserted == distinct, (summary.pairs_inserted, distinct)
            return secs

        # warm-up, outside the timings: a first ingest into a new lake (the empty variant's path), then
        # other pairs into that lake, which now has files (the prefilled variant's id lookup), so that
        # neither variant's first round also pays for compiling its own code path
        shutil.rmtree(work / "warm-lake", ignore_errors=True)
        for seed in (2, 3):
            warm = write_sample(work / f"warm-wat-{seed}", files=1, size_mb=min(10.0, args.size_mb / 4), seed=seed,
                                corrupt=False)
            cfg = config.load(None)
            cfg["lake"] = str(work / "warm-lake")
            cfg["wat"].update(inputs=warm.files, progress_interval=3600)
            execute_stage(ingest_wat, cfg, spark)

        plain_max = pairs_insert.MAX_LISTED

        def run(variant: str) -> float:
            if variant == "empty":
                root = str(work / "empty")
                shutil.rmtree(root, ignore_errors=True)
                return job(root)
            pairs_insert.MAX_LISTED = -1 if variant == "prefilled-plain" else plain_max
            try:
                return job(full)
            finally:
                pairs_insert.MAX_LISTED = plain_max
                lake.restore(spark, full, tables.PAIRS, v_full)

        variants = ["empty", "prefilled"] + (["prefilled-plain"] if args.plain else [])
        interleaved(variants, run, args.rounds, per_core_mb=mb / args.cores)
        spark.stop()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
