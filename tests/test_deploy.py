"""Cluster packaging and scheduler definitions: built, parsed, and checked against the real CLI."""

from __future__ import annotations

import importlib
import json
import os
import py_compile
import re
import shlex
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import yaml

from kgcurate import cli, config
from kgcurate.jars import COORDINATES, SPARK_VERSION, _artifact_name, local_jars
from kgcurate.session import SESSION_CONF

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(DEPLOY))
import build as deploy_build  # noqa: E402
import pipeline  # noqa: E402

SUBMIT = DEPLOY / "spark-submit.sh"


def parse_stage(stage: str, args: list[str]):
    """Parse with the real CLI parser; skip while a stage's module is not written yet."""
    module = cli.STAGES[stage][0]
    try:
        importlib.import_module(f"kgcurate.stages.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"kgcurate.stages.{module}":
            pytest.skip(f"stage module kgcurate.stages.{module} not written yet")
        raise
    parser = cli.build_parser(stage)
    return parser.parse_args([stage, *args])


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    deploy_build.build(out, wheel=False)
    return out


def test_build_outputs(dist):
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["packages"] == list(COORDINATES)
    assert (dist / "packages.txt").read_text().strip() == ",".join(COORDINATES)
    conf = dict(line.split(" ", 1) for line in (dist / "spark-defaults.conf").read_text().splitlines())
    assert conf == SESSION_CONF
    stages = dict(line.split("\t") for line in (dist / "stages.tsv").read_text().splitlines())
    assert stages["ingest-wat"] == "jobs/ingest_wat.py" and stages["run"] == "jobs/run_pipeline.py"
    assert set(stages) == set(cli.STAGES)
    for script in stages.values():
        assert (dist / script).is_file()
    with zipfile.ZipFile(dist / "kgcurate.zip") as zf:
        names = set(zf.namelist())
    assert {"kgcurate/__init__.py", "kgcurate/cli.py", "kgcurate/s3.py", "kgcurate/stages/ingest_wat.py"} <= names
    assert not any("__pycache__" in n for n in names)
    assert (dist / "conf" / "cluster.yaml").is_file()
    # the compose demo's `train` service reads these in the training image (COPY deploy/dist/conf)
    assert (dist / "conf" / "train-smoke.yaml").read_bytes() == (REPO / "conf" / "train-smoke.yaml").read_bytes()
    assert (dist / "conf" / "models" / "kgc-tiny.json").is_file()
    assert (dist / "airflow" / "kgcurate_dag.py").is_file() and (dist / "airflow" / "pipeline.py").is_file()


def test_zip_is_deterministic(tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    deploy_build._zip_package(REPO / "libs" / "kgcurate", a)
    deploy_build._zip_package(REPO / "libs" / "kgcurate", b)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.slow
def test_wheel_builds(tmp_path):
    wheel = deploy_build._wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "kgcurate = kgcurate.cli:main" in zf.read(entry).decode()
    assert "kgcurate/s3.py" in names and "kgcurate/stages/ingest_wat.py" in names


def test_native_wheel_tag_check():
    ok = "kgcurate_native-0.1.0-cp311-abi3-manylinux_2_34_x86_64.whl"
    assert deploy_build.native_wheel_problem(ok) is None
    assert deploy_build.native_wheel_problem(ok.replace("2_34", "2_28")) is None
    assert "glibc" in deploy_build.native_wheel_problem(ok.replace("2_34", "2_36"))
    assert deploy_build.native_wheel_problem(ok.replace("manylinux_2_34", "linux"))
    assert deploy_build.native_wheel_problem(ok.replace("x86_64", "aarch64"))
    assert deploy_build.native_wheel_problem(ok.replace("cp311", "cp312"))
    text = (DEPLOY / "Dockerfile").read_text()
    assert "kgcurate_native-*.whl" in text and 'python -c "import kgcurate_native"' in text
    # optional in the image: a dist made on a Mac or an arm64 host has none (the image was not buildable)
    assert "COPY deploy/dist/kgcurate_native" not in text and "pure-Python WAT parser" in text


def test_native_wheel_is_built_on_linux_x86_64_only():
    assert deploy_build.native_host_problem("Linux", "x86_64") is None
    for system, machine in (("Darwin", "arm64"), ("Linux", "aarch64"), ("Darwin", "x86_64")):
        assert f"this host is {system} {machine}: " in deploy_build.native_host_problem(system, machine)


def test_a_dist_without_the_native_wheel_says_why(tmp_path, monkeypatch, capsys):
    """On a Mac `make dist` refused to finish (the wheel is for linux x86_64), so `docker compose up --build`
    could not work there; now it skips the wheel with a warning and the manifest says why."""
    import platform

    monkeypatch.setattr(deploy_build, "_wheel", lambda dest: (dest / "kgcurate-0.1.0-py3-none-any.whl").touch()
                        or dest / "kgcurate-0.1.0-py3-none-any.whl")
    monkeypatch.setattr(deploy_build, "_native_wheel", lambda dest: pytest.fail("built on a Mac"))
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    manifest = deploy_build.build(tmp_path / "dist")
    assert "native_wheel" not in manifest and "this host is Darwin arm64" in manifest["native_skipped"]
    assert "warning: no kgcurate_native wheel" in capsys.readouterr().err
    assert not list((tmp_path / "dist").glob("kgcurate_native-*"))
    assert "--no-native" in deploy_build.build(tmp_path / "dist2", native=False)["native_skipped"]


@pytest.mark.slow
def test_native_wheel_builds(tmp_path):
    """The cluster's wheel of the compiled WAT path: linux x86_64, manylinux, glibc the image has."""
    wheel = deploy_build._native_wheel(tmp_path)
    assert deploy_build.native_wheel_problem(wheel.name) is None
    with zipfile.ZipFile(wheel) as zf:
        assert any(n.startswith("kgcurate_native/") and n.endswith(".so") for n in zf.namelist())


def _submit(args: list[str], dist: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "KGCURATE_DIST": str(dist), "SPARK_SUBMIT": "/opt/spark/bin/spark-submit",
            "KGCURATE_DRY_RUN": "1", **env}
    return subprocess.run(["bash", str(SUBMIT), *args], capture_output=True, text=True, env=full, timeout=60)


def test_spark_submit_wrapper_command(dist):
    r = _submit(["ingest-wat", "--lake", "s3a://b/lake", "--crawl", "CC-MAIN-2024-51", "s3://x/wat.paths.gz"], dist,
                KGCURATE_SUBMIT_OPTS="--master yarn --deploy-mode cluster")
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout)
    assert argv[0] == "/opt/spark/bin/spark-submit"
    assert argv[argv.index("--packages") + 1] == ",".join(COORDINATES)
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert sorted(confs) == sorted(f"{k}={v}" for k, v in SESSION_CONF.items())
    assert argv[argv.index("--py-files") + 1] == str(dist / "kgcurate.zip")
    assert argv[argv.index("--master") + 1] == "yarn"
    script = argv.index(str(dist / "jobs" / "ingest_wat.py"))
    assert argv[script + 1:] == ["--lake", "s3a://b/lake", "--crawl", "CC-MAIN-2024-51", "s3://x/wat.paths.gz"]
    # offline: local jars instead of --packages; "none" for an image with the jars baked in
    r = _submit(["match"], dist, KGCURATE_JARS="/j/a.jar,/j/b.jar")
    argv = shlex.split(r.stdout)
    assert "--packages" not in argv and argv[argv.index("--jars") + 1] == "/j/a.jar,/j/b.jar"
    argv = shlex.split(_submit(["match"], dist, KGCURATE_JARS="none").stdout)
    assert "--packages" not in argv and "--jars" not in argv


def test_spark_submit_wrapper_errors(dist, tmp_path):
    r = _submit(["no-such-stage"], dist)
    assert r.returncode == 2 and "unknown stage 'no-such-stage'" in r.stderr and "ingest-wat" in r.stderr
    r = _submit(["match"], tmp_path / "nothing")
    assert r.returncode == 2 and "run 'make dist' (deploy/build.py) first" in r.stderr
    r = _submit([], dist)
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.slow
def test_spark_submit_runs_a_stage_for_real(dist, tmp_path, shared_data, spark):
    """The wrapper with the venv's spark-submit (local[2], the fetched jars): ingest a real WAT excerpt."""
    jars = local_jars()
    if not jars:
        pytest.skip("Spark jars not fetched (make setup)")
    wat = shared_data / "commoncrawl" / "CC-MAIN-2014-35-excerpt.warc.wat"
    lake_dir = tmp_path / "lake"
    env = {**os.environ, "KGCURATE_DIST": str(dist), "SPARK_SUBMIT": str(REPO / ".venv" / "bin" / "spark-submit"),
           "KGCURATE_JARS": ",".join(map(str, jars)), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable,
           "KGCURATE_SUBMIT_OPTS": "--master local[2] --driver-memory 1g --conf spark.ui.enabled=false "
                                   "--conf spark.sql.shuffle.partitions=2"}
    r = subprocess.run(["bash", str(SUBMIT), "ingest-wat", "--lake", str(lake_dir), "--crawl", "CC-MAIN-2014-35",
                        str(wat)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ingest-wat: 1 files read (1 ok" in r.stdout
    pairs = spark.read.format("delta").load(str(lake_dir / "pairs"))
    assert pairs.count() == 4  # the excerpt's page has 4 IMG@/src links with alt text
    assert {r[0] for r in pairs.select("crawl").distinct().collect()} == {"CC-MAIN-2014-35"}


# --- scheduler definitions ------------------------------------------------------------------------


def test_stage_list_matches_cli_and_pipeline():
    from kgcurate.stages.run_pipeline import STEPS

    deployed = [s for s, _, _ in pipeline.STAGES]
    # the pipeline's stages in `kgcurate run`'s order, then download (and train/evaluate) after balance
    assert [s for s in deployed if s in dict(STEPS)] == [s for s, _ in STEPS]
    assert deployed.index("download") > deployed.index("balance")
    for later, earlier in (("train", "download"), ("evaluate", "train")):
        if later in deployed:
            assert deployed.index(later) > deployed.index(earlier) and not pipeline.SPARK[later]
    for stage, script, retries in pipeline.STAGES:
        assert script == f"jobs/{cli.STAGES[stage][0]}.py" and (REPO / script).is_file()
        assert retries >= 1


@pytest.mark.parametrize("stage", [s for s, _, _ in pipeline.STAGES])
def test_stage_args_parse_with_real_cli(stage):
    args = parse_stage(stage, pipeline.stage_args(stage, "CC-MAIN-2024-51"))
    assert args.command == stage and args.lake == pipeline.SITE["lake"] and args.config == pipeline.SITE["config"]
    if stage == "ingest-wat":
        assert getattr(args, "wat.crawl") == "CC-MAIN-2024-51"  # flags land under their config key
        assert getattr(args, "wat.inputs") == ["s3://commoncrawl/crawl-data/CC-MAIN-2024-51/wat.paths.gz"]
        # the listing's lines resolve against the site's root, not the config's wat.listing_base: a mirror's
        # listing used to be read from the mirror and its files fetched from s3://commoncrawl/
        assert getattr(args, "wat.listing_base") == pipeline.SITE["listing_base"]
        mirror = parse_stage(stage, pipeline.stage_args(stage, "CC-MAIN-2024-51", {"listing_base": "s3://m/cc/"}))
        assert getattr(mirror, "wat.listing_base") == "s3://m/cc/"
    if stage == "download":  # each refresh's curated run in its own folder (download refuses another run's)
        assert getattr(args, "download.out") == f"{pipeline.SITE['shards']}/CC-MAIN-2024-51"


def test_k8s_definitions_are_fresh_and_valid(tmp_path):
    pipeline.render(tmp_path, ",".join(COORDINATES))
    for stage, script, _ in pipeline.STAGES:
        committed = DEPLOY / "k8s" / f"{stage}.yaml"
        assert committed.read_text() == (tmp_path / "deploy" / "k8s" / f"{stage}.yaml").read_text(), (
            "run: python deploy/pipeline.py render")
        app = yaml.safe_load(committed.read_text())
        assert not re.search(r"(?i)secret|password|access.?key", committed.read_text())
        if not pipeline.SPARK[stage]:
            _check_container_job(stage, script, app)
            continue
        assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2" and app["kind"] == "SparkApplication"
        spec = app["spec"]
        assert spec["sparkVersion"] == SPARK_VERSION and spec["type"] == "Python"
        assert spec["mainApplicationFile"] == f"local:///opt/kgcurate/{script}"
        assert (REPO / script).is_file()
        assert spec["arguments"] == pipeline.stage_args(stage, pipeline.EXAMPLE_CRAWL)
        for key, value in SESSION_CONF.items():
            assert spec["sparkConf"][key] == value
        assert spec["restartPolicy"]["onFailureRetries"] >= 1
    assert (DEPLOY / "emr" / "steps.json").read_text() == (tmp_path / "deploy" / "emr" / "steps.json").read_text()


def _check_container_job(stage: str, script: str, job: dict) -> None:
    """A GPU stage's batch/v1 Job: the training image, its GPUs, the command parsed by the real CLI."""
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] == pipeline.STAGE_RETRIES[stage]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == pipeline.SITE["train_image"]
    gpus = pipeline.RESOURCES[stage]["gpus"]
    assert gpus >= 1 and container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    command = container["command"]
    at = command.index(f"/opt/kgcurate/{script}")
    assert (REPO / script).is_file()
    if stage == "train" and gpus > 1:
        assert command[:3] == ["torchrun", "--standalone", f"--nproc_per_node={gpus}"]
    parsed = parse_stage(stage, command[at + 1:])
    assert parsed.command == stage and parsed.lake == pipeline.SITE["lake"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert pipeline.SITE["experiments"] in mounts and "/dev/shm" in mounts


def test_emr_steps_valid():
    steps = json.loads((DEPLOY / "emr" / "steps.json").read_text())
    spark_stages = [st for st in pipeline.STAGES if pipeline.SPARK[st[0]]]
    assert [s["Name"] for s in steps] == [f"kgcurate-{s}" for s, _, _ in spark_stages]
    for step, (stage, script, _) in zip(steps, spark_stages, strict=True):
        assert step["Type"] == "Spark" and step["ActionOnFailure"] in ("CANCEL_AND_WAIT", "CONTINUE")
        args = step["Args"]
        assert args[args.index("--packages") + 1] == ",".join(COORDINATES)
        confs = {args[i + 1] for i, a in enumerate(args) if a == "--conf"}
        assert {f"{k}={v}" for k, v in SESSION_CONF.items()} <= confs
        at = next(i for i, a in enumerate(args) if a.endswith(script))
        assert (REPO / script).is_file()
        parsed = parse_stage(stage, args[at + 1:])
        files = args[args.index("--files") + 1].split(",")
        assert parsed.config == "cluster.yaml" and files[0].endswith("/conf/cluster.yaml")
        if stage == "build-metadata":  # EMR nodes lack the image's conf/ and WordNet: shipped / read from S3
            shipped = {f.rsplit("/", 1)[1] for f in files}
            assert getattr(parsed, "metadata.entity_sets") == ["organisms.yaml"] and "organisms.yaml" in shipped
            assert (REPO / "conf" / "entity_sets" / "organisms.yaml").is_file()
            assert getattr(parsed, "metadata.wordnet_dir") == pipeline.SITE["wordnet"]


class _Task:
    def __init__(self, task_id, bash_command, dag, **kw):
        self.task_id, self.bash_command, self.kw, self.downstream = task_id, bash_command, kw, []
        dag.tasks.append(self)

    def __rshift__(self, other):
        self.downstream.append(other)
        return other


class _Dag:
    current = None
    made: list[_Dag] = []

    def __init__(self, dag_id, **kw):
        self.dag_id, self.kw, self.tasks = dag_id, kw, []
        _Dag.made.append(self)

    def __enter__(self):
        _Dag.current = self
        return self

    def __exit__(self, *exc):
        _Dag.current = None


def _load_dag_with_stub_airflow(monkeypatch) -> list[_Dag]:
    """Execute the DAG file with a tiny stand-in for the airflow modules (Airflow is no dependency)."""
    airflow = types.ModuleType("airflow")
    airflow.DAG = _Dag
    ops = types.ModuleType("airflow.operators")
    bash = types.ModuleType("airflow.operators.bash")
    bash.BashOperator = lambda task_id, bash_command, **kw: _Task(task_id, bash_command, _Dag.current, **kw)
    for name, mod in {"airflow": airflow, "airflow.operators": ops, "airflow.operators.bash": bash}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    _Dag.made = []
    path = DEPLOY / "airflow" / "kgcurate_dag.py"
    spec = importlib.util.spec_from_file_location("kgcurate_dag_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(_Dag.made)


def _render(command: str, params: dict) -> list[str]:
    for key, value in params.items():
        command = command.replace("{{ params." + key + " }}", value)
    assert "{{" not in command
    return shlex.split(command)


def test_airflow_dag(monkeypatch):
    monkeypatch.delenv("KGCURATE_SUBMIT_OPTS", raising=False)
    py_compile.compile(str(DEPLOY / "airflow" / "kgcurate_dag.py"), doraise=True)
    dags = {d.dag_id: d for d in _load_dag_with_stub_airflow(monkeypatch)}
    assert set(dags) == {"kgcurate_pipeline", "kgcurate_refresh"}
    dag = dags["kgcurate_pipeline"]
    assert dag.kw["max_active_runs"] == 1 and dag.kw["default_args"]["retries"] >= 1
    ids = [t.task_id for t in dag.tasks]
    assert ids == [s.replace("-", "_") for s, _, _ in pipeline.STAGES]
    for task, (stage, script, _) in zip(dag.tasks, pipeline.STAGES, strict=True):
        argv = _render(task.bash_command, {"crawl": "CC-MAIN-2024-51"})
        if pipeline.SPARK[stage]:
            assert argv[0].endswith("deploy/spark-submit.sh") and argv[1] == stage and "queue" not in task.kw
            continue
        assert task.kw["queue"] == "gpu"  # GPU stages run on the GPU workers' queue
        parsed = parse_stage(stage, argv[argv.index(next(a for a in argv if a.endswith(script))) + 1:])
        assert parsed.command == stage
    by_id = {t.task_id: t for t in dag.tasks}
    downstream = {t.task_id: [d.task_id for d in t.downstream] for t in dag.tasks}
    # in order, one task per stage; the report right after balance, beside the GPU branch
    assert downstream == {"ingest_wat": ["ingest_wikidata"], "ingest_wikidata": ["build_metadata"],
                          "build_metadata": ["match"], "match": ["balance"], "balance": ["download", "report"],
                          "download": ["train"], "train": ["evaluate"], "evaluate": [], "report": []}
    assert by_id["train"].kw["queue"] == by_id["evaluate"].kw["queue"] == "gpu" and "queue" not in by_id["report"].kw
    for task, (stage, _, retries) in zip(dag.tasks, pipeline.STAGES, strict=True):
        if not pipeline.SPARK[stage]:
            continue
        argv = _render(task.bash_command, {"crawl": "CC-MAIN-2025-08"})
        assert argv[0].endswith("/deploy/spark-submit.sh") and argv[1] == stage
        assert task.kw["retries"] == retries
        parsed = parse_stage(stage, argv[2:])
        if stage == "ingest-wat":
            assert getattr(parsed, "wat.crawl") == "CC-MAIN-2025-08"
            assert getattr(parsed, "wat.inputs")[0].endswith("CC-MAIN-2025-08/wat.paths.gz")
        if stage.startswith("ingest-"):  # an unreadable file must not stop every later task (all_success)
            assert getattr(parsed, f"{'wat' if stage == 'ingest-wat' else 'wikidata'}.allow_failed_files") is True
    refresh = dags["kgcurate_refresh"]
    assert refresh.kw["schedule"] == "@weekly"
    assert [t.task_id for t in refresh.tasks] == ["refresh", "maintain"]
    # maintain only after a refresh that succeeded (never beside a run holding a lease, exit 2); a WAT file that
    # stays unreadable does not stop it for good: the refresh allows failed files (a warning, exit 0)
    assert "trigger_rule" not in refresh.tasks[1].kw
    params = {k: str(v) for k, v in refresh.kw["params"].items()}
    for task in [*refresh.tasks, *(t for t in dag.tasks if pipeline.SPARK[t.task_id.replace("_", "-")])]:
        assert task.kw["env"] == {"KGCURATE_SUBMIT_OPTS": "--deploy-mode cluster"} and task.kw["append_env"]
    for task in refresh.tasks:
        argv = _render(task.bash_command, params)
        assert argv[1] == task.task_id
        parsed = parse_stage(task.task_id, argv[2:])
        if task.task_id == "refresh":  # a fixed t: builds on the last run (the config's target_size reads all)
            assert getattr(parsed, "balance.t") == 20000.0
            # the schedule moves to each new crawl by itself (it was pinned to the render's example crawl),
            # reading the site's listing root (a mirror), not the config's s3://commoncrawl/
            assert getattr(parsed, "refresh.crawl") == "latest"
            assert getattr(parsed, "refresh.listing_base") == pipeline.SITE["listing_base"]
            assert getattr(parsed, "wat.allow_failed_files") is True


# --- image ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.train"])
def test_dockerfile(dist, dockerfile):
    text = (DEPLOY / dockerfile).read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if dockerfile == "Dockerfile":
        assert f"apache/spark:{SPARK_VERSION}-scala2.13-java17-python3-ubuntu" in froms
    else:  # the GPU image: CUDA base, the [train] extra under the pinned constraints, no Spark
        assert froms[0].startswith("nvidia/cuda:") and "-c /tmp/wheel/constraints.txt" in text
        assert '"${wheel}[train]"' in text and "apache/spark" not in text and "openjdk" not in text
    for image in froms:
        assert ":" in image and not image.endswith(":latest")
    assert "-c /tmp/wheel/constraints.txt" in text  # transitive packages as tested, in both images
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!deploy/" in ignored  # the context is deploy/ only: no .venv, no .cache
    for src in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", text, re.M):
        for item in src.split():
            assert item.startswith("deploy/"), item  # the rest of the checkout is not in the build context
            if item == "deploy/dist":
                assert dist.is_dir()
            elif item.startswith("deploy/dist/"):
                rel = item[len("deploy/dist/"):]
                if rel.startswith(("kgcurate-", "kgcurate_native-")):
                    continue  # the wheels: covered by test_wheel_builds, test_native_wheel_builds
                assert (dist / rel).exists(), item
            else:
                assert (REPO / item).exists(), item


def test_dockerfile_jar_filter_matches_fetch():
    """The image's shell filter must name artifacts as kgcurate.jars does (else Spark gets duplicate jars)."""
    text = (DEPLOY / "Dockerfile").read_text()
    sed = re.search(r"sed -E '([^']+)'", text).group(1)
    names = ["hadoop-client-api-3.4.1.jar", "delta-spark_4.0_2.13-4.4.0.jar", "bundle-2.24.6.jar",
             "wildfly-openssl-1.1.3.Final.jar", *[p.name for p in local_jars()]]
    stems = "\n".join(n[:-4] for n in names)
    out = subprocess.run(["sed", "-E", sed], input=stems, capture_output=True, text=True, check=True).stdout.split()
    assert out == [_artifact_name(n) for n in names]


def test_cluster_config_loads_and_holds_no_secret():
    cfg = config.load(REPO / "conf" / "cluster.yaml")
    assert cfg["lake"].startswith("s3a://") and int(cfg["spark"]["conf"]["spark.sql.shuffle.partitions"]) >= 1000
    assert cfg["balance"]["target_size"] == int(pipeline.SITE["target_size"])
    text = (REPO / "conf" / "cluster.yaml").read_text()
    assert not re.search(r"(?i)(secret|access)[_.]?key\s*:|password\s*:|AKIA[0-9A-Z]{16}", text)


_DAGS_RUNNER = """
import runpy, sys, types
airflow = types.ModuleType("airflow")
class DAG:
    def __init__(self, dag_id, **kw): self.dag_id = dag_id
    def __enter__(self): return self
    def __exit__(self, *exc): pass
airflow.DAG = DAG
bash = types.ModuleType("airflow.operators.bash")
class BashOperator:
    def __init__(self, task_id, bash_command, **kw): print("task", task_id)
    def __rshift__(self, other): return other
    def __rrshift__(self, other): return self
bash.BashOperator = BashOperator
sys.modules.update({"airflow": airflow, "airflow.operators": types.ModuleType("airflow.operators"),
                    "airflow.operators.bash": bash})
runpy.run_path(sys.argv[1])
"""


@pytest.mark.parametrize("with_stages", [True, False])
def test_a_dags_folder_without_stages_json_fails_instead_of_loading_an_empty_pipeline(tmp_path, with_stages):
    """The DAG's docstring once said to copy the DAG and pipeline.py: without the stages.json beside them,
    kgcurate_pipeline loaded with no task and no error. Copied as deploy/build.py lays out airflow/."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("kgcurate_dag.py", "pipeline.py", *(["stages.json"] if with_stages else [])):
        src = DEPLOY / ("airflow" if name == "kgcurate_dag.py" else "") / name
        (dags / name).write_bytes(src.read_bytes())
    (tmp_path / "runner.py").write_text(_DAGS_RUNNER)
    r = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(dags / "kgcurate_dag.py")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if with_stages:
        assert r.returncode == 0, r.stderr
        assert "task ingest_wat" in r.stdout and "task balance" in r.stdout
    else:
        assert r.returncode != 0 and "task " not in r.stdout
        assert f"{dags / 'stages.json'} is missing: copy stages.json with pipeline.py" in r.stderr


@pytest.mark.parametrize("script", [["deploy/build.py", "--no-wheel"], ["deploy/pipeline.py", "render"]])
def test_deploy_scripts_outside_the_venv_say_how_to_run_them(tmp_path, script):
    """`python deploy/build.py` with a Python that lacks the project's packages (the docs' spelling on a
    fresh checkout) ended in a ModuleNotFoundError trace; -S leaves this venv's site-packages out."""
    r = subprocess.run([sys.executable, "-S", *script, *(["--dist", str(tmp_path / "d")] if "build" in script[0]
                                                        else [])],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no kgcurate (not the project's environment): run `make " in lines[0], lines
    assert not (tmp_path / "d").exists()


def test_a_submit_without_deltas_jars_is_told_by_the_class_the_driver_cannot_load(spark) -> None:
    """A bare `spark-submit jobs/<stage>.py` (no Delta jars) failed at its first table with "'JavaPackage'
    object is not callable"; get_spark now checks the class under spark-submit and says what to run."""
    from kgcurate.session import DELTA_CLASS, jvm_has_class

    assert jvm_has_class(spark, DELTA_CLASS)  # the tests' session carries the jars
    assert jvm_has_class(spark, "org.apache.spark.sql.SparkSession")
    assert not jvm_has_class(spark, "io.delta.tables.NoSuchTable")
    assert not jvm_has_class(spark, "io.delta.nosuch.DeltaTable")


def test_render_writes_a_missing_stages_json(tmp_path) -> None:
    """The DAG's import is strict about stages.json; `pipeline.py render`, which writes it, is not (the
    strict check first made render die at import with a message that said to run render)."""
    deploy = tmp_path / "deploy"
    for sub in ("k8s", "emr"):
        (deploy / sub).mkdir(parents=True)
    for name in ("pipeline.py", "build.py"):
        (deploy / name).write_bytes((DEPLOY / name).read_bytes())
    r = subprocess.run([sys.executable, str(deploy / "pipeline.py"), "render"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (deploy / "stages.json").read_text() == (DEPLOY / "stages.json").read_text()
    assert (deploy / "k8s" / "ingest-wat.yaml").read_text() == (DEPLOY / "k8s" / "ingest-wat.yaml").read_text()


class _StubS3:
    """head_bucket raises what it is given; records created buckets and uploads."""

    def __init__(self, head_error: Exception | None) -> None:
        self.head_error, self.created, self.uploaded = head_error, [], []

    def head_bucket(self, Bucket: str) -> None:  # noqa: N803 - boto3's keyword
        if self.head_error is not None:
            raise self.head_error

    def create_bucket(self, Bucket: str) -> None:  # noqa: N803
        self.created.append(Bucket)

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.uploaded.append(key)


def test_s3_stage_creates_only_an_absent_bucket_and_says_s3_errors_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    """The compose job's first contact with S3: wrong keys (403) were taken for an absent bucket and ended in
    create_bucket's traceback, an unreachable endpoint in botocore's."""
    import s3_stage
    from botocore.exceptions import ClientError, EndpointConnectionError

    from kgcurate import s3

    (tmp_path / "wat").mkdir()
    (tmp_path / "wat" / "a.warc.wat.gz").write_bytes(b"x")

    def head(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "HeadBucket")

    absent = _StubS3(head("404"))
    monkeypatch.setattr(s3, "client", lambda: absent)
    assert s3_stage.main([str(tmp_path), "s3://demo/samples"]) == 0
    assert absent.created == ["demo"] and absent.uploaded == ["samples/wat/a.warc.wat.gz"]
    for error in (head("403"), EndpointConnectionError(endpoint_url="http://minio:9000/demo")):
        stub = _StubS3(error)
        monkeypatch.setattr(s3, "client", lambda stub=stub: stub)
        assert s3_stage.main([str(tmp_path), "s3://demo/samples/"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("kgcurate: error: cannot upload ") and err.count("\n") == 1, err
        assert "Traceback" not in err and not stub.created and not stub.uploaded
