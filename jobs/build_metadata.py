"""spark-submit entry for `kgcurate build-metadata`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-metadata", *sys.argv[1:]]))
