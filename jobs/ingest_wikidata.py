"""spark-submit entry for `kgcurate ingest-wikidata`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest-wikidata", *sys.argv[1:]]))
