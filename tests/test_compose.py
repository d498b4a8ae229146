"""docker-compose.yml: the file is valid and pinned, and what its job runs works without Docker."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
import yaml

from kgcurate import config
from kgcurate.jars import SPARK_VERSION, local_jars
from s3server import SECRET_KEY, running_server

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
IMAGE_ROOT = "/opt/kgcurate/"  # where deploy/Dockerfile and deploy/Dockerfile.train put the repository's files
CONF_COPY = "COPY deploy/dist/conf /opt/kgcurate/conf"  # conf/ reaches the images through deploy/build.py's dist


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "deploy"))
    import build as deploy_build

    out = tmp_path_factory.mktemp("dist")
    deploy_build.build(out, wheel=False)
    return out


def dockerfile_of(svc: dict) -> str:
    return (REPO / svc["build"]["context"] / svc["build"]["dockerfile"]).read_text()


def test_services_and_pinned_images(compose):
    services = compose["services"]
    assert set(services) == {"minio", "minio-init", "spark-master", "spark-worker", "images", "job", "train"}
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "${" not in image, (name, image)
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert services["minio-init"]["image"].startswith("minio/mc:RELEASE.")
    for name in ("spark-master", "spark-worker", "images", "job"):  # our image: Spark + jars + wheel
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    # the train needs torch, which only the training image has (the Spark image has no [train] extra)
    assert services["train"]["build"]["dockerfile"] == "deploy/Dockerfile.train"
    assert services["train"]["image"] != services["job"]["image"]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"FROM apache/spark:{SPARK_VERSION}-" in dockerfile
    assert "[train]" in dockerfile_of(services["train"]) and "awscli" in dockerfile_of(services["train"])


def test_bucket_master_and_commands_line_up(compose, dist):
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
    # Every file a command names exists in the repository and is copied into that service's image.
    for name, svc in services.items():
        for word in svc.get("command") or []:
            if word.startswith(IMAGE_ROOT):
                rel = word[len(IMAGE_ROOT):]
                assert (REPO / rel).is_file(), (name, word)
                dockerfile = dockerfile_of(svc)
                copied = rel in dockerfile or (rel.startswith("conf/") and CONF_COPY in dockerfile
                                               and (dist / rel).is_file())
                assert copied, f"{rel} is not copied into {name}'s image"
    for volume in ("minio-data", "sample-images", "experiments", "reports"):
        assert compose["volumes"][volume] == {}
    # The report outlives the job's container: its folder is a named volume the job user owns.
    reports = job_cfg["report"]["out"]
    assert f"reports:{reports}" in services["job"]["volumes"], "the report would be lost with the container"
    assert re.search(rf"install -d -o spark -g spark .*{re.escape(reports)}\b", dockerfile_of(services["job"]))


def test_delta_snapshot_tasks_fit_the_worker(compose):
    """Under spark-submit the session keeps Delta's default of 50 tasks per snapshot, sized for large
    clusters; on the demo's 2-core worker those tasks doubled the pipeline (211 s -> 119 s with 2)."""
    worker = compose["services"]["spark-worker"]["command"]
    cores = int(worker[worker.index("--cores") + 1])
    conf = config.load(REPO / "deploy" / "compose.yaml")["spark"]["conf"]
    assert 1 <= int(conf["spark.databricks.delta.snapshotPartitions"]) <= cores


def test_images_server_job_and_train_line_up(compose):
    """The job writes the images where the server serves them, its links name that server, the train
    waits for the job, reads the same lake from the same MinIO and trains the smoke config."""
    services = compose["services"]
    images, job, train = services["images"], services["job"], services["train"]
    server = images["command"]
    assert server[:3] == ["python", "-m", "http.server"]  # python's own static file server
    port, folder = server[3], server[server.index("--directory") + 1]
    env = job["environment"]
    assert env["SAMPLE_IMAGE_BASE_URL"] == f"http://images:{port}" and env["SAMPLE_IMAGES"] == folder
    assert f"sample-images:{folder}" in images["volumes"] and f"sample-images:{folder}" in job["volumes"]
    assert f"install -d -o spark -g spark {folder}" in dockerfile_of(job)  # the volume is the job user's
    assert job["depends_on"]["images"]["condition"] == "service_healthy" and "healthcheck" in images
    assert train["depends_on"] == {"job": {"condition": "service_completed_successfully"}}
    assert train["environment"]["KGCURATE_S3_ENDPOINT"] == env["KGCURATE_S3_ENDPOINT"] == "http://minio:9000"
    cmd = train["command"]
    assert cmd[:2] == ["kgcurate", "train"] and cmd[cmd.index("--config") + 1] == f"{IMAGE_ROOT}conf/train-smoke.yaml"
    assert cmd[cmd.index("--lake") + 1] == config.load(REPO / "deploy" / "compose.yaml")["lake"]
    assert f"experiments:{cmd[cmd.index('--experiments') + 1]}" in train["volumes"]
    assert "--resume" in cmd  # the volume outlives `up`: without it a second demo run refuses the experiment
    assert "WORKDIR /opt/kgcurate" in dockerfile_of(train)  # conf/models (train-smoke's model_config_dir) is there


def test_no_credential_in_the_file(compose):
    text = COMPOSE.read_text()
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"(?i)password|secret|access_key", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (key, value)
    assert "minioadmin" not in text


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[int]:
    """What the `images` service runs (``python -m http.server --directory F``: the same handler and
    threading server), on loopback at a free port, in a thread; yields the port."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the request log only
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def in_this_checkout(word: str, experiments: Path) -> str:
    """A path of a compose command, mapped from the image to this checkout (and the volume to a temp folder)."""
    if word == "/srv/kgcurate/experiments":
        return str(experiments)
    return str(REPO / word[len(IMAGE_ROOT):]) if word.startswith(IMAGE_ROOT) else word


def compose_env(svc: dict, srv_env: dict[str, str], **overrides: str) -> dict[str, str]:
    """A service's environment with moto in MinIO's place: its endpoint, its dummy credentials for the
    ``${MINIO_ROOT_*}`` ones; every other value as the file has it."""
    env = {}
    for key, value in svc["environment"].items():
        if key in srv_env:
            env[key] = srv_env[key]
        else:
            assert "${" not in str(value), (key, value)
            env[key] = str(value)
    return {**env, **overrides}


def shard_samples(data: bytes) -> dict[str, set[str]]:
    """key -> member extensions of one webdataset tar."""
    members: dict[str, set[str]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            members.setdefault(key, set()).add(ext)
    return members


def run_in_group(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new process group that is killed whole on a timeout, so spark-submit's JVM
    and its Python workers do not outlive a timed-out script."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[-1]} ran past {timeout}s: {err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_compose_job_and_train_run_the_demo_against_s3(tmp_path, compose, dist):
    """deploy/compose_job.sh as the `job` service runs it (moto for MinIO, a loopback server for `images`,
    local[2] for the master): sample with servable images, pipeline, download into the bucket; then the
    `train` service's command and environment, read from docker-compose.yml: a CPU smoke train on those
    shards through ``pipe:aws s3 cp`` from the same S3 server, recorded in ``train_runs``."""
    jars = local_jars()
    if not jars:
        pytest.skip("Spark jars not fetched (make setup)")
    services = compose["services"]
    images = tmp_path / "images"
    with running_server() as srv, serving(images) as port:
        srv.create_bucket("kgcurate")  # what the minio-init service does
        base = f"http://127.0.0.1:{port}"  # `images` on the compose network; a private address either way
        job_env = compose_env(services["job"], srv.env(), SAMPLE_IMAGE_BASE_URL=base, SAMPLE_IMAGES=str(images),
                              KGCURATE_HOME=str(REPO), SAMPLE_FILES="2", SAMPLE_RECORDS="60",
                              KGCURATE_REPORTS=str(tmp_path / "reports"))  # the `reports` volume
        env = {
            **os.environ, **job_env, "KGCURATE_PYTHON": sys.executable,
            "KGCURATE_SAMPLES": str(tmp_path / "samples"),
            "KGCURATE_DIST": str(dist), "SPARK_SUBMIT": str(REPO / ".venv" / "bin" / "spark-submit"),
            "KGCURATE_JARS": ",".join(map(str, jars)), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "KGCURATE_SUBMIT_OPTS": "--master local[2] --driver-memory 1g --conf spark.ui.enabled=false",
        }
        r = run_in_group(["bash", str(REPO / "deploy" / "compose_job.sh")], env=env, timeout=1800, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-4000:]
        assert "kgcurate demo done: lake at s3a://kgcurate/lake" in r.stdout
        assert f"images in {images}" in r.stdout  # make-sample wrote the served folder
        assert f"report: {tmp_path / 'reports' / 'index.html'}" in r.stdout
        assert (tmp_path / "reports" / "index.html").is_file() and list((tmp_path / "reports").glob("*.png"))
        keys = srv.keys("kgcurate")
        assert "samples/wat/wat.paths.gz" in keys and not any(k.startswith("samples/images") for k in keys)
        for table in ("pairs", "ingest_log", "metadata", "matches", "entry_counts", "curated", "curation_runs",
                      "downloads", "download_runs"):
            assert any(k.startswith(f"lake/{table}/_delta_log/") for k in keys), table
        assert SECRET_KEY not in r.stdout + r.stderr

        # The download: shards in the bucket, holding real samples fetched from the image server.
        from kgcurate.lake_rs import open_table
        from kgcurate.train.lake_input import read_input

        inp = read_input("s3a://kgcurate/lake")
        assert inp.out == "s3://kgcurate/shards" and inp.samples > 0 and inp.downloaded_samples == inp.samples
        statuses = (open_table("s3a://kgcurate/lake", "downloads").to_pyarrow_table(columns=["status"])
                    .column("status").to_pylist())
        assert statuses.count("success") == inp.samples > 0.8 * len(statuses)
        assert "refused_address" not in statuses  # the loopback server: --allow-private reached the fetcher
        stored = 0
        for shard in inp.shards:
            members = shard_samples(srv.client().get_object(Bucket="kgcurate", Key=f"shards/{shard.file}")["Body"]
                                    .read())
            assert len(members) == shard.samples and all({"jpg", "txt", "json"} <= m for m in members.values())
            stored += len(members)
        assert stored == inp.samples

        # The train service: its command and environment as docker-compose.yml names them.
        if shutil.which("aws") is None:
            pytest.skip("the AWS CLI (the training image's awscli) is not on PATH: cannot stream s3:// shards")
        train = services["train"]
        experiments = tmp_path / "experiments"
        argv = [in_this_checkout(w, experiments) for w in train["command"]]
        assert argv[0] == "kgcurate"  # the console script; here the same entry point through this interpreter
        # OMP_NUM_THREADS: the file's 2 on a demo machine; 1 on these shared CPUs (conftest says why)
        train_env = compose_env(train, srv.env(), OMP_NUM_THREADS="1")
        assert set(train_env) == set(train["environment"])
        t = run_in_group([sys.executable, "-m", "kgcurate.cli", *argv[1:]], env={**os.environ, **train_env},
                         timeout=600, cwd=REPO)  # cwd: the image's WORKDIR
        assert t.returncode == 0, t.stderr[-4000:]
        assert SECRET_KEY not in t.stdout + t.stderr
        rows = open_table("s3a://kgcurate/lake", "train_runs").to_pyarrow_table().to_pylist()
        assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["steps"] > 0
        assert rows[0]["download_run_id"] == inp.download_run_id and rows[0]["final_loss"] is not None
        assert f"pipe:aws s3 cp --endpoint-url {srv.endpoint} s3://kgcurate/shards/" in rows[0]["args"]
        assert Path(rows[0]["checkpoint"]).is_file() and str(experiments) in rows[0]["checkpoint"]


def test_another_bucket_is_the_bucket_the_job_reads_its_sample_from(tmp_path) -> None:
    """KGCURATE_BUCKET: the pipeline read its sample listing from s3a://kgcurate/ (the config's inputs) whatever
    bucket the job uploaded it to. With stand-ins for Python and spark-submit, the config each command gets."""
    home = tmp_path / "home"
    (home / "deploy").mkdir(parents=True)
    for name in ("compose_job.sh", "compose.yaml"):
        shutil.copy(REPO / "deploy" / name, home / "deploy" / name)
    calls = tmp_path / "calls.txt"
    submit = home / "deploy" / "spark-submit.sh"
    submit.write_text('#!/usr/bin/env bash\nwhile [[ $# -gt 0 ]]; do if [[ $1 == --config ]]; then '
                      f'cat "$2" >> {calls}; fi; echo "ARG $1" >> {calls}; shift; done\n')
    submit.chmod(0o755)
    stub = tmp_path / "python"
    stub.write_text(f'#!/usr/bin/env bash\necho "PY $*" >> {calls}\n')
    stub.chmod(0o755)
    env = {**os.environ, "KGCURATE_HOME": str(home), "KGCURATE_BUCKET": "research-demo", "KGCURATE_PYTHON": str(stub),
           "KGCURATE_SAMPLES": str(tmp_path / "samples"), "SAMPLE_IMAGE_BASE_URL": "http://images:8000",
           "SAMPLE_IMAGES": str(tmp_path / "images")}
    r = subprocess.run(["bash", str(home / "deploy" / "compose_job.sh")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    got = calls.read_text()
    assert "s3://research-demo/samples/" in got and "s3a://kgcurate/" not in got
    assert got.count("inputs: [s3a://research-demo/samples/wat/wat.paths.gz]") == 2  # run and download
    assert "listing_base: s3a://research-demo/samples/wat/" in got and "ARG s3a://research-demo/lake" in got
