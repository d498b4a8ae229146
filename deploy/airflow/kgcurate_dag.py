"""Airflow DAGs for kgcurate: the full pipeline for one crawl, and the scheduled refresh.

Copy the three files of ``deploy/dist/airflow/`` (after ``make dist``): this file, ``pipeline.py``
and the ``stages.json`` it reads, into the dags folder. The stage list and arguments come from
``pipeline.py`` (plain data, tested against the real CLI), so the DAG holds no stage logic of its
own. Each stage is one task that runs ``deploy/spark-submit.sh`` on a host with Spark and
``deploy/dist`` (``KGCURATE_HOME``); every stage is idempotent, so Airflow's retries are safe.

``kgcurate_pipeline``: triggered by hand with ``{"crawl": "CC-MAIN-YYYY-WW"}``.
``kgcurate_refresh``: weekly ``kgcurate refresh --crawl <crawl>`` (a no-op once the crawl is done)
then ``kgcurate maintain`` (OPTIMIZE, VACUUM keeping a week of versions).
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from pipeline import EXAMPLE_CRAWL, SITE, SPARK, STAGES, launch, stage_args
except ImportError:  # in the repository: deploy/airflow/ sits below deploy/pipeline.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from pipeline import EXAMPLE_CRAWL, SITE, SPARK, STAGES, launch, stage_args

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

KGCURATE_HOME = os.environ.get("KGCURATE_HOME", "/opt/kgcurate")
SUBMIT = f"{KGCURATE_HOME}/deploy/spark-submit.sh"
CRAWL = "{{ params.crawl }}"  # rendered by Airflow at run time
GPU_QUEUE = os.environ.get("KGCURATE_GPU_QUEUE", "gpu")  # the Celery queue of workers with GPUs
# The report reads only the curation tables: it runs right after balance, beside the GPU branch
# (download -> train -> evaluate), so a site whose GPU queue has no worker still gets its report.
AFTER = {"report": "balance"}
DEFAULT_ARGS = {
    "owner": "kgcurate",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=24),
}


def _join(args: list[str]) -> str:
    """A shell line; Jinja placeholders are left unquoted on purpose."""
    return " ".join(a if "{{" in a else shlex.quote(a) for a in args)


def command(stage: str, args: list[str]) -> str:
    """The shell line for one Spark stage (through deploy/spark-submit.sh)."""
    return _join([SUBMIT, stage, *args])


def spark_task(stage: str, args: list[str]) -> dict:
    """A Spark stage through spark-submit, in cluster mode unless KGCURATE_SUBMIT_OPTS says otherwise (in
    client mode the driver, and every path its arguments name, would be on the Airflow worker)."""
    return {"bash_command": command(stage, args),
            "env": {"KGCURATE_SUBMIT_OPTS": os.environ.get("KGCURATE_SUBMIT_OPTS", "--deploy-mode cluster")},
            "append_env": True}


def task_args(stage: str, script: str) -> dict:
    """A pipeline task: Spark stages through spark-submit; train and evaluate (no Spark) on a GPU worker."""
    if SPARK[stage]:
        return spark_task(stage, stage_args(stage, CRAWL))
    return {"bash_command": _join(launch(stage, script, CRAWL, KGCURATE_HOME)), "queue": GPU_QUEUE}


with DAG(
    dag_id="kgcurate_pipeline",
    description="CommonCrawl WAT + Wikidata -> balanced image-text set, for one crawl",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=1,  # stages write the same lake: one run at a time
    params={"crawl": EXAMPLE_CRAWL},
    default_args=DEFAULT_ARGS,
    tags=["kgcurate"],
) as pipeline_dag:
    tasks: dict = {}
    previous = None
    for stage, script, retries in STAGES:
        task = BashOperator(task_id=stage.replace("-", "_"), retries=retries, **task_args(stage, script))
        upstream = AFTER.get(stage, previous)
        if upstream is not None:
            tasks[upstream] >> task
        tasks[stage], previous = task, stage


# A fixed t (MetaCLIP's 20k): the refresh's balance builds on the previous run's curated set; the config's
# target_size (the first curation's 400M) would read all of matches on every refresh (docs/production.md).
REFRESH_T = 20000
# --crawl latest: each scheduled run refreshes the newest crawl published under the listing base, so the
# schedule moves on to a new crawl by itself (a manual run may name one: crawl=CC-MAIN-YYYY-WW).
# --allow-failed-files: a WAT object that stays unreadable is a warning (the next refresh retries it), not a
# failed refresh that would keep maintain from running
REFRESH_ARGS = ["--config", "{{ params.config }}", "--lake", "{{ params.lake }}", "--crawl", CRAWL,
                "--listing-base", "{{ params.listing_base }}", "--t", "{{ params.t }}", "--allow-failed-files"]
MAINTAIN_ARGS = ["--config", "{{ params.config }}", "--lake", "{{ params.lake }}", "--vacuum-hours", "168"]

with DAG(
    dag_id="kgcurate_refresh",
    description="weekly incremental refresh of the newest published crawl, then OPTIMIZE/VACUUM",
    start_date=datetime(2024, 1, 1),
    schedule="@weekly",
    catchup=False,
    max_active_runs=1,
    params={"crawl": "latest", "lake": stage_args("match", EXAMPLE_CRAWL)[3],
            "config": stage_args("match", EXAMPLE_CRAWL)[1], "listing_base": SITE["listing_base"], "t": REFRESH_T},
    default_args=DEFAULT_ARGS,
    tags=["kgcurate"],
) as refresh_dag:
    refresh = BashOperator(task_id="refresh", retries=3, **spark_task("refresh", REFRESH_ARGS))
    # only after a refresh that succeeded (failed files allowed): not after exit 2, where another run holds a
    # lease and is writing (maintain's OPTIMIZE/VACUUM takes none), nor after a crash
    maintain = BashOperator(task_id="maintain", retries=1, **spark_task("maintain", MAINTAIN_ARGS))
    refresh >> maintain
