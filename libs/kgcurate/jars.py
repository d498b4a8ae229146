"""The JVM jars kgcurate needs beside Spark, in one place.

Spark resolves ``spark.jars.packages`` through Ivy at session start, which needs the network
every time and ignores the machine's Maven settings. We fetch the same coordinates once with
Maven (``python -m kgcurate.jars fetch``) into ``.cache/jars`` and point ``spark.jars`` at the
files; the cluster wrappers in ``deploy/`` print the coordinates instead (``packages``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyspark

SPARK_VERSION = pyspark.__version__
SPARK_LINE = ".".join(SPARK_VERSION.split(".")[:2])
DELTA_VERSION = "4.4.0"
# hadoop-aws must match the Hadoop that pyspark bundles (hadoop-client-api-3.4.x for Spark 4.0).
HADOOP_VERSION = "3.4.1"

COORDINATES: tuple[str, ...] = (
    f"io.delta:delta-spark_{SPARK_LINE}_2.13:{DELTA_VERSION}",
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JAR_DIR = REPO_ROOT / ".cache" / "jars"


def _pom(coordinates: tuple[str, ...]) -> str:
    deps = []
    for coord in coordinates:
        group, artifact, version = coord.split(":")
        deps.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>kgcurate</groupId><artifactId>jars</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{''.join(deps)}</dependencies></project>"
    )


def _artifact_name(jar: str) -> str:
    """``hadoop-client-api-3.4.2.jar`` -> ``hadoop-client-api`` (strip the version)."""
    stem = jar[:-4] if jar.endswith(".jar") else jar
    parts = stem.split("-")
    while parts and parts[-1][:1].isdigit():
        parts.pop()
    return "-".join(parts)


def spark_bundled_artifacts() -> set[str]:
    jars = Path(pyspark.__file__).parent / "jars"
    return {_artifact_name(p.name) for p in jars.glob("*.jar")}


def fetch(dest: Path = DEFAULT_JAR_DIR) -> list[Path]:
    """Resolve the coordinates with Maven and keep the jars Spark does not already ship.

    Idempotent: a complete ``dest`` (marked by ``.complete``) is left alone.
    """
    marker = dest / ".complete"
    if marker.exists() and marker.read_text() == "\n".join(COORDINATES):
        return sorted(dest.glob("*.jar"))
    if shutil.which("mvn") is None:
        raise SystemExit("kgcurate: error: Maven (mvn) is needed once to fetch the Spark jars; install it")
    bundled = spark_bundled_artifacts()
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_pom(COORDINATES))
        out = Path(tmp) / "jars"
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={out}", "-DincludeScope=runtime"],
            check=True,
        )
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for jar in sorted(out.glob("*.jar")):
            if _artifact_name(jar.name) not in bundled:
                shutil.move(str(jar), dest / jar.name)
    marker.write_text("\n".join(COORDINATES))
    return sorted(dest.glob("*.jar"))


def local_jars(dest: Path = DEFAULT_JAR_DIR) -> list[Path]:
    """The fetched jars, or an empty list when ``fetch`` has not run."""
    if not (dest / ".complete").exists():
        return []
    return sorted(dest.glob("*.jar"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kgcurate.jars")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch the jars into a directory (default .cache/jars)")
    f.add_argument("--dest", type=Path, default=DEFAULT_JAR_DIR)
    sub.add_parser("packages", help="print the Maven coordinates, comma separated (--packages)")
    args = parser.parse_args(argv)
    if args.cmd == "fetch":
        jars = fetch(args.dest)
        print(f"{len(jars)} jars in {args.dest}")
    else:
        print(",".join(COORDINATES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
