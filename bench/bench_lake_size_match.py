"""Incremental match and balance cost vs the size of the lake (issue #14, goal 3): the same ingested WAT
matched in a lake with no earlier pairs and in one whose ``pairs`` and ``matches`` already hold
``--rows`` pairs and their matches; goal: prefilled / empty <= 1.25x for ``match``. ``balance`` is a
function of every match, so its cost is reported per million existing matches.

Both lakes get the same ``metadata`` (the generated WAT's vocabulary, some of it with qids, plus
filler strings up to ``--entries``) and are then set up as a completed match would leave them:

- ``pairs``: ``--rows`` generated rows (:func:`bench.bench_lake_size.prefill`; 0 for the empty lake);
- ``matches``: 1-2 entries per pair (mean 1.5), entries drawn log-uniformly (Zipf-like: the WAT's
  vocabulary is the popular head);
- ``entry_counts`` (a group-by of those matches), ``qid_counts`` (the entry counts summed per qid:
  the right size, not the exact distinct-pair count) and ``match_state`` naming the versions, with the
  metadata's real fingerprint, so the next ``match`` is incremental.

Then the WAT (:func:`kgcurate.wat.sample.write_sample`, what ``make-sample`` writes) is ingested into
both, once. Timed, in interleaved rounds (each variant once per round, in a rotated order):
``empty`` and ``prefilled`` (this code: the new pairs come from the files the Delta log added) and,
with ``--old``, ``prefilled-antijoin`` (the previous code's left-anti join of ``pairs`` against
``pairs`` at the recorded version). After each run ``matches``, ``entry_counts``, ``qid_counts`` and
``match_state`` are RESTOREd, so every run matches the same pairs against the same tables.

``--stage balance`` (or ``both``) then times ``balance --target-size`` and ``--t`` on both lakes after
one match, and a bare pass over ``matches`` (per-pair min coin, noop sink) as the floor.

``--stage refresh`` times what a refresh's balance costs: on each lake a ``balance --t`` of the
matches before the ingest is recorded (timed once: the selection from all matches), the new pairs are
matched, and ``balance --t`` is timed in interleaved rounds; it builds on the recorded run (its
curated pairs + the matches appended since), so its cost follows the curated set and the new pairs.
``--base-rows N`` puts N prefilled pairs in the smaller lake instead of none: with the same metadata, a
refresh's balance on a 10M and a 50M lake shows whether its cost follows the lake or the curated set
(bounded by the entries times ``t``).
``--stages`` turns Spark's UI on and prints each timed run's executor seconds per Spark stage.

    python bench/bench_lake_size_match.py [--rows 50000000] [--size-mb 250] [--rounds 3] [--old]
        [--stage match|balance|both|refresh [--stages]] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest_spark import print_stages, spark_stages  # noqa: E402 - after the path insert
from bench.bench_lake_size import interleaved, prefill  # noqa: E402


def write_metadata(spark, root: str, n_entries: int) -> int:
    """The WAT vocabulary (animals and taxa with qids) plus filler strings: ``metadata``'s version."""
    from pyspark.sql import functions as F

    from kgcurate import lake, tables
    from kgcurate.stages import build_metadata
    from kgcurate.wat import sample

    rows: list[tuple[str, str, str | None]] = []
    for i, w in enumerate(sample.ANIMALS + sample.PLANTS):
        rows += [(w, "kg", f"Q{1000 + i}"), (w, "wordnet", None)]
    for i, (taxon, name) in enumerate(sample.TAXA):
        rows += [(taxon, "kg", f"Q{2000 + i}"), (name, "kg", f"Q{2000 + i}")]
    rows += [(w, "wordnet", None) for w in sample.OBJECTS + sample.ADJECTIVES]
    vocab = spark.createDataFrame(rows, "entry string, source string, qid string")
    filler = spark.range(max(0, n_entries - len(rows))).select(
        F.concat(F.lit("filler entity "), F.col("id").cast("string")).alias("entry"),
        F.lit("metaclip").alias("source"),
        F.when(F.col("id") % 4 == 0, F.concat(F.lit("Q"), (F.col("id") + 10_000).cast("string"))).alias("qid"))
    lake.overwrite(spark, root, tables.METADATA, build_metadata.derive(vocab.unionByName(filler)))
    version = lake.version(spark, root, tables.METADATA)
    assert version is not None
    return version


def prefill_matched(spark, root: str, rows: int, n_entries: int) -> dict[str, int]:
    """``pairs`` with ``rows`` rows, their ``matches``, counts and ``match_state`` as a completed match
    of them would leave (see the module doc); the tables' versions."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    from kgcurate import lake, tables
    from kgcurate.stages import match

    meta_version = write_metadata(spark, root, n_entries)
    if rows:
        prefill(spark, root, rows, max(1, rows // 500_000))
    else:
        lake.ensure(spark, root, tables.PAIRS)
    pairs_version = lake.version(spark, root, tables.PAIRS)
    meta = lake.read(spark, root, tables.METADATA, meta_version)
    # entries by popularity rank: the vocabulary (short strings) first, then the filler
    ranked = meta.select("entry_id", F.row_number().over(Window.orderBy(F.length("entry"), "entry")).alias("rank"))
    n = meta.count()

    def rank(j: int):
        return (F.floor(F.pow(F.lit(float(n)), (F.abs(F.xxhash64("pair_id", F.lit(j))) % 1_000_000) / 1e6))
                .cast("long") + 1)

    two = F.abs(F.xxhash64("pair_id", F.lit(0))) % 2 == 1  # 1 or 2 distinct entries a pair, no shuffle
    pairs = lake.read(spark, root, tables.PAIRS, pairs_version)
    drawn = (pairs.select("pair_id", rank(1).alias("r1"), rank(2).alias("r2"))
             .select("pair_id", F.explode(F.when(two & (F.col("r2") != F.col("r1")), F.array("r1", "r2"))
                                          .otherwise(F.array("r1"))).alias("rank")))
    m = drawn.join(F.broadcast(ranked), "rank").select("pair_id", "entry_id")
    lake.overwrite(spark, root, tables.MATCHES, m)
    matches_version = lake.version(spark, root, tables.MATCHES)
    counts = match.entry_delta(lake.read(spark, root, tables.MATCHES, matches_version))
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, counts)
    kg = F.broadcast(match.entry_qids(meta, False))
    qid_counts = (lake.read(spark, root, tables.ENTRY_COUNTS).join(kg, "entry_id")
                  .groupBy("qid").agg(F.sum("count").cast("long").alias("count")))
    lake.overwrite(spark, root, tables.QID_COUNTS, qid_counts)
    _ids, _entries, _bad, fp = match._entry_set(spark, root, meta_version, False)
    match.record_state(spark, root, meta_version, fp, False, pairs_version, matches_version)
    return {name: lake.version(spark, root, name) for name in
            (tables.PAIRS, tables.MATCHES, tables.ENTRY_COUNTS, tables.QID_COUNTS, tables.MATCH_STATE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000, help="pairs (and their matches) already in the lake")
    ap.add_argument("--base-rows", type=int, default=0,
                    help="pairs (and matches) in the smaller lake: 0 (default) is the empty lake goal 3 names; e.g. "
                         "10000000 against --rows 50000000 asks whether the cost follows the lake once the "
                         "metadata's entries are all matched t times (--stage refresh)")
    ap.add_argument("--entries", type=int, default=100_000, help="metadata entries")
    ap.add_argument("--size-mb", type=float, default=250.0, help="compressed MB of generated WAT ingested")
    ap.add_argument("--files", type=int, default=4, help="WAT files")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--balance-rounds", type=int, default=1)
    ap.add_argument("--target-size", type=int, default=0, help="default: half the WAT's pairs")
    ap.add_argument("--t", type=float, default=20.0)
    ap.add_argument("--stage", choices=("match", "balance", "both", "refresh"), default="both")
    ap.add_argument("--old", action="store_true", help="also time the whole-table anti-join (the code before)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--work", default=None, help="folder for the lakes and WAT (default: a temp folder, removed)")
    ap.add_argument("--driver-memory", default="4g", help="local[N]'s one JVM: driver and executor heap "
                    "(4g is enough since session 13 for --stage refresh at 1 GB; before, the recorded balance over "
                    "75M matches ran out of it)")
    ap.add_argument("--stages", action="store_true",
                    help="--stage refresh: print each timed balance's executor seconds per Spark stage (UI on)")
    ap.add_argument("--reuse", action="store_true", help="reuse the lakes a previous run left in --work")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="kgcurate-lake-size-match-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["KGCURATE_MASTER"] = f"local[{args.cores}]"
    from pyspark.sql import functions as F

    from kgcurate import config, lake, tables
    from kgcurate.context import execute_stage
    from kgcurate.match_state import MatchState
    from kgcurate.session import get_spark
    from kgcurate.stages import balance as balance_stage
    from kgcurate.stages import ingest_wat
    from kgcurate.stages import match as match_stage
    from kgcurate.wat.sample import write_sample

    setup = work / "setup.json"
    try:
        port = 4098
        ui = {"spark.ui.enabled": "true", "spark.ui.port": str(port)} if args.stages else {}
        spark = get_spark("bench-lake-size-match", {"spark.sql.shuffle.partitions": str(4 * args.cores),
                                                    "spark.driver.memory": args.driver_memory, **ui})
        small = "empty" if args.base_rows == 0 else f"base-{args.base_rows:_}"
        lakes = {small: str(work / small), "prefilled": str(work / "prefilled")}
        versions: dict[str, dict[str, int]] = {}
        saved_states: dict[str, list] = {}
        if args.reuse and setup.exists():  # the lakes a previous run with this --work set up and kept
            saved = json.loads(setup.read_text())
            versions, distinct, saved_states = saved["versions"], saved["distinct"], saved["states"]
            wat_files = sorted(str(f) for f in (work / "wat").glob("*.wat.gz"))  # for a lake not set up yet
            print(f"reusing {work}: {distinct:,} ingested pairs, "
                  + ", ".join(f"{n} {v['n_matches']:,} matches" for n, v in versions.items()), flush=True)
        else:
            manifest = write_sample(work / "wat", files=args.files, size_mb=args.size_mb, seed=1, corrupt=False)
            mb = sum(os.path.getsize(f) for f in manifest.files) / 1e6
            distinct = len({(u, t) for (u, t, _s, _p) in manifest.pairs})
            wat_files = manifest.files
            print(f"input: {len(manifest.files)} WAT files, {mb:.1f} MB gzip, {distinct:,} distinct pairs; "
                  f"{args.cores} cores", flush=True)
        for name, rows in ((small, args.base_rows), ("prefilled", args.rows)):
            if name in versions:
                continue
            t0 = time.perf_counter()
            versions[name] = prefill_matched(spark, lakes[name], rows, args.entries)
            n_matches = lake.read(spark, lakes[name], tables.MATCHES).count()
            size = sum(f.stat().st_size for t in ("pairs", "matches")
                       for f in Path(lakes[name], t).rglob("*.parquet")) / 1e9
            print(f"{name}: {rows:,} pairs, {n_matches:,} matches, {size:.2f} GB Parquet (pairs + matches), "
                  f"set up in {time.perf_counter() - t0:.0f} s", flush=True)
            versions[name]["n_matches"] = n_matches
            cfg = config.load(None)
            cfg["lake"] = lakes[name]
            cfg["wat"].update(inputs=wat_files, progress_interval=3600)
            t0 = time.perf_counter()
            s = execute_stage(ingest_wat, cfg, spark)
            assert s.pairs_inserted == distinct, (s.pairs_inserted, distinct)
            print(f"{name}: ingested {distinct:,} pairs in {time.perf_counter() - t0:.1f} s", flush=True)
            saved_states[name] = match_stage.read_state(spark, lakes[name]).to_rows()
        if args.work:
            setup.write_text(json.dumps({"versions": versions, "distinct": distinct, "states": saved_states}))

        real_files_since = lake.files_since

        states = {name: MatchState.from_rows(rows) for name, rows in saved_states.items()}

        def restore(name: str) -> None:
            """The lake as before the timed match: matches and counts RESTOREd to the prefilled content,
            and a match_state naming the RESTORE commits (as a completed run would name its own, so the
            next match has nothing to heal)."""
            root = lakes[name]
            for t in (tables.MATCHES, tables.ENTRY_COUNTS, tables.QID_COUNTS):
                if lake.version(spark, root, t) != versions[name][t]:
                    lake.restore(spark, root, t, versions[name][t])
                    versions[name][t] = lake.version(spark, root, t)
            want = dataclasses.replace(states[name], **{f"{t}_version": versions[name][t] for t in
                                                        (tables.MATCHES, tables.ENTRY_COUNTS, tables.QID_COUNTS)})
            if match_stage.read_state(spark, root) != want:
                match_stage.write_state(spark, root, want)

        def run_match(variant: str) -> float:
            name = "prefilled" if variant.startswith("prefilled") else small
            lake.files_since = (lambda *a, **k: None) if variant.endswith("antijoin") else real_files_since
            cfg = config.load(None)
            cfg["lake"] = lakes[name]
            try:
                t = time.perf_counter()
                s = execute_stage(match_stage, cfg, spark)
                secs = time.perf_counter() - t
            finally:
                lake.files_since = real_files_since
            assert s.mode == "incremental" and s.pairs_matched == distinct, (s.mode, s.pairs_matched, distinct)
            return secs

        if args.stage in ("match", "both"):
            for name in lakes:  # --reuse after another stage: back to the lakes as set up
                restore(name)
            run_match(small)  # warm-up: builds the automaton in the Python workers
            restore(small)
            variants = [small, "prefilled"] + (["prefilled-antijoin"] if args.old else [])

            def timed_match(v: str) -> float:
                secs = run_match(v)
                restore("prefilled" if v.startswith("prefilled") else small)
                return secs

            interleaved(variants, timed_match, args.rounds, label="match ")

        def run_balance(name: str, **kw):
            cfg = config.load(None)
            cfg["lake"] = lakes[name]
            cfg["balance"].update(kw)
            return execute_stage(balance_stage, cfg, spark)

        if args.stage == "refresh":
            for name in lakes:  # a balance recorded before the new pairs were matched: the refresh's basis
                restore(name)
                t = time.perf_counter()
                s = run_balance(name, t=args.t, full=True)
                print(f"{name}: recorded balance --t {args.t:g} of all {s.matched_pairs:,} matched pairs: "
                      f"{time.perf_counter() - t:.1f} s, {s.pairs_out:,} curated", flush=True)
            for name in lakes:
                run_match(name)
            # every round times the same built-on run: without going back, round 2 found round 1's run
            # recorded (balance's skip-if-done) and timed nothing
            balance_out = (tables.CURATED, tables.PAIR_TEXTS, tables.CURATION_RUNS)
            before = {name: {t: lake.version(spark, lakes[name], t) for t in balance_out} for name in lakes}

            def built_on(name: str) -> float:
                for t, v in before[name].items():
                    if lake.version(spark, lakes[name], t) != v:
                        lake.restore(spark, lakes[name], t, v)
                seen = {x["stageId"] for x in spark_stages(spark, port)} if args.stages else set()
                t = time.perf_counter()
                s = run_balance(name, t=args.t)
                secs = time.perf_counter() - t
                assert s.done_by is None and s.basis_run_id is not None, (s.done_by, s.basis_reason)
                print(f"  {name}: {s.matched_pairs:,} matched, {s.pairs_out:,} curated", flush=True)
                if args.stages:
                    stages = [x for x in spark_stages(spark, port) if x["stageId"] not in seen]
                    total = sum(x["executorRunTime"] for x in stages) / 1000
                    print(f"    executor seconds by Spark stage (all {len(stages)}: {total:.1f} s):")
                    print_stages(stages, indent="    ")
                return secs

            interleaved([small, "prefilled"], built_on, args.rounds, label="balance --t built on the recorded run ")

        if args.stage in ("balance", "both"):
            for name in lakes:  # balance reads the versions a completed match recorded
                restore(name)
                run_match(name)

            def bare_pass(name: str) -> None:
                v = match_stage.completed_versions(spark, lakes[name])
                matches = lake.read(spark, lakes[name], tables.MATCHES, v[tables.MATCHES])
                counts = lake.read(spark, lakes[name], tables.ENTRY_COUNTS, v[tables.ENTRY_COUNTS])
                (matches.join(F.broadcast(counts), "entry_id")
                 .select("pair_id", (balance_stage.coin(F.col("pair_id"), F.col("entry_id"), 0) * F.col("count"))
                         .alias("w"))
                 .groupBy("pair_id").agg(F.min("w").alias("th")).write.format("noop").mode("overwrite").save())

            target = args.target_size or distinct // 2
            modes = (("bare pass over matches", bare_pass),
                     (f"balance --target-size {target:,}", lambda n: run_balance(n, target_size=target, full=True)),
                     (f"balance --t {args.t:g}", lambda n: run_balance(n, t=args.t, full=True)))
            btimes: dict[tuple[str, str], list[float]] = {}
            for r in range(args.balance_rounds):
                for label, fn in modes:
                    for name in ((small, "prefilled") if r % 2 == 0 else ("prefilled", small)):
                        t = time.perf_counter()
                        fn(name)
                        btimes.setdefault((label, name), []).append(time.perf_counter() - t)
                        print(f"round {r + 1}: {label} on {name}: {btimes[(label, name)][-1]:.1f} s", flush=True)
            extra = (versions["prefilled"]["n_matches"] - versions[small]["n_matches"]) / 1e6
            for label, _fn in modes:
                e = statistics.median(btimes[(label, small)])
                p = statistics.median(btimes[(label, "prefilled")])
                print(f"{label:32s}: {small} {e:6.1f} s, prefilled {p:6.1f} s ({p / e:.1f}x); "
                      f"{(p - e) / extra:.2f} s per million existing matches ({extra:.1f}M)", flush=True)
        spark.stop()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
