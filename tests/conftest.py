"""Shared fixtures: one local SparkSession for the whole test session, temp lakes, real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = REPO / "tests" / "fixtures"
# torch on these CPUs: two OpenMP threads per process were ~15x slower than one (the train/evaluate tests).
# Set before anything imports torch; the CLI subprocesses the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Spark compiles Java for every query plan (whole-stage codegen, then Janino per expression). On the
# tests' tiny tables that compile time is most of a query: interpreted evaluation took test_report.py
# from 165 s to 108 s here. Results are the same by Spark's contract (its own suites run both modes);
# jobs and deploys keep codegen. KGCURATE_TEST_CODEGEN=1 runs the suite with it, as production does.
TEST_SPARK_CONF = {} if os.environ.get("KGCURATE_TEST_CODEGEN") == "1" else {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
# The same for the CLI subprocesses the tests start (pyspark reads this when it launches a JVM);
# spark-submit runs (deploy, compose) read their own configuration and keep codegen.
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", " ".join(
    [f"--conf {key}={value}" for key, value in TEST_SPARK_CONF.items()] + ["pyspark-shell"]))


@pytest.fixture(scope="session")
def spark():
    """One small local session: 2 cores, 2 shuffle partitions, no UI, no codegen (above)."""
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from kgcurate.session import get_spark

    session = get_spark(
        "kgcurate-tests",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.databricks.delta.snapshotPartitions": "1",
            **TEST_SPARK_CONF,
        },
    )
    yield session
    session.stop()


@pytest.fixture()
def lake(tmp_path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real external excerpts); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (fresh clone): real-data test skipped")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
