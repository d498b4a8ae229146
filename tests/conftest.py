"""Shared fixtures: one local SparkSession for the whole test session, temp lakes, real data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = REPO / "tests" / "fixtures"
# torch on these CPUs: two OpenMP threads per process were ~15x slower than one (the train/evaluate tests).
# Set before anything imports torch; the CLI subprocesses the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def spark():
    """One small local session: 2 cores, 2 shuffle partitions, no UI."""
    os.environ.setdefault("KGCURATE_MASTER", "local[2]")
    from kgcurate.session import get_spark

    session = get_spark(
        "kgcurate-tests",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.databricks.delta.snapshotPartitions": "1",
            # Projections outside whole-stage code generation (Delta's log replay over its wide action
            # schema, ~100+ fields) are interpreted, not generated as Java source in every task: a JFR
            # profile of test_balance_incremental found a third of the task threads' CPU generating that
            # source and stripping its comments. Whole-stage code generation stays on, and the tests that
            # start their own processes (compose, spark-submit, the SIGKILL faults) keep production's.
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        },
    )
    yield session
    session.stop()


@pytest.fixture()
def lake(tmp_path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture(scope="module")
def lake_copies(tmp_path_factory) -> Callable[[Any, Callable[[str], Any], str], Any]:
    """``copy(key, build, dest)``: ``build(root)`` runs once per ``key`` in a module; every call copies
    that lake to ``dest`` and returns what ``build`` returned. For tests that each change a lake built the
    same way (metadata, pairs, a completed match: ~11 s a time): a copied Delta table is the same table,
    since its log names its files relative to the table's directory."""
    built: dict[Any, tuple[str, Any]] = {}

    def copy(key: Any, build: Callable[[str], Any], dest: str) -> Any:
        if key not in built:
            src = str(tmp_path_factory.mktemp("built") / "lake")
            built[key] = (src, build(src))
        src, result = built[key]
        shutil.copytree(src, dest)
        return result

    return copy


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real external excerpts); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (fresh clone): real-data test skipped")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
