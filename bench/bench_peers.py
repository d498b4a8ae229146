"""WAT to image-text pairs against the peer a user would pick instead: cc2dataset's ``process_wat``.

cc2dataset (https://github.com/rom1504/cc2dataset, the PySpark tool behind LAION's CommonCrawl
extraction) parses each WAT file with fastwarc + simdjson + urljoin. Its released 1.5.0 package runs
here in this process beside our ``WatParser`` on the same generated files, in interleaved rounds
(peer, ours, pure Python; the order reversed every other round, as ``rounds.py`` does), and the median
of the per-round CPU-time ratios is reported: CPU time of this one-threaded process is the per-core cost
and stays meaningful on a shared machine.

The two must agree: cc2dataset keeps ``IMG@/src`` links with a non-empty ``alt`` and an absolute
http(s) URL; we keep alt *and* title texts, whitespace-collapsed and at most 2,000 characters, and
decode character references in ``src`` and ``alt`` (``&amp;``) as a browser does. So the check compares
cc2dataset's (url, alt) pairs, normalised our way, with our alt pairs. The work differs a little either
way: cc2dataset hashes an MD5 uid per pair (about 2% of its time; our pair_id is computed later, in
Spark), we keep title texts too and decode character references.

cc2dataset is never a project dependency: ``make bench-peers-setup`` installs it and the packages only
it imports (pysimdjson, loguru) into ``.cache/peers``, which this script puts on ``sys.path``.

    make bench-peers-setup
    .venv/bin/python bench/bench_peers.py --size-mb 100 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import bench_wat  # bench/ is on sys.path: this script's folder
from kgcurate.wat.parse import unescape_attr

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / ".cache" / "peers"
MAX_TEXT = 2000  # our parser's default text length limit


def load_peer(peers: Path):
    """cc2dataset's ``process_wat`` from ``peers`` (see ``make bench-peers-setup``), its log silenced."""
    sys.path.insert(0, str(peers))
    try:
        from cc2dataset import main as cc
        from loguru import logger
    except ImportError as exc:
        raise SystemExit(f"bench_peers: cc2dataset is not installed in {peers} ({exc}): "
                         "run `make bench-peers-setup`") from None
    logger.remove()  # one INFO line per file otherwise; its warnings and errors still show
    logger.add(sys.stderr, level="WARNING")
    return cc.process_wat


def _collapse(text: str) -> str:
    return " ".join(text.split())


def peer_pairs(process_wat, paths: list[Path], out: list | None = None) -> int:
    n = 0
    for p in paths:
        for _uid, url, alt, _cc_file, page in process_wat(str(p), "image"):
            n += 1
            if out is not None:
                out.append((url, alt, page))
    return n


def our_pairs(paths: list[Path], out: list | None = None) -> int:
    """WatParser over ``paths`` (bench_wat's runner, with the compiled path when built): the number of pairs."""
    return bench_wat.ours(paths, out)[2]


def our_pairs_python(paths: list[Path]) -> int:
    """The same with ``KGCURATE_NATIVE=0`` (pure Python)."""
    return bench_wat.ours_python(paths)[2]


def agreement(paths: list[Path], process_wat) -> tuple[bool, str, int, int]:
    """cc2dataset's pairs, normalised our way, against our alt pairs on every file of ``paths`` (a file it
    fails on gives it no pair, and its run no error); and each side's pair count, which every timed round
    must give again."""
    theirs: list = []
    ours: list = []
    peer_pairs(process_wat, paths, theirs)
    our_pairs(paths, ours)
    want = Counter((unescape_attr(url), t, page) for url, alt, page in theirs
                   if (t := _collapse(unescape_attr(alt))) and len(t) <= MAX_TEXT)
    got = Counter((url, text, page) for url, text, source, page in ours if source == "alt")
    only_theirs, only_ours = want - got, got - want
    line = (f"cc2dataset {len(theirs):,} pairs ({sum(want.values()):,} after our normalisation), ours "
            f"{len(ours):,} ({sum(got.values()):,} alt); only in theirs {sum(only_theirs.values())}, "
            f"only in ours {sum(only_ours.values())}")
    if only_theirs or only_ours:
        line += f"; e.g. {next(iter(only_theirs or only_ours))!r}"
    return not only_theirs and not only_ours, line, len(theirs), len(ours)


def cpu(fn) -> tuple[float, int]:
    t = time.process_time()
    n = fn()
    return time.process_time() - t, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=20, help="generated input size, compressed (default 20)")
    ap.add_argument("--dir", help="where to keep the generated input (default: a temp folder)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--peers", type=Path, default=PEERS, help="where cc2dataset is installed (default .cache/peers)")
    args = ap.parse_args(argv)
    process_wat = load_peer(args.peers)

    directory = args.dir or os.path.join(tempfile.gettempdir(), f"kgcurate-bench-wat-{args.size_mb:g}mb")
    paths = bench_wat.make_bench_input(directory, args.size_mb)
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"input: {len(paths)} generated WAT files, {size:.1f} MB compressed, in {directory}")
    same, line, peer_want, our_want = agreement(paths, process_wat)
    print(f"agreement on all {len(paths)} files: {same}: {line}")
    if not same:  # the ratios would compare different work
        print("not timed: the two disagree on this input")
        return 1

    print(f"compiled path (kgcurate_native): {'yes' if bench_wat.native_module() else 'NOT BUILT'}")
    ratios, py_ratios = [], []
    for r in range(args.rounds):
        sides = {"peer": lambda: peer_pairs(process_wat, paths), "ours": lambda: our_pairs(paths),
                 "python": lambda: our_pairs_python(paths)}
        got = {name: cpu(sides[name]) for name in (sides if r % 2 == 0 else reversed(sides))}  # rounds.py's order
        (peer_s, peer_n), (our_s, our_n), (py_s, py_n) = got["peer"], got["ours"], got["python"]
        if (peer_n, our_n, py_n) != (peer_want, our_want, our_want):
            raise SystemExit(f"bench_peers: round {r + 1} gave {peer_n:,} / {our_n:,} / {py_n:,} pairs, the check "
                             f"{peer_want:,} / {our_want:,}: a side failed on some file; no ratio")
        ratios.append(peer_s / our_s)
        py_ratios.append(peer_s / py_s)
        print(f"round {r + 1}: cc2dataset process_wat {peer_s:6.2f}s cpu ({size / peer_s:5.1f} MB/s, {peer_n:,} pairs)"
              f"   WatParser {our_s:6.2f}s cpu ({size / our_s:5.1f} MB/s, {our_n:,} pairs)"
              f"   pure Python {py_s:6.2f}s cpu ({size / py_s:5.1f} MB/s)"
              f"   ours = {peer_s / our_s:.2f}x its speed ({peer_s / py_s:.2f}x pure Python)", flush=True)
    print(f"per core: WatParser = {statistics.median(ratios):.2f}x cc2dataset's speed "
          f"(median of {args.rounds} interleaved rounds, {min(ratios):.2f}-{max(ratios):.2f}x; issue 14's goal >= 4x); "
          f"pure Python (KGCURATE_NATIVE=0) {statistics.median(py_ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
