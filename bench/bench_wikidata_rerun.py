"""What ``ingest-wikidata`` costs when its dump was already ingested unchanged: the skip (a look at the
entities table's last commit and at ``ingest_log``) against the re-read it replaces (``--force``: parse,
upsert MERGE, log), side by side on the same lake in interleaved rounds.

Input: ``--repeat`` copies of the real 2017 dump excerpt's lines (../shared/data) as one ``.json.bz2``
file, else the project's fixture. The re-read grows with the dump (~1.5 TB uncompressed for a full
one); the skip does not.

    .venv/bin/python bench/bench_wikidata_rerun.py [--repeat 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import bz2
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_wikidata import FIXTURE, REAL  # noqa: E402 - after the path insert
from bench.rounds import skip_against_redo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10, help="copies of the excerpt's lines in the dump")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from kgcurate import config
    from kgcurate.context import Context
    from kgcurate.session import get_spark
    from kgcurate.stages import ingest_wikidata as stage

    source = REAL if REAL.is_file() else FIXTURE / "sample.json"
    work = Path(tempfile.mkdtemp(prefix="kgcurate-bench-wd-rerun-"))
    dump = work / "latest-all.json.bz2"
    lines = source.read_bytes().rstrip(b"\n")
    dump.write_bytes(bz2.compress(b"\n".join([lines] * args.repeat) + b"\n"))
    spark = get_spark("bench-wikidata-rerun", {"spark.sql.shuffle.partitions": "2"})
    cfg = config.load(None)
    cfg["lake"] = str(work / "lake")
    cfg["wikidata"]["input"] = [str(dump)]

    def run(force: bool) -> stage.IngestWikidataSummary:
        cfg["wikidata"]["force"] = force
        return stage.execute(Context.of("ingest-wikidata", cfg, spark), cfg)

    s = run(False)
    print(f"input: {source.name} x{args.repeat}, {dump.stat().st_size / 1e6:.1f} MB bz2, {s.rows_out:,} entity lines; "
          f"first ingest {s.seconds:.1f} s")
    skip_against_redo(run, args.rounds, "re-read")
    spark.stop()


if __name__ == "__main__":
    main()
