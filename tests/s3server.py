"""A real S3-compatible server on loopback for tests: moto in server mode.

Why moto and not MinIO: MinIO is a Go binary we would have to build from source here (no
Docker, no network for binaries); moto[server] is a pinned dev dependency and speaks the S3 REST
API over HTTP, so boto3 and Hadoop's s3a talk to it exactly as they talk to AWS.

The credentials are dummies set in the environment only (the default chain), never in a file.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

# Dummy, test-only values; tests grep logs and tables to prove they never leak.
ACCESS_KEY = "kgcurateTESTACCESSKEY"
SECRET_KEY = "kgcurate-test-secret-9f3c1a7e5b"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    port: int

    def env(self) -> dict[str, str]:
        """Environment a subprocess (kgcurate CLI, spark-submit) needs to reach this server."""
        return {
            "KGCURATE_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.client().upload_file(path, bucket, key)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []) or [])
        return out


S3A_KEYS = {
    "fs.s3a.endpoint": None,
    "fs.s3a.path.style.access": "true",
    "fs.s3a.connection.ssl.enabled": "false",
    "fs.s3a.endpoint.region": REGION,
    "fs.s3a.aws.credentials.provider": "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
    "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    # moto answers fast; keep s3a from retrying a genuine 404 for minutes.
    "fs.s3a.attempts.maximum": "3",
    "fs.s3a.retry.limit": "3",
    "fs.s3a.connection.establish.timeout": "5000",
    "fs.s3a.change.detection.mode": "none",
}


JVM_CREDENTIAL_PROPERTIES = {"aws.accessKeyId": "AWS_ACCESS_KEY_ID", "aws.secretAccessKey": "AWS_SECRET_ACCESS_KEY"}


def point_spark_at(spark, server: S3Server) -> dict[str, str | None]:
    """Set the s3a keys on a running session's Hadoop conf (it may predate the endpoint env).

    Returns the previous values so the caller can restore them. The FileSystem cache is keyed
    by bucket, and each test uses a fresh bucket, so no stale filesystem is reused.
    """
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    previous: dict[str, str | None] = {}
    for key, value in S3A_KEYS.items():
        previous[key] = hconf.get(key)
        hconf.set(key, server.endpoint if value is None else value)
    # A JVM started before the fixture never sees the env credentials (its environment is fixed at
    # start); the default chain also reads Java system properties, so hand the dummies over there.
    system = spark.sparkContext._jvm.java.lang.System
    env = server.env()
    for prop, var in JVM_CREDENTIAL_PROPERTIES.items():
        previous[f"sysprop:{prop}"] = system.getProperty(prop)
        system.setProperty(prop, env[var])
    # Python workers get their environment from the SparkContext (as spark.executorEnv.* would on a
    # cluster), not from this process: give them the endpoint and the dummy credentials too.
    worker_env = spark.sparkContext.environment
    for var, value in env.items():
        previous[f"workerenv:{var}"] = worker_env.get(var)
        worker_env[var] = value
    return previous


def restore_spark(spark, previous: dict[str, str | None]) -> None:
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    system = spark.sparkContext._jvm.java.lang.System
    for key, value in previous.items():
        if key.startswith("workerenv:"):
            var = key.split(":", 1)[1]
            if value is None:
                spark.sparkContext.environment.pop(var, None)
            else:
                spark.sparkContext.environment[var] = value
        elif key.startswith("sysprop:"):
            prop = key.split(":", 1)[1]
            if value is None:
                system.clearProperty(prop)
            else:
                system.setProperty(prop, value)
        elif value is None:
            hconf.unset(key)
        else:
            hconf.set(key, value)


@contextlib.contextmanager
def running_server() -> Iterator[S3Server]:
    """Start moto on 127.0.0.1:<free port>, export the env, stop and restore on exit."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(endpoint=f"http://127.0.0.1:{port}", port=port)
    saved = {k: os.environ.get(k) for k in s3.env()}
    saved["AWS_ENDPOINT_URL"] = os.environ.get("AWS_ENDPOINT_URL")
    os.environ.update(s3.env())
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from kgcurate import s3 as s3mod

    s3mod._clients.clear()  # a client cached for another endpoint must not be reused
    try:
        yield s3
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3mod._clients.clear()
