"""spark-submit entry for `kgcurate download`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
