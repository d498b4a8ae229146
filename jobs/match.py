"""spark-submit entry for `kgcurate match`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["match", *sys.argv[1:]]))
