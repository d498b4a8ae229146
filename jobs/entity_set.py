"""spark-submit entry for `kgcurate entity-set`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["entity-set", *sys.argv[1:]]))
