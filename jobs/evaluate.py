"""spark-submit entry for `kgcurate evaluate`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
