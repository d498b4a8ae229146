"""spark-submit entry for `kgcurate maintain`: same arguments, same code (kgcurate.cli)."""

import sys

from kgcurate.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
