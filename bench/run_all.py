"""`make bench`: every benchmark in bench/, each measuring against its own baseline in the same run.

Sizes are the small defaults that finish in minutes on a 2-core machine; each script takes flags
for the sizes the issues ask for (see docs and each script's --help).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_wat.py", "bench_ingest_spark.py", "bench_wikidata.py", "bench_wikidata_rerun.py",
           "bench_metadata_rerun.py", "bench_closure.py", "bench_train_input.py",
           "bench_match.py", "bench_balance.py", "bench_report.py", "bench_pipeline.py", "bench_scale.py"]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        path = HERE / name
        if not path.exists():
            print(f"== {name}: not present, skipped")
            continue
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(path)], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
