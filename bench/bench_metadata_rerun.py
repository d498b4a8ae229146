"""What ``build-metadata`` costs when nothing it reads changed: the skip (the note on the metadata
commit, the versions of the tables it read, the entries' fingerprint, then the summary's counts)
against the rebuild it replaces (``--force``: entity sets recomputed, KG names guarded, three tables
rewritten), side by side on the same lake in interleaved rounds.

Input, as ``conf/demo.yaml`` builds it: WordNet (the system's /usr/share/wordnet when present, else
the fixture excerpt), the MetaCLIP fixture list, and ``conf/entity_sets/organisms.yaml`` over the
fixture dump's real Wikidata entities (organisms among them; the 2017 excerpt in ../shared/data has
none). Both paths read
and fingerprint the entry lists; only the rebuild walks the taxonomy (dozens of Spark jobs whatever
the lake's size) and rewrites tables that grow with the KG.

    .venv/bin/python bench/bench_metadata_rerun.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_wikidata import FIXTURE  # noqa: E402 - after the path insert
from bench.rounds import skip_against_redo  # noqa: E402

SYSTEM_WORDNET = Path("/usr/share/wordnet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from kgcurate import config
    from kgcurate.context import Context
    from kgcurate.session import get_spark
    from kgcurate.stages import build_metadata, ingest_wikidata

    work = Path(tempfile.mkdtemp(prefix="kgcurate-bench-md-rerun-"))
    spark = get_spark("bench-metadata-rerun", {"spark.sql.shuffle.partitions": "2"})
    cfg = config.load(None)
    cfg["lake"] = str(work / "lake")
    dump = FIXTURE / "sample.json"
    cfg["wikidata"]["input"] = [str(dump)]
    ingest_wikidata.execute(Context.of("ingest-wikidata", cfg, spark), cfg)
    wordnet_dir = SYSTEM_WORDNET if (SYSTEM_WORDNET / "data.noun").is_file() else ROOT / "tests/fixtures/wordnet"
    cfg["metadata"].update(wordnet_dir=str(wordnet_dir),
                           metaclip_metadata=str(ROOT / "tests/fixtures/metaclip/metadata.json"),
                           entity_sets=[str(ROOT / "conf/entity_sets/organisms.yaml")])

    def run(force: bool) -> build_metadata.BuildMetadataSummary:
        cfg["metadata"]["force"] = force
        return build_metadata.execute(Context.of("build-metadata", cfg, spark), cfg)

    s = run(False)
    print(f"input: WordNet {wordnet_dir} ({s.entries['wordnet']:,} strings), MetaCLIP fixture "
          f"({s.entries['metaclip']:,}), organisms over {dump.name} ({s.entries['kg']:,} KG names); "
          f"{s.rows_total:,} metadata rows; first build {s.seconds:.1f} s")
    skip_against_redo(run, args.rounds, "rebuild")
    spark.stop()


if __name__ == "__main__":
    main()
