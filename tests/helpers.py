"""Helpers shared by test modules (a test module imports these, never another test module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

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


def _duckdb_extension(module) -> str:
    """The extension file a ``duckdb-extension-*`` wheel holds for the running DuckDB."""
    import duckdb

    name = module.__name__.removeprefix("duckdb_extension_")
    return str(Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension")


def duckdb_with_delta(s3_endpoint: str | None = None):
    """A DuckDB connection with its delta extension loaded from the ``duckdb-extension-delta`` wheel (a dev
    dependency): nothing is downloaded, and DuckDB checks the extension's signature as it loads it. With
    ``s3_endpoint`` (moto), also httpfs and an S3 secret from the AWS variables, as a user would declare it."""
    import duckdb
    import duckdb_extension_delta

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.load_extension(_duckdb_extension(duckdb_extension_delta))
    if s3_endpoint:
        import duckdb_extension_httpfs

        con.load_extension(_duckdb_extension(duckdb_extension_httpfs))
        url = urlsplit(s3_endpoint)
        con.execute(f"""CREATE SECRET lake (TYPE s3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
                        SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', REGION '{os.environ["AWS_REGION"]}',
                        ENDPOINT '{url.netloc}', URL_STYLE 'path', USE_SSL {str(url.scheme == "https").lower()})""")
    return con


def _plain(value, dtype):
    """One cell as a comparable Python value, whichever reader gave it: a map as sorted (key, value) pairs
    (Spark gives a dict, Arrow a list of pairs), a struct as a tuple, a timestamp as its instant (Spark
    gives local naive time, Arrow an aware UTC one), a float by its repr (NaN equals NaN)."""
    from pyspark.sql.types import ArrayType, DoubleType, MapType, StructType, TimestampType

    if value is None:
        return None
    if isinstance(dtype, MapType):
        items = value.items() if isinstance(value, dict) else value
        return tuple(sorted((k, _plain(v, dtype.valueType)) for k, v in items))
    if isinstance(dtype, StructType):  # a Row from Spark, a dict from Arrow
        return tuple(_plain(value[f.name], f.dataType) for f in dtype.fields)
    if isinstance(dtype, ArrayType):
        return tuple(_plain(v, dtype.elementType) for v in value)
    if isinstance(dtype, TimestampType):
        return value.timestamp()
    if isinstance(dtype, DoubleType):
        return repr(value)
    return value


def _rows(records, schema) -> Counter:
    """The multiset of ``records`` (mappings by column name) as plain tuples in ``schema``'s column order."""
    return Counter(tuple(_plain(r[f.name], f.dataType) for f in schema.fields) for r in records)


def assert_other_readers_agree(spark, root: str, versions: dict[str, int] | None = None) -> list[str]:
    """Every table of the lake at ``root`` holds the same rows read by DuckDB (its delta extension) and by
    delta-rs as read by Spark: the lake stays readable without a JVM (docs/architecture.md, "Reading the lake
    without Spark"). ``versions`` (table -> version): only those tables, at those versions (time travel); by
    default every table at its newest. Returns the tables compared."""
    from kgcurate import s3
    from kgcurate.lake_rs import open_table, table_uri

    on_s3 = table_uri(root, "").startswith("s3://")
    duck = duckdb_with_delta(s3.endpoint() if on_s3 else None)
    compared = []
    for name, schema in tables.SCHEMAS.items():
        if versions is not None and name not in versions:
            continue
        version = None if versions is None else versions[name]
        rs = open_table(root, name, version=version)
        if rs is None:  # no such table in this lake
            continue
        want = _rows((row.asDict() for row in lk.read(spark, root, name, version=version).collect()), schema)
        quoted = ", ".join(f'"{f.name}"' for f in schema.fields)  # `offset` is a keyword in DuckDB
        at = "" if version is None else f", version => {int(version)}"
        query = f"SELECT {quoted} FROM delta_scan('{table_uri(root, name)}'{at})"
        assert _rows(duck.sql(query).to_arrow_table().to_pylist(), schema) == want, f"DuckDB reads {name} otherwise"
        assert _rows(rs.to_pyarrow_table().to_pylist(), schema) == want, f"delta-rs reads {name} otherwise"
        compared.append(name)
    duck.close()
    return compared
