"""spark-submit entry for `kgcurate balance`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["balance", *sys.argv[1:]]))
