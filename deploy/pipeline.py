"""The cluster pipeline as plain data: stage order and each stage's CLI arguments.

One source for every scheduler: ``deploy/k8s/*.yaml`` and ``deploy/emr/steps.json`` are rendered
from it (``make render``), and the Airflow DAG imports it. Which stages run,
in which order, with what retries and cluster sizes comes from kgcurate's stage registry, rendered
into ``stages.json`` beside this file by the same command. It imports nothing
from kgcurate or Airflow, so it can be copied next to a DAG on a scheduler that has neither;
``tests/test_deploy.py`` parses every argument list with the real ``kgcurate`` CLI parser.

Edit the ``SITE`` values (bucket, image, dump) for your account, then re-render.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Where things live on your site: the only values you should need to change.
SITE: dict[str, str] = {
    "image": "ghcr.io/example/kgcurate:0.1.0",            # built from deploy/Dockerfile
    "lake": "s3a://example-bucket/kgcurate/lake",
    "config": "/opt/kgcurate/conf/cluster.yaml",           # baked into the image
    "listing_base": "s3://commoncrawl/",                    # CommonCrawl (or a mirror laid out like it)
    "wikidata": "s3a://example-bucket/wikidata/latest-all.json.bz2",
    "report_out": "s3://example-bucket/kgcurate/reports/latest",  # index.html + PNGs, beside the lake
    "target_size": "400000000",                             # MetaCLIP's 400M
    "shards": "s3://example-bucket/kgcurate/shards",        # `kgcurate download` output: <shards>/<crawl>/*.tar
    "train_image": "ghcr.io/example/kgcurate-train:0.1.0",  # built from deploy/Dockerfile.train (CUDA)
    "experiments": "/mnt/experiments",                      # checkpoints: a volume shared by train and evaluate
    "experiments_claim": "kgcurate-experiments",            # the PersistentVolumeClaim mounted there
    "dist": "s3://example-bucket/kgcurate/dist",            # `make dist` output, uploaded (EMR)
    "wordnet": "s3a://example-bucket/kgcurate/wordnet",     # WordNet 3.0's dict files, uploaded (EMR nodes lack them)
    "namespace": "spark-jobs",
    "service_account": "kgcurate-spark",
}
EXAMPLE_CRAWL = "CC-MAIN-2024-51"

# The deployed stages, rendered from kgcurate's stage registry (kgcurate/registry.py) into
# stages.json beside this file by `make render`: order, job script, retries and
# the cluster sizes of one full crawl (docs/production.md has the arithmetic).
_STAGES_JSON = Path(__file__).with_name("stages.json")
# (stage as in `kgcurate <stage>`, job script, retries), in pipeline order; sizes and retries by stage;
# SPARK: whether it is a Spark job (else a plain container: train and evaluate, on GPU nodes).
STAGES: tuple[tuple[str, str, int], ...] = ()
RESOURCES: dict[str, dict[str, int | str]] = {}
STAGE_RETRIES: dict[str, int] = {}
SPARK: dict[str, bool] = {}


def _declare(declared: list[dict]) -> None:
    global STAGES, RESOURCES, STAGE_RETRIES, SPARK
    STAGES = tuple((d["stage"], d["script"], d["retries"]) for d in declared)
    RESOURCES = {d["stage"]: d["resources"] for d in declared}
    STAGE_RETRIES = {d["stage"]: d["retries"] for d in declared}
    SPARK = {d["stage"]: d.get("spark", True) for d in declared}




def _load_stages(path: Path) -> list[dict]:
    """The rendered stage list; its absence is an install mistake (only the DAG and this file copied
    into the dags folder), which would otherwise load as a pipeline DAG without a single task."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: copy stages.json with pipeline.py (all of "
                                "deploy/dist/airflow/ after deploy/build.py), or run `make render`")
    return json.loads(path.read_text())


# `pipeline.py render` writes stages.json, so it may start without one; an import (the DAG) may not.
_declare([] if __name__ == "__main__" and not _STAGES_JSON.exists() else _load_stages(_STAGES_JSON))


def listing_for(crawl: str, base: str | None = None) -> str:
    base = SITE["listing_base"] if base is None else base
    return f"{base.rstrip('/')}/crawl-data/{crawl}/wat.paths.gz"


def stage_args(stage: str, crawl: str, site: dict[str, str] | None = None) -> list[str]:
    """The arguments after ``kgcurate <stage>`` (or ``jobs/<stage>.py``) for one crawl."""
    s = {**SITE, **(site or {})}
    common = ["--config", s["config"], "--lake", s["lake"]]
    extra: dict[str, list[str]] = {
        # --listing-base: the listing's lines are fetched from the same root (a mirror), not from the
        # config's wat.listing_base (conf/cluster.yaml: s3://commoncrawl/)
        # --allow-failed-files: a file that stays unreadable (a missing object) is a warning and exit 0, so the
        # scheduler's next stages run on what was read, as `kgcurate run` does; a crash is still exit 1
        "ingest-wat": ["--crawl", crawl, "--listing-base", s["listing_base"], "--allow-failed-files",
                       listing_for(crawl, s["listing_base"])],
        "ingest-wikidata": ["--allow-failed-files", s["wikidata"]],
        "build-metadata": [],
        "match": [],
        "balance": ["--target-size", s["target_size"]],
        "report": ["--out", s["report_out"]],
        # a folder per crawl: a refresh's new curated run may not overwrite the shards the last one trained on
        "download": ["--out", f"{s['shards'].rstrip('/')}/{crawl}"],
        # --resume: a retried pod continues the experiment from its newest checkpoint (or starts it)
        "train": ["--experiments", s["experiments"], "--resume"],
        "evaluate": [],
    }
    return common + extra[stage]


def job_name(stage: str) -> str:
    return f"kgcurate-{stage}"


def spark_application(stage: str, script: str, crawl: str) -> dict:
    """A Spark-operator ``SparkApplication`` (sparkoperator.k8s.io/v1beta2) for one stage."""
    res = RESOURCES[stage]
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": job_name(stage), "namespace": SITE["namespace"],
                     "labels": {"app": "kgcurate", "stage": stage}},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": SITE["image"],
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": f"local:///opt/kgcurate/{script}",
            "arguments": stage_args(stage, crawl),
            "sparkVersion": "4.0.1",
            # Jars are baked into the image (deploy/Dockerfile); session settings as deploy/spark-submit.sh
            # (kgcurate.session.SESSION_CONF).
            "sparkConf": {
                "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
                "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
                "spark.hadoop.fs.s3a.aws.credentials.provider":
                    "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
                "spark.sql.shuffle.partitions": "2000",
            },
            "restartPolicy": {"type": "OnFailure", "onFailureRetries": STAGE_RETRIES[stage],
                              "onFailureRetryInterval": 60, "onSubmissionFailureRetries": 3,
                              "onSubmissionFailureRetryInterval": 30},
            "driver": {"cores": 2, "memory": "8g", "serviceAccount": SITE["service_account"],
                       "labels": {"app": "kgcurate"}},
            # Credentials: IRSA / pod identity on the service account (default chain), never a secret here.
            "executor": {"instances": res["executors"], "cores": res["cores"], "memory": res["memory"],
                         "labels": {"app": "kgcurate"}},
        },
    }


def launch(stage: str, script: str, crawl: str, home: str = "/opt/kgcurate") -> list[str]:
    """The command of a stage that is not a Spark job: ``torchrun`` over the pod's GPUs for train (open_clip's
    trainer runs one process per GPU), plain ``python`` otherwise."""
    path = f"{home}/{script}"
    gpus = int(RESOURCES[stage].get("gpus", 0))
    if stage == "train" and gpus > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", path, *stage_args(stage, crawl)]
    return ["python", path, *stage_args(stage, crawl)]


def container_job(stage: str, script: str, crawl: str) -> dict:
    """A Kubernetes ``batch/v1`` Job for a stage without Spark (train, evaluate): one pod of the training
    image (deploy/Dockerfile.train) on a GPU node, checkpoints on a shared volume."""
    res = RESOURCES[stage]
    # Spark's "480g" is Kubernetes' "480Gi"
    memory = str(res["memory"]).replace("g", "Gi").replace("m", "Mi")
    limits: dict[str, int | str] = {"cpu": str(res["cores"]), "memory": memory}
    if int(res.get("gpus", 0)):
        limits["nvidia.com/gpu"] = int(res["gpus"])
    labels = {"app": "kgcurate", "stage": stage}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(stage), "namespace": SITE["namespace"], "labels": dict(labels)},
        "spec": {
            # A retried pod resumes from the newest checkpoint (same command), so retries are safe.
            "backoffLimit": STAGE_RETRIES[stage],
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": SITE["service_account"],
                    "containers": [{
                        "name": stage,
                        "image": SITE["train_image"],
                        "imagePullPolicy": "IfNotPresent",
                        "command": launch(stage, script, crawl),
                        "env": [{"name": "OMP_NUM_THREADS", "value": "4"}],
                        "resources": {"requests": dict(limits), "limits": dict(limits)},
                        "volumeMounts": [{"name": "experiments", "mountPath": SITE["experiments"]},
                                         {"name": "dshm", "mountPath": "/dev/shm"}],
                    }],
                    # Data-loader workers share batches through /dev/shm; the default 64 MiB is too small.
                    "volumes": [{"name": "experiments",
                                 "persistentVolumeClaim": {"claimName": SITE["experiments_claim"]}},
                                {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }


def emr_steps(crawl: str, packages: str) -> list[dict]:
    """``aws emr add-steps --steps file://deploy/emr/steps.json``: one Spark step per Spark stage (train and
    evaluate run on GPU nodes: deploy/k8s)."""
    dist = SITE["dist"].rstrip("/")
    steps = []
    for stage, script, _ in STAGES:
        if not SPARK[stage]:
            continue
        res = RESOURCES[stage]
        # The config travels with the job: in cluster mode it lands in the driver's working dir. EMR nodes
        # have neither our image's /opt/kgcurate/conf (the entity set cluster.yaml names) nor WordNet: the
        # metadata step ships the set beside the config and reads WordNet from its S3 copy.
        files, extra = [f"{dist}/conf/cluster.yaml"], []
        if stage == "build-metadata":
            files.append(f"{dist}/conf/entity_sets/organisms.yaml")
            extra = ["--entity-set", "organisms.yaml", "--wordnet-dir", SITE["wordnet"]]
        args = [
            "--deploy-mode", "cluster",
            "--packages", packages,
            "--py-files", f"{dist}/kgcurate.zip",
            "--files", ",".join(files),
            "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
            "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "--num-executors", str(res["executors"]),
            "--executor-cores", str(res["cores"]),
            "--executor-memory", str(res["memory"]),
            f"{dist}/{script}",
            *stage_args(stage, crawl, {"config": "cluster.yaml"}), *extra,
        ]
        steps.append({"Type": "Spark", "Name": job_name(stage), "ActionOnFailure": "CANCEL_AND_WAIT",
                      "Args": args})
    return steps


def _yaml_dump(obj: dict) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, width=120)


def render(root: Path, packages: str, stages_json: str | None = None) -> list[Path]:
    """Write deploy/stages.json (``stages_json``: the registry's, when given), then deploy/k8s/<stage>.yaml
    and deploy/emr/steps.json for EXAMPLE_CRAWL."""
    written = []
    if stages_json is not None:
        target = root / "deploy" / "stages.json"
        target.write_text(stages_json)
        written.append(target)
        _declare(json.loads(stages_json))
    k8s = root / "deploy" / "k8s"
    k8s.mkdir(parents=True, exist_ok=True)
    for stage, script, _ in STAGES:
        path = k8s / f"{stage}.yaml"
        header = (f"# Rendered by `make render` for {EXAMPLE_CRAWL}: edit SITE there, "
                  "or this file by hand.\n")
        make = spark_application if SPARK[stage] else container_job
        path.write_text(header + _yaml_dump(make(stage, script, EXAMPLE_CRAWL)))
        written.append(path)
    emr = root / "deploy" / "emr" / "steps.json"
    emr.parent.mkdir(parents=True, exist_ok=True)
    emr.write_text(json.dumps(emr_steps(EXAMPLE_CRAWL, packages), indent=2) + "\n")
    written.append(emr)
    return written


def main(argv: list[str]) -> int:
    if argv[:1] != ["render"]:
        print("usage: .venv/bin/python deploy/pipeline.py render (or: make render)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build import project_env_missing  # deploy/build.py: rendering reads kgcurate's registry too

    missing = project_env_missing("deploy/pipeline.py render", "render")
    if missing:
        print(f"deploy/pipeline.py render: {missing}", file=sys.stderr)
        return 2
    from kgcurate.jars import COORDINATES
    from kgcurate.registry import deploy_json

    for path in render(Path(__file__).resolve().parents[1], ",".join(COORDINATES), deploy_json()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
