"""Matching throughput against a 500k-entry metadata: naive loop vs bare automaton vs the Spark job.

(a) MetaCLIP's naive per-entry loop (``wrapped in spaced_text`` for every entry) on a subsample,
(b) a bare single-process pyahocorasick loop (spacing + iter + set of ids: MetaCLIP's own
    substr_matching_ahocorasick), the baseline; (b2) the same loop in one process per core at once,
    this machine's per-core ceiling when every core matches (the automaton dwarfs the caches),
(c) the ``match`` Spark job on ``--cores`` local cores: the matching stage alone (mapInArrow into a
    noop sink, automaton already cached in the reused workers, best of 3, per extra caption between
    runs on n and 3n captions so a Spark job's fixed cost drops out, as it does at 1B captions), and the whole job
    (Delta writes, counts): cold, warm, and per extra caption (warm runs on n and 3n captions,
    best of 3 each; the difference is the job's cost per caption without its per-run fixed costs).
Prints captions/s and captions/s per core, and (c) per core as a share of (b) and (b2). Last,
``--rounds`` interleaved rounds of (b) once and the stage on n and 3n once give a (c)/(b) ratio per
round; their median is the figure to read (this VM's speed drifts between figures taken minutes apart).

    .venv/bin/python bench/bench_match.py [--entries 500000] [--captions 400000] [--naive 40] [--cores 2]
                                          [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa

from kgcurate import matching

SYLLABLES = ["ka", "to", "ri", "mon", "sa", "el", "an", "ber", "lo", "ne", "di", "qu", "ur", "is", "pa", "ve",
             "ch", "ing", "er", "st", "ol", "am", "tr", "ou", "ex", "fa", "li", "go", "ze", "wy"]


def make_vocab(rng: random.Random, n: int) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choices(SYLLABLES, k=rng.choice([1, 2, 2, 3, 3, 4]))))
    out = sorted(words)  # a set's order changes with the hash seed; the sample must not
    rng.shuffle(out)
    return out


def make_entries(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    """Unigrams of the more common words, then 2-3 word phrases: realistic lengths (4-30 chars)."""
    common = vocab[: n // 4]
    out = list(common)
    seen = set(out)
    while len(out) < n:
        k = rng.choice([2, 2, 3])
        phrase = " ".join(vocab[min(len(vocab) - 1, int(rng.paretovariate(0.9)) * 3)] if rng.random() < 0.5
                          else rng.choice(common) for _ in range(k))
        if phrase not in seen:
            seen.add(phrase)
            out.append(phrase)
    return out


def make_captions(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    np_rng = np.random.default_rng(rng.randint(0, 2**31))
    zipf = np.minimum(np_rng.zipf(1.15, size=n * 16), len(vocab)) - 1
    puncts = [",", ".", "!", " -", ":"]
    out, pos = [], 0
    for _ in range(n):
        k = rng.randint(5, 16)
        words = [vocab[i] for i in zipf[pos:pos + k]]
        pos += k
        if rng.random() < 0.5:
            words[rng.randrange(k)] += rng.choice(puncts)
        out.append(" ".join(words))
    return out


def bench_naive(entries: list[str], captions: list[str]) -> float:
    wrapped = [matching.wrap_entry(e) for e in entries]
    t0 = time.perf_counter()
    for c in captions:
        s = matching.spacing(c)
        _ = [i for i, w in enumerate(wrapped) if w in s]
    return len(captions) / (time.perf_counter() - t0)


def _bare_automaton(entries: list[str]):
    import ahocorasick

    a = ahocorasick.Automaton()
    for i, e in enumerate(entries):
        a.add_word(matching.wrap_entry(e), i)
    a.make_automaton()
    return a


def _bare_loop(a, captions: list[str]) -> tuple[float, int]:
    """MetaCLIP's automaton loop: spacing with str.replace, automaton.iter, a set of ids per caption."""
    t0 = time.perf_counter()
    total = 0
    for c in captions:
        s = f" {c} "
        for p in [",", ".", ";", ":", "?", "!", "`"]:
            s = s.replace(p, f" {p} ")
        for ch in ["\t", "\n", "\r"]:
            s = s.replace(ch, " ")
        total += len({i for _, i in a.iter(s)})
    return time.perf_counter() - t0, total


def bench_bare(automaton, captions: list[str]) -> tuple[float, float]:
    """Best of 2 loops: one slow loop (a busy neighbour on this VM) would flatter every ratio."""
    secs, total = min(_bare_loop(automaton, captions) for _ in range(2))
    return len(captions) / secs, total / len(captions)


def _bare_proc(entries, captions, barrier, results) -> None:
    a = _bare_automaton(entries)
    barrier.wait()  # every process starts its loop at once
    results.put(_bare_loop(a, captions)[0])


def bench_bare_parallel(entries: list[str], captions: list[str], procs: int) -> float:
    """(b) in ``procs`` processes at once: the per-core ceiling when every core matches (the
    automaton is far larger than a core's cache, so cores slow each other down)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_bare_proc, args=(entries, captions, barrier, results)) for _ in range(procs)]
    for w in workers:
        w.start()
    secs = [results.get() for _ in workers]
    for w in workers:
        w.join()
    return len(captions) / max(secs)


def bench_matcher(entries: list[str], captions: list[str]) -> float:
    """Our Matcher.match_batch in one process (what each Spark task runs), for reference."""
    m = matching.Matcher.build(np.arange(len(entries)), entries)
    t0 = time.perf_counter()
    for i in range(0, len(captions), 10_000):
        m.match_batch(captions[i:i + 10_000])
    return len(captions) / (time.perf_counter() - t0)


def bench_spark(entries: list[str], captions: list[str], bare_once, rounds: int) -> dict[str, float]:
    """The Spark runs; then ``rounds`` rounds of (b) once and the stage on n and 3n once, interleaved.

    This VM's speed drifts by 15-25% within minutes (a neighbour's load), which moves a ratio of two
    figures taken minutes apart; a ratio per round, of figures taken seconds apart, and the median
    over rounds, does not drift with it.
    """
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from pyspark.sql import functions as F

    from kgcurate import config, ids, lake, tables
    from kgcurate.context import execute_stage
    from kgcurate.session import get_spark
    from kgcurate.stages import build_metadata
    from kgcurate.stages import match as match_stage

    spark = get_spark("bench-match", {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "3g"})
    master = spark.conf.get("spark.master")
    cores = int(master[6:-1]) if master.startswith("local[") and master[6:-1].isdigit() else os.cpu_count() or 1
    root = tempfile.mkdtemp(prefix="bench-match-")
    meta = spark.createDataFrame(pa.table({"entry": entries, "source": ["bench"] * len(entries)}).to_pandas())
    meta = meta.withColumn("qid", F.lit(None).cast("string"))
    lake.overwrite(spark, root, tables.METADATA, build_metadata.derive(meta))
    n = len(captions)

    def pairs_df(tag: str):
        df = spark.createDataFrame(pa.table({
            "image_url": [f"http://i.example/{tag}{i}.jpg" for i in range(n)], "text": captions,
        }).to_pandas()).withColumn("pair_id", ids.pair_id())
        return df.select("pair_id", "image_url", "text", F.lit("alt").alias("text_source"),
                         *[F.lit(None).cast("string").alias(c) for c in ("page_url", "crawl", "source_file", "run_id")])

    lake.overwrite(spark, root, tables.PAIRS, pairs_df("a").repartition(cores * 4))
    cfg = config.load(None)
    cfg["lake"] = root
    cfg["match"]["full"] = True
    # whole job, cold workers (includes broadcast + one automaton build per worker)
    t0 = time.perf_counter()
    summary = execute_stage(match_stage, cfg, spark)
    cold = time.perf_counter() - t0

    def best_run() -> tuple[float, Any]:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = execute_stage(match_stage, cfg, spark)
            runs.append(time.perf_counter() - t0)
        return min(runs), out

    # whole job again, warm (automaton cached in the reused workers), on n and then 3n captions:
    # the difference is the job's cost per caption without its per-run fixed costs (3n, not 2n:
    # the fixed cost swings by more than a second, which 2n captions did not outweigh)
    whole, _ = best_run()
    lake.append(spark, root, tables.PAIRS, pairs_df("b").repartition(cores * 4))
    lake.append(spark, root, tables.PAIRS, pairs_df("c").repartition(cores * 4))
    whole3, triple = best_run()
    assert triple.matches == 3 * summary.matches, (triple.matches, summary.matches)
    # matching stage alone, warm automaton cache in the reused workers, on n (pairs version 0) and
    # 3n captions (version 2): the difference is the stage's cost per caption without the fixed
    # cost of a Spark job (scheduling, snapshot, ~0.5 s here), which vanishes at 1B captions
    m_ids, m_entries, _, m_qids = match_stage.load_entries(spark, root, lake.version(spark, root, tables.METADATA))
    key = f"{match_stage.fingerprint(m_ids, m_entries, m_qids)}|False"
    payload = spark.sparkContext.broadcast((m_ids, m_entries, False))

    def passthrough(batches):
        for b in batches:
            yield pa.RecordBatch.from_arrays([b.column(0), b.column(0)], names=["pair_id", "entry_id"])

    def best_stage(fn, version: int, reps: int = 3) -> float:
        src = lake.read(spark, root, tables.PAIRS, version).select("pair_id", "text")
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            src.mapInArrow(fn, match_stage.OUT_DDL).write.format("noop").mode("overwrite").save()
            best = min(best, time.perf_counter() - t0)
        return best

    matcher_fn = match_stage.make_matcher_fn(key, payload)
    floor, floor3 = best_stage(passthrough, 0), best_stage(passthrough, 2)
    stage, stage3 = best_stage(matcher_fn, 0), best_stage(matcher_fn, 2)
    ratios = []
    for _ in range(rounds):
        bare = bare_once()
        t1, t3 = best_stage(matcher_fn, 0, reps=1), best_stage(matcher_fn, 2, reps=1)
        if t3 > t1:  # at toy sizes noise can make 3n no slower than n: no ratio then
            ratios.append(2 * n / (t3 - t1) / cores / bare)
    spark.stop()
    return {"ratios": ratios, "cores": cores, "cold_s": cold, "whole_s": whole, "whole3_s": whole3, "stage_s": stage,
            "stage3_s": stage3, "floor_s": floor, "floor3_s": floor3, "matches": summary.matches}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--captions", type=int, default=400_000)
    ap.add_argument("--naive", type=int, default=40, help="captions for the naive per-entry loop")
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--cores", type=int, default=2, help="local[N] for the Spark runs and processes for (b2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of (b) and the (c) stage")
    args = ap.parse_args()
    rng = random.Random(0)
    vocab = make_vocab(rng, max(1000, args.entries // 2))
    entries = make_entries(rng, vocab, args.entries)
    captions = make_captions(rng, vocab, args.captions)
    print(f"entries {len(entries):,} (mean {np.mean([len(e) for e in entries]):.1f} chars), "
          f"captions {len(captions):,} (mean {np.mean([len(c) for c in captions]):.1f} chars)")
    naive = bench_naive(entries, captions[: args.naive])
    automaton = _bare_automaton(entries)  # (b)'s, also timed again in the interleaved rounds
    bare, per_caption = bench_bare(automaton, captions)
    ours = bench_matcher(entries, captions)
    procs = args.cores
    bare_par = bench_bare_parallel(entries, captions, procs)
    print(f"(a) naive per-entry loop     : {naive:12,.1f} captions/s on 1 core")
    print(f"(b) bare pyahocorasick loop  : {bare:12,.0f} captions/s on 1 core ({per_caption:.1f} matches/caption)"
          f"  = {bare / naive:,.0f}x (a)")
    print(f"(b2) bare loop, {procs} processes : {bare_par:12,.0f} captions/s per core = {bare_par / bare:.2f}x (b) "
          "(this machine's per-core ceiling when all cores match)")
    print(f"    Matcher.match_batch      : {ours:12,.0f} captions/s on 1 core = {ours / bare:.2f}x (b)")
    if not args.no_spark:
        os.environ.setdefault("KGCURATE_MASTER", f"local[{args.cores}]")
        s = bench_spark(entries, captions, lambda: len(captions) / _bare_loop(automaton, captions)[0], args.rounds)
        n, c = len(captions), s["cores"]
        stage, whole = n / s["stage_s"], n / s["whole_s"]
        stage_m = 2 * n / max(s["stage3_s"] - s["stage_s"], 1e-9)
        floor_m = 2 * n / max(s["floor3_s"] - s["floor_s"], 1e-9)
        if min(s["stage3_s"] - s["stage_s"], s["whole3_s"] - s["whole_s"]) <= 0:
            print("    (too few captions: 3n ran no slower than n, the per-extra-caption figures mean nothing)")
        print(f"    Spark mapInArrow passthrough: {n / s['floor_s']:10,.0f} captions/s on {c} cores in one run, "
              f"{floor_m:,.0f} per extra caption (read + Arrow floor)")
        print(f"(c) Spark match stage, per extra caption: {stage_m:10,.0f} captions/s on {c} cores = "
              f"{stage_m / c:,.0f}/core = {stage_m / c / bare:.2f}x (b), {stage_m / c / bare_par:.2f}x (b2) per core "
              f"({n:,} captions in {s['stage_s']:.2f}s, {3 * n:,} in {s['stage3_s']:.2f}s; warm workers, best of 3)")
        if not s["ratios"]:
            print("(c)/(b) per core, interleaved rounds: none usable (too few captions)")
        else:
            r = sorted(s["ratios"])
            print(f"(c)/(b) per core, {len(r)} interleaved rounds (b once, stage on n and 3n once): "
                  f"median {float(np.median(r)):.2f}x (range {r[0]:.2f}-{r[-1]:.2f}x)")
        print(f"    Spark match stage, one run: {stage:10,.0f} captions/s on {c} cores = {stage / c:,.0f}/core "
              f"= {stage / c / bare:.2f}x (b) per core (with the job's fixed cost)")
        print(f"    whole match job, cold    : {n / s['cold_s']:12,.0f} captions/s on {c} cores "
              f"({s['cold_s']:.1f}s: broadcast, automaton build per worker, Delta writes, counts; "
              f"{s['matches']:,} matches)")
        print(f"    whole match job, warm    : {whole:12,.0f} captions/s on {c} cores = {whole / c:,.0f}/core "
              f"= {whole / c / bare:.2f}x (b) per core ({s['whole_s']:.1f}s for {n:,} captions)")
        marginal = 2 * n / max(s["whole3_s"] - s["whole_s"], 1e-9)
        print(f"(c') whole job per extra caption: {marginal:10,.0f} captions/s on {c} cores = {marginal / c:,.0f}/core "
              f"= {marginal / c / bare:.2f}x (b), {marginal / c / bare_par:.2f}x (b2) per core "
              f"({3 * n:,} captions in {s['whole3_s']:.1f}s; "
              f"fixed cost per run {max(s['whole_s'] - (s['whole3_s'] - s['whole_s']) / 2, 0):.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
