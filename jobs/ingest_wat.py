"""spark-submit entry for `kgcurate ingest-wat`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest-wat", *sys.argv[1:]]))
