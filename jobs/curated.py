"""spark-submit entry for `kgcurate curated`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["curated", *sys.argv[1:]]))
