"""The one SparkSession builder every job and test uses.

Local runs get ``local[*]``, Delta, the jars fetched by ``make setup`` and few shuffle
partitions. Under ``spark-submit`` (the launcher sets ``PYSPARK_GATEWAY_PORT``) whatever the
cluster configured wins: we only fill in keys that are still unset. S3 goes through s3a with
the default AWS credential chain (environment, profile, instance role), never a config file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kgcurate.jars import COORDINATES, local_jars

log = logging.getLogger("kgcurate.session")

# What every kgcurate session needs, local or on a cluster (deploy writes it to spark-defaults.conf).
SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "4g",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    # Our Python workers are long-lived so per-executor caches (automata) survive tasks.
    "spark.python.worker.reuse": "true",
}

# The local JVM (driver and executors in one) collects with the throughput collector, not G1: G1's
# concurrent work competes with the tasks for a laptop's few cores. Measured on 2 cores: the demo
# pipeline 94 s against 100-102 s, two test files 255 s against 279-283 s; a 300 MB ingest unchanged.
LOCAL_GC = "-XX:+UseParallelGC"

S3A_DEFAULTS = {
    "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    "spark.hadoop.fs.s3a.aws.credentials.provider":
        "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
}


# Spark's console log level for sessions built here: the CLI sets "OFF" unless --debug (a failing job
# logs hundreds of ERROR lines before our one-line message); KGCURATE_SPARK_LOG_LEVEL overrides both.
console_log_level = "WARN"


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def s3a_conf(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """s3a settings; an S3-compatible endpoint (MinIO, moto) comes from the environment."""
    conf = dict(S3A_DEFAULTS)
    endpoint = env.get("KGCURATE_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https")).lower()
        conf["spark.hadoop.fs.s3a.endpoint.region"] = env.get("AWS_REGION", "us-east-1")
    return conf


def build_conf(
    overrides: Mapping[str, Any] | None = None,
    *,
    cluster: bool | None = None,
    env: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """The Spark settings kgcurate asks for (a plain dict, so it is testable without a JVM)."""
    cluster = under_spark_submit() if cluster is None else cluster
    conf: dict[str, str] = dict(SESSION_CONF)
    conf.update(s3a_conf(env))
    if not cluster:
        conf["spark.master"] = env.get("KGCURATE_MASTER", "local[*]")
        conf.update(LOCAL_DEFAULTS)
        # Workers must run this interpreter (the venv's), not whatever `python3` is on PATH.
        conf["spark.pyspark.python"] = env.get("PYSPARK_PYTHON", sys.executable)
        conf["spark.pyspark.driver.python"] = sys.executable
        log4j = Path(__file__).with_name("log4j2.properties")
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j} {LOCAL_GC}"
        jars = local_jars()
        if jars:
            conf["spark.jars"] = ",".join(str(j) for j in jars)
        else:  # no `make setup`: let Ivy fetch the same coordinates
            conf["spark.jars.packages"] = ",".join(COORDINATES)
    for key, value in (overrides or {}).items():
        conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return conf


def _start(builder):  # noqa: ANN001, ANN202 - pyspark's Builder and SparkSession
    """The session, its SQL settings checked now: Spark builds them on first use, so a bad value
    (``--spark-conf spark.sql.shuffle.partitions=abc``) failed the first query as "Error while
    instantiating SessionStateBuilder", exit 1, the cause hidden in the JVM trace."""
    from kgcurate.errors import UserError, root_cause

    try:
        spark = builder.getOrCreate()
        spark._jsparkSession.sessionState()
    except Exception as exc:  # noqa: BLE001 - any start failure: its cause, in one line
        raise UserError(f"Spark could not start: {root_cause(exc)[:300]} (check the settings from --spark-conf "
                        "and the config's spark.conf, and the Java install)") from None
    return spark


def get_spark(app_name: str = "kgcurate", overrides: Mapping[str, Any] | None = None):
    """Return the active session or build one with :func:`build_conf`."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        _apply_to_active(active, overrides or {})
        return active
    cluster = under_spark_submit()
    if not cluster:  # SparkContext reads the worker interpreter from the environment, not the conf
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    wanted = build_conf(overrides, cluster=cluster)
    builder = SparkSession.builder.appName(app_name)
    preset = SparkConf() if cluster else None  # spark-submit's --conf values
    for key, value in wanted.items():
        if preset is not None and preset.contains(key) and key not in (overrides or {}):
            continue
        builder = builder.config(key, value)
    spark = _start(builder)
    if cluster and not jvm_has_class(spark, DELTA_CLASS):
        from kgcurate.errors import UserError

        raise UserError("Delta Lake's classes are not on this spark-submit's classpath (a bare `spark-submit "
                        "jobs/<stage>.py`): submit through deploy/spark-submit.sh, or pass --packages "
                        f"{','.join(COORDINATES)} and the settings of deploy/dist/spark-defaults.conf (make dist)")
    level = os.environ.get("KGCURATE_SPARK_LOG_LEVEL", console_log_level)
    spark.sparkContext.setLogLevel(level)
    if level.upper() == "OFF":
        # setLogLevel sets the root logger only; loggers log4j2.properties names keep their level, and
        # Utils at ERROR printed "Aborting task" with a stack trace above the CLI's one line
        log4j = spark.sparkContext._jvm.org.apache.logging.log4j
        log4j.core.config.Configurator.setAllLevels("", log4j.Level.OFF)
    return spark


DELTA_CLASS = "io.delta.tables.DeltaTable"


def jvm_has_class(spark, name: str) -> bool:
    """Whether the driver JVM can load ``name``: py4j answers a class it cannot load with a package, so a
    submit without Delta's jars failed at the first table as "'JavaPackage' object is not callable"."""
    from py4j.java_gateway import JavaClass

    node = spark.sparkContext._jvm
    for part in name.split("."):
        node = getattr(node, part)
    return isinstance(node, JavaClass)


def _apply_to_active(spark, overrides: Mapping[str, Any]) -> None:
    """Settings asked of a session that already runs (a notebook's, or the one the tests share) are
    not applied: that session's owner chose its settings, and changing them in place would leak into
    whatever runs next in it. The ones that differ are named in a warning instead of being dropped
    without a word."""
    differ = []
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if spark.conf.get(key, None) != text:
            differ.append(f"{key}={text}")
    if differ:
        log.warning("a Spark session is already running; these settings are not applied to it: %s "
                    "(set them on that session, or run the job in a new one)", ", ".join(sorted(differ)))
