"""docker-compose.yml: the file is valid and pinned, and what its job runs works without Docker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kgcurate import config
from kgcurate.jars import SPARK_VERSION, local_jars
from s3server import SECRET_KEY, running_server

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
IMAGE_ROOT = "/opt/kgcurate/"  # where deploy/Dockerfile puts the repository's files


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_and_pinned_images(compose):
    services = compose["services"]
    assert set(services) == {"minio", "minio-init", "spark-master", "spark-worker", "job"}
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "${" not in image, (name, image)
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert services["minio-init"]["image"].startswith("minio/mc:RELEASE.")
    for name in ("spark-master", "spark-worker", "job"):  # our image: Spark + jars + wheel
        build = services[name]["build"]
        assert (REPO / build["context"] / build["dockerfile"]).is_file()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"FROM apache/spark:{SPARK_VERSION}-" in dockerfile


def test_bucket_master_and_commands_line_up(compose):
    services = compose["services"]
    init = " ".join(services["minio-init"]["command"])
    bucket = services["job"]["environment"]["KGCURATE_BUCKET"]
    assert f"mc mb --ignore-existing local/{bucket}" in init
    job_cfg = config.load(REPO / "deploy" / "compose.yaml")
    assert job_cfg["lake"] == f"s3a://{bucket}/lake"
    assert all(i.startswith(f"s3a://{bucket}/samples/") for i in job_cfg["wat"]["inputs"])
    assert "--master spark://spark-master:7077" in services["job"]["environment"]["KGCURATE_SUBMIT_OPTS"]
    assert services["spark-worker"]["command"][-1] == "spark://spark-master:7077"
    assert services["job"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # Every file a command names exists in the repository and is copied into the image.
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for name, svc in services.items():
        for word in svc.get("command") or []:
            if word.startswith(IMAGE_ROOT):
                rel = word[len(IMAGE_ROOT):]
                assert (REPO / rel).is_file(), (name, word)
                assert rel in dockerfile, f"{rel} is not copied into the image"
    for name in ("volumes",):
        assert compose[name]["minio-data"] == {}


def test_no_credential_in_the_file(compose):
    text = COMPOSE.read_text()
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"(?i)password|secret|access_key", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (key, value)
    assert "minioadmin" not in text


@pytest.mark.slow
def test_compose_job_script_runs_the_demo_against_s3(tmp_path):
    """deploy/compose_job.sh as the `job` service runs it, with moto for MinIO and local[2] for the master."""
    jars = local_jars()
    if not jars:
        pytest.skip("Spark jars not fetched (make setup)")
    sys.path.insert(0, str(REPO / "deploy"))
    import build as deploy_build

    dist = tmp_path / "dist"
    deploy_build.build(dist, wheel=False)
    with running_server() as srv:
        srv.create_bucket("kgcurate")  # what the minio-init service does
        env = {
            **os.environ, **srv.env(),
            "KGCURATE_HOME": str(REPO), "KGCURATE_BUCKET": "kgcurate", "KGCURATE_PYTHON": sys.executable,
            "KGCURATE_SAMPLES": str(tmp_path / "samples"), "SAMPLE_FILES": "2", "SAMPLE_RECORDS": "60",
            "KGCURATE_DIST": str(dist), "SPARK_SUBMIT": str(REPO / ".venv" / "bin" / "spark-submit"),
            "KGCURATE_JARS": ",".join(map(str, jars)), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "KGCURATE_SUBMIT_OPTS": "--master local[2] --driver-memory 1g --conf spark.ui.enabled=false",
        }
        r = subprocess.run(["bash", str(REPO / "deploy" / "compose_job.sh")], capture_output=True, text=True,
                           env=env, timeout=900, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-4000:]
        assert "kgcurate demo done: lake at s3a://kgcurate/lake" in r.stdout
        keys = srv.keys("kgcurate")
        assert "samples/wat/wat.paths.gz" in keys
        for table in ("pairs", "ingest_log", "metadata", "matches", "entry_counts", "curated", "curation_runs"):
            assert any(k.startswith(f"lake/{table}/_delta_log/") for k in keys), table
        assert SECRET_KEY not in r.stdout + r.stderr
