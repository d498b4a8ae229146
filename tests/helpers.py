"""Helpers shared by test modules (a test module imports these, never another test module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from kgcurate import config, tables
from kgcurate import lake as lk
from kgcurate.context import execute_stage

REPO = Path(__file__).resolve().parents[1]


def wat_cfg(lake_root: str, inputs: list[str], **wat) -> dict:
    """The default config for an ingest-wat run of ``inputs`` into ``lake_root``."""
    cfg = config.load(None)
    cfg["lake"] = lake_root
    cfg["wat"]["inputs"] = inputs
    cfg["wat"].update(wat)
    return cfg


def execute(stage, spark, cfg: dict, *args, **kwargs):
    """Run a stage module's ``execute`` in the shared session, as the CLI does (one context per run)."""
    return execute_stage(stage, cfg, spark, *args, **kwargs)


def curated_run(spark, root: str, urls: list[str], run_id: str = "run-a") -> None:
    """A curated run (as balance writes it) of ``urls``, one caption each, for stages that read one."""
    rows = [(i, u, f"caption {i}", [7], run_id) for i, u in enumerate(urls)]
    lk.append(spark, root, tables.CURATED, spark.createDataFrame(rows, tables.schema(tables.CURATED)))
    run = [(run_id, 5.0, None, None, 0, False, len(rows), len(rows), 0, len(rows), {"pairs": 1},
            datetime.now(timezone.utc))]
    lk.append(spark, root, tables.CURATION_RUNS, spark.createDataFrame(run, tables.schema(tables.CURATION_RUNS)))


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m kgcurate.cli ARGS`` on this checkout's libs, in its own process group (see :func:`kill_when`)."""
    path = os.pathsep.join(p for p in (str(REPO / "libs"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "KGCURATE_MASTER": "local[2]", "PYSPARK_PYTHON": sys.executable}
    cmd = [sys.executable, "-m", "kgcurate.cli", *args, "--spark-conf", "spark.sql.shuffle.partitions=2",
           "--spark-conf", "spark.driver.memory=1g"]
    # Own process group: SIGKILL reaches the driver and its JVM at once, like a lost node.
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 400) -> bool:
    """SIGKILL the process group as soon as ``ready()``; False if the job ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return True
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    raise AssertionError("the job never reached the point to kill it at")
