"""What ``kgcurate report`` costs as the curated set grows: its numbers (:func:`kgcurate.stages.report.gather`)
on a lake whose ``pairs`` and ``matches`` hold ``--rows`` generated pairs
(:func:`bench.bench_lake_size_match.prefill_matched`) and whose ``curated`` holds one ``balance
--target-size`` run of them. The report reads only aggregates, but each is a pass over a table; the
passes over the curated set are the ones that grow with what users curate (400M-1B pairs).

``--old FILE`` times another version of ``report.py`` side by side in the same JVM, on the same lake, in
interleaved rounds (each version once per round, in a rotated order), and checks that both report
the same numbers; e.g. the code before the curated set was read once::

    git show 3d85531:libs/kgcurate/stages/report.py > /tmp/report_old.py
    python bench/bench_report.py --rows 4000000 --old /tmp/report_old.py [--work DIR [--reuse]]

Prints each round, the median seconds and Spark jobs of each version, and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_lake_size_match import prefill_matched  # noqa: E402 - after the path insert


def comparable(data: dict) -> dict:
    """A report's numbers without its timestamp, histograms in a fixed order."""
    out = {k: v for k, v in data.items() if k != "generated_at"}
    for k in ("hist_before", "hist_after"):
        if k in out:
            out[k] = sorted(out[k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="pairs (and their matches) in the lake")
    ap.add_argument("--entries", type=int, default=100_000, help="metadata entries")
    ap.add_argument("--target-size", type=int, default=0, help="balance's target (default: half of --rows)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old", default=None, help="another report.py to time side by side (the baseline)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--work", default=None, help="folder for the lake (default: a temp folder, removed)")
    ap.add_argument("--reuse", action="store_true", help="reuse the lake a previous run left in --work")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="kgcurate-bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["KGCURATE_MASTER"] = f"local[{args.cores}]"
    try:
        run(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    """Set the lake up (unless reused), then time the report's versions in interleaved rounds."""
    from kgcurate import config, lake, tables
    from kgcurate.context import execute_stage
    from kgcurate.session import get_spark
    from kgcurate.stages import balance as balance_stage
    from kgcurate.stages import report

    spark = get_spark("bench-report", {"spark.sql.shuffle.partitions": str(4 * args.cores),
                                       "spark.driver.memory": args.driver_memory})
    root = str(work / "lake")
    setup = work / "setup.json"
    if not (args.reuse and setup.exists()):
        t0 = time.perf_counter()
        prefill_matched(spark, root, args.rows, args.entries)
        cfg = config.load(None)
        cfg["lake"] = root
        cfg["balance"].update(target_size=args.target_size or args.rows // 2, seed=0)
        s = execute_stage(balance_stage, cfg, spark)
        setup.write_text(json.dumps({"rows": args.rows, "curated": s.pairs_out}))
        print(f"lake set up in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"lake {root}: {json.loads(setup.read_text())}; {args.cores} cores", flush=True)

    versions = {"report": report.gather}
    if args.old:
        spec = importlib.util.spec_from_file_location("report_old", args.old)
        assert spec and spec.loader
        old = importlib.util.module_from_spec(spec)
        sys.modules["report_old"] = old  # its dataclasses look their module up there
        spec.loader.exec_module(old)
        versions = {"old": old.gather, **versions}
    sc = spark.sparkContext

    def last_job() -> int:
        return max(sc.statusTracker().getJobIdsForGroup(None) or [0])

    results = {name: fn(spark, root) for name, fn in versions.items()}  # warm-up, and the numbers compared
    if args.old:
        same = comparable(results["old"]) == comparable(results["report"])
        print(f"old and new report the same numbers: {same}", flush=True)
        if not same:
            sys.exit(1)
    times: dict[str, list[float]] = {v: [] for v in versions}
    jobs: dict[str, list[int]] = {v: [] for v in versions}
    names = list(versions)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            j0, t0 = last_job(), time.perf_counter()
            versions[name](spark, root)
            times[name].append(time.perf_counter() - t0)
            jobs[name].append(last_job() - j0)
        print(f"round {r + 1}: " + ", ".join(f"{v} {times[v][-1]:.1f} s ({jobs[v][-1]} jobs)" for v in names),
              flush=True)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    curated = lake.read(spark, root, tables.CURATED).count()
    for v in names:
        print(f"{v:8s}: median {med[v]:6.1f} s, {statistics.median(jobs[v]):.0f} Spark jobs, "
              f"{curated / med[v] / args.cores / 1e6:.2f} M curated rows/s per core")
    if args.old:
        print(f"report / old: {med['report'] / med['old']:.2f}x the time")
    spark.stop()


if __name__ == "__main__":
    main()
