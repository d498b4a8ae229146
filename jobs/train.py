"""Entry for `kgcurate train` (no Spark: run it with python, or under spark-submit like the others)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
