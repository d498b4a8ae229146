"""spark-submit entry for `kgcurate make-sample`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-sample", *sys.argv[1:]]))
