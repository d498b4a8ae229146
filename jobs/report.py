"""spark-submit entry for `kgcurate report`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
