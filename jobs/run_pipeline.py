"""spark-submit entry for `kgcurate run`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
