"""Cost per GB of WAT at several input sizes (issue #14, goals 4 and 5): fixed cost apart from cost per GB.

Each size runs ingest-wat -> build-metadata -> match -> balance into a fresh lake, in its own process (a
fresh JVM, so each size's driver peak RSS is its own), on the first files of one generated input (50 MB
files, so every size keeps both cores busy: 5 files at 0.25 GB, 80 at 4 GB). In the same run, the bare
parser (``WatParser`` in one process, one core, no Spark) parses the same files, which is the per-GB floor
the ingest job is compared with.

Reported per size: each stage's wall seconds, CPU seconds per GB (everything the run started: driver JVM,
PySpark's workers, counted by a cgroup, ``cpu_meter``) and occupied core-seconds per GB (wall x cores:
what a cluster bills), pairs, driver peak RSS (the driver JVM, which in local mode also runs the
executors, and the driver's Python). From two sizes, the *marginal* cost (seconds per extra GB, and per
extra million pairs for match and balance) and the fixed cost (the intercept), in both measures. Goal 4:
per-GB cost within +-25% across sizes, and the ingest job per core at least 0.7x the bare parser's speed
per extra GB, both in CPU time (the parser's is this process's CPU time; sessions before 36 compared it
with wall x cores, which counts idle cores too).
The projection (goal 5) scales the marginal costs to a full crawl: 90,000 WAT files of ~357 MB.

    python bench/bench_scale.py --sizes-mb 250,1000,4000       # the issue's sizes (an idle machine, ~40 min)
    python bench/bench_scale.py                                 # 50, 100, 200 MB: a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cpu_meter  # bench/ is on sys.path: this script's folder

FILE_MB = 50
METER = "kgcurate-bench-scale"  # the cgroup each size's child process counts its CPU in
CRAWL_FILES = 90_000
CRAWL_FILE_MB = 357.0
_B36 = "0123456789abcdefghijkmnopqrstuvwxyz"  # digits without "l"
STAGES = ("ingest-wat", "build-metadata", "match", "balance")


def relabel(src: Path, dst: Path, token: bytes) -> None:
    """A copy of ``src`` whose every ``.example`` host suffix is ``.examp<token>``: the same records,
    sizes and shape, but other image and page URLs, so its pairs are new pairs. Each gzip member is
    inflated, relabelled and deflated again (level 6, as the generator writes), about 3x faster than
    generating a file, which is what makes a 4 GB input affordable on a small machine."""
    assert len(token) == 2  # same length: Content-Length and every offset stay right
    data = src.read_bytes()
    view = memoryview(data)
    out = []
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        parts = []
        i = pos
        while not d.eof and i < len(data):
            piece = view[i:i + 65536]
            parts.append(d.decompress(piece))
            i += len(piece)
        pos = i - len(d.unused_data)
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        out.append(c.compress(b"".join(parts).replace(b".example", b".examp" + token)) + c.flush())
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(b"".join(out))
    tmp.rename(dst)


def make_input(directory: Path, size_mb: float, seed: int = 3, unique: int = 5) -> list[Path]:
    """~``size_mb`` of WAT in files of ~FILE_MB: ``unique`` generated files (``write_sample``, each its own
    seed), then relabelled copies of them (:func:`relabel`); file k is the same whatever the total, so a
    larger input extends a smaller one, and files already there are reused."""
    from kgcurate.wat.sample import write_sample

    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for k in range(max(1, round(size_mb / FILE_MB))):
        path = directory / f"CC-MAIN-2099-01-scale-{k:05d}.warc.wat.gz"
        if not path.exists() and k < unique:
            part = directory / f".part-{k:05d}"
            m = write_sample(part, files=1, seed=seed * 100_003 + k, corrupt=False, size_mb=FILE_MB)
            Path(m.files[0]).rename(path)
            for f in part.iterdir():
                f.unlink()
            part.rmdir()
        elif not path.exists():
            copy = k // unique  # 1, 2, ...: two base-36 digits, no "l" in the digits, so never "le" (".example")
            relabel(paths[k % unique], path, (_B36[copy // len(_B36) % len(_B36)] + _B36[copy % len(_B36)]).encode())
        paths.append(path)
    return paths


def bare_parser(paths: list[Path]) -> tuple[float, int]:
    """(CPU seconds, pairs) of WatParser over ``paths`` in this process: one core, no Spark."""
    from kgcurate.wat.parse import WatParser

    t = time.process_time()
    pairs = 0
    for p in paths:
        parser = WatParser()
        with open(p, "rb") as f:
            for b in parser.parse(f):
                pairs += len(b.image_url)
    return time.process_time() - t, pairs


def _rss_kb(pid: int | str) -> int:
    """Peak resident set (VmHWM) of a process, kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_size(paths: list[Path], work: Path, cores: int, target_share: float) -> dict:
    """One size, in this (child) process: the four stages into a fresh lake; seconds, pairs, peak RSS."""
    os.environ.setdefault("KGCURATE_MASTER", f"local[{cores}]")
    meter = cpu_meter.Meter(METER).start().require_exact()  # before the JVM starts: it and its workers inherit it
    from kgcurate import config, lake, tables
    from kgcurate.context import execute_stage
    from kgcurate.session import get_spark
    from kgcurate.stages import balance, build_metadata, ingest_wat, match
    from kgcurate.wat.sample import write_sample

    t0 = time.perf_counter()
    spark = get_spark("kgcurate-bench-scale", {"spark.sql.shuffle.partitions": str(cores * 2)})
    session_s = time.perf_counter() - t0
    cfg = config.load(None)
    cfg["lake"] = str(work / "lake")
    cfg["wat"].update(inputs=[str(p) for p in paths], progress_interval=3600)
    wn = "/usr/share/wordnet" if Path("/usr/share/wordnet/data.noun").exists() else str(
        Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "wordnet")
    cfg["metadata"].update(wordnet=True, wordnet_dir=wn)
    stages = (ingest_wat, build_metadata, match, balance)
    # Warm-up: the four stages once on a small sample into a scratch lake, so the JVM has compiled its hot
    # paths (Arrow, Parquet, Delta) before the timed runs, as in a cluster job that works through many files.
    t = time.perf_counter()
    warm = write_sample(work / "warm-up", files=2, records=2000, seed=99, corrupt=False)
    wcfg = copy.deepcopy(cfg)
    wcfg["lake"] = str(work / "warm-up-lake")
    wcfg["wat"]["inputs"] = [warm.listing]
    wcfg["balance"]["target_size"] = 100
    for stage in stages:
        execute_stage(stage, wcfg, spark)
    warm_s = time.perf_counter() - t
    secs: dict[str, float] = {}
    cpu: dict[str, float] = {}
    pairs = 0
    for name, stage in zip(STAGES, stages, strict=True):
        if name == "balance":
            matched = lake.read(spark, cfg["lake"], tables.MATCHES).select("pair_id").distinct().count()
            cfg["balance"]["target_size"] = max(1, int(matched * target_share))
        t, c = time.perf_counter(), meter.seconds()
        execute_stage(stage, cfg, spark)
        secs[name], cpu[name] = time.perf_counter() - t, meter.seconds() - c
        if name == "ingest-wat":
            pairs = lake.read(spark, cfg["lake"], tables.PAIRS).count()
    jvm = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    out = {"secs": secs, "cpu": cpu, "session_s": session_s, "warm_s": warm_s, "pairs": pairs,
           "jvm_rss_kb": _rss_kb(jvm), "py_rss_kb": _rss_kb("self")}
    spark.stop()
    meter.stop()
    return out


def _slope(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float]:
    """(slope, intercept) of the line through two points."""
    b = (y1 - y0) / (x1 - x0)
    return b, y0 - b * x0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", default="50,100,200",
                    help="comma-separated input sizes, MB compressed (default 50,100,200; the issue: 250,1000,4000)")
    ap.add_argument("--dir", type=Path, help="where the generated input is kept (default: a temp folder)")
    ap.add_argument("--cores", type=int, default=2, help="local[N] (default 2)")
    ap.add_argument("--target-share", type=float, default=0.25,
                    help="balance --target-size as a share of matched pairs")
    ap.add_argument("--price-per-core-hour", type=float, default=0.048)
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one size in a fresh process: JSON args
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        res = run_size([Path(p) for p in spec["paths"]], Path(spec["work"]), args.cores, args.target_share)
        print("RESULT " + json.dumps(res))
        return 0

    sizes = sorted(float(s) for s in args.sizes_mb.split(","))
    directory = args.dir or Path(tempfile.gettempdir()) / f"kgcurate-bench-scale-{sizes[-1]:g}mb"
    t = time.perf_counter()
    every = make_input(directory, sizes[-1])
    print(f"input: {len(every)} files, {sum(p.stat().st_size for p in every) / 1e9:.2f} GB in {directory} "
          f"({time.perf_counter() - t:.0f} s to make or find)", flush=True)
    rows = []
    for size in sizes:
        paths = every[:max(1, round(size / FILE_MB))]
        gb = sum(p.stat().st_size for p in paths) / 1e9
        parse_cpu, parse_pairs = bare_parser(paths)
        with tempfile.TemporaryDirectory(prefix="kgcurate-bench-scale-") as work:
            spec = json.dumps({"paths": [str(p) for p in paths], "work": work})
            child = subprocess.Popen([sys.executable, __file__, "--cores", str(args.cores), "--target-share",
                                      str(args.target_share), "--child", spec], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            out, err = child.communicate()
            proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
            cpu_meter.remove_groups(METER, child.pid)  # its JVM outlived the child's meter.stop()
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"bench_scale: the {size:g} MB run failed (exit {proc.returncode})")
        res = json.loads(line[len("RESULT "):])
        res.update(gb=gb, files=len(paths), parse_cpu=parse_cpu, parse_pairs=parse_pairs)
        rows.append(res)
        secs, cpu = res["secs"], res["cpu"]
        print(f"{gb:5.2f} GB ({len(paths)} files, {res['pairs']:,} pairs): "
              f"bare parser {parse_cpu / gb:6.1f} CPU-s/GB; "
              + "  ".join(f"{k} {v:6.1f}s wall, {cpu[k] / gb:6.1f} CPU-s/GB ({v * args.cores / gb:6.1f} occupied "
                          "core-s/GB)" for k, v in secs.items())
              + f"; session start {res['session_s']:.1f}s, warm-up {res['warm_s']:.1f}s; "
              f"peak RSS driver JVM {res['jvm_rss_kb'] / 1024:,.0f} MB, "
              f"driver Python {res['py_rss_kb'] / 1024:,.0f} MB", flush=True)

    cores = args.cores
    # Two measures of a stage's cost: CPU seconds of the whole process tree (the per-core cost: what the work
    # takes, comparable with the bare parser's CPU time), and wall x cores (what a cluster bills for the
    # cores it holds, idle ones in single-threaded driver phases included).
    measures = {"CPU": lambda r, st: r["cpu"][st], "occupied": lambda r, st: r["secs"][st] * cores}
    print("\nper-GB cost (CPU-s/GB) by size, and its spread around the median (goal: within +-25%):")
    for stage in STAGES:
        if stage == "build-metadata":  # WordNet and the entity sets: the same work whatever the WAT input
            continue
        per = [r["cpu"][stage] / r["gb"] for r in rows]
        med = sorted(per)[len(per) // 2]
        spread = max(abs(p / med - 1) for p in per)
        print(f"  {stage:15s} " + "  ".join(f"{p:7.1f}" for p in per) + f"   max {spread:+.0%} from the median")
    if len(rows) >= 2:
        lo, hi = rows[-2], rows[-1]
        print(f"\nmarginal cost between {lo['gb']:.2f} and {hi['gb']:.2f} GB (fixed = intercept at 0):")
        crawl_gb = CRAWL_FILES * CRAWL_FILE_MB / 1e3
        proj_h = {m: 0.0 for m in measures}
        ingest_b = {}
        for stage in STAGES:
            parts = []
            for m, cost in measures.items():
                b, a = _slope(lo["gb"], cost(lo, stage), hi["gb"], cost(hi, stage))
                bp, _ = _slope(lo["pairs"] / 1e6, cost(lo, stage), hi["pairs"] / 1e6, cost(hi, stage))
                if stage != "build-metadata":
                    proj_h[m] += b * crawl_gb / 3600
                if stage == "ingest-wat":
                    ingest_b[m] = b
                parts.append(f"{m} {b:7.1f} s per extra GB ({bp:6.2f} per extra M pairs), fixed {a:6.1f} s")
            print(f"  {stage:15s} " + "; ".join(parts))
        parse_b, _ = _slope(lo["gb"], lo["parse_cpu"], hi["gb"], hi["parse_cpu"])
        print(f"  bare parser     {parse_b:7.1f} CPU-s per extra GB; the ingest job per core = "
              f"{parse_b / ingest_b['CPU']:.2f}x the bare parser's speed per extra GB in CPU time (goal >= 0.7x); "
              f"{parse_b / ingest_b['occupied']:.2f}x counting the cores it holds")
        print(f"\nprojection from marginal costs, a full crawl ({CRAWL_FILES:,} files x {CRAWL_FILE_MB:.0f} MB = "
              f"{crawl_gb / 1e3:.1f} TB; ingest, match, balance; build-metadata is a fixed cost): "
              f"{proj_h['occupied']:,.0f} core-hours held, ${proj_h['occupied'] * args.price_per_core_hour:,.0f} at "
              f"${args.price_per_core_hour}/core-hour; {proj_h['CPU']:,.0f} CPU-hours of work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
