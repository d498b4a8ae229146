"""Every kgcurate stage, declared once; the CLI, the job entries, the pipeline order and the
cluster definitions are derived from this list.

A stage is a module ``kgcurate.stages.<module>`` with ``execute(ctx, cfg)`` and ``report(summary, args)``
(optionally ``prepare(args, cfg)`` and ``skip_reason(cfg)``; see docs/architecture.md, "The stage
contract"); its config keys and flags are a section of :mod:`kgcurate.settings`, named by ``options``.
Adding a stage is its module, its tests, its section in ``docs/stages.md``, its options and one line
here (docs/architecture.md, "Adding a stage").

It starts nothing (no Spark session, no stage module imported), so ``kgcurate --help`` and ``deploy/``
use it freely.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from kgcurate import tables as T


@dataclass(frozen=True)
class Resources:
    """What one run of a stage asks a cluster for (a full crawl; docs/production.md)."""

    executors: int
    cores: int
    memory: str
    gpus: int = 0


@dataclass(frozen=True)
class Stage:
    name: str  # the command: `kgcurate <name>`, `jobs/<module>.py`
    module: str  # kgcurate.stages.<module>
    help: str  # one line, shown by `kgcurate --help`
    reads: tuple[str, ...] = ()  # lake tables it reads
    writes: tuple[str, ...] = ()  # lake tables it writes
    needs_spark: bool = True
    lake: str = "write"  # "write", "read" or "none": what the CLI checks before Spark starts
    pipeline: bool = False  # one of the steps `kgcurate run` executes (ordered by reads/writes)
    deploy: Resources | None = None  # a job of its own on a cluster (deploy/ renders it)
    retries: int = 1  # scheduler retries of that job; every stage is idempotent
    options: tuple[str, ...] = ()  # config sections (kgcurate.settings) whose flagged keys are its flags
    extra_flags: tuple[str, ...] = ()  # keys of other sections it offers as flags ("balance.target_size")
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def flag_keys(self) -> list[str]:
        """The config keys its command-line flags set (declared in kgcurate.settings)."""
        from kgcurate import settings

        return settings.flag_keys(self.options, self.extra_flags)

    @property
    def job_script(self) -> str:
        return f"jobs/{self.module}.py"


# Tables every writing stage may append to; they never order stages.
LOG_TABLES = frozenset({T.INGEST_LOG, T.BAD_RECORDS, T.LEASES})

STAGES: tuple[Stage, ...] = (
    Stage("make-sample", "make_sample",
          "write realistic generated WAT files (and, with --image-base-url, the images they link)",
          needs_spark=False, lake="none", options=("sample",)),
    Stage("ingest-wat", "ingest_wat", "parse CommonCrawl WAT files into the pairs table",
          writes=(T.PAIRS, T.INGEST_LOG, T.BAD_RECORDS, T.LEASES), pipeline=True,
          deploy=Resources(100, 4, "8g"), retries=3, options=("wat",)),
    Stage("ingest-wikidata", "ingest_wikidata", "parse a Wikidata JSON or N-Triples dump into entities",
          writes=(T.ENTITIES, T.INGEST_LOG, T.BAD_RECORDS), pipeline=True,
          deploy=Resources(40, 4, "12g"), retries=2, options=("wikidata",)),
    Stage("entity-set", "entity_set", "compute an entity set (conf/entity_sets/*.yaml) into entity_sets",
          reads=(T.ENTITIES,), writes=(T.ENTITY_SETS,), options=("entity_set",)),
    Stage("build-metadata", "build_metadata", "build metadata entries (WordNet, MetaCLIP, knowledge graph)",
          reads=(T.ENTITIES, T.ENTITY_SETS),
          writes=(T.METADATA, T.METADATA_SOURCES, T.METADATA_DROPS, T.ENTITY_SETS, T.BAD_RECORDS),
          pipeline=True, deploy=Resources(10, 4, "8g"), retries=2, options=("metadata",)),
    Stage("match", "match", "match captions to metadata entries; per-entry counts",
          reads=(T.PAIRS, T.METADATA),
          writes=(T.MATCHES, T.ENTRY_COUNTS, T.QID_COUNTS, T.MATCH_STATE, T.BAD_RECORDS, T.LEASES),
          pipeline=True, deploy=Resources(60, 4, "12g"), retries=2, options=("match",)),
    Stage("balance", "balance", "balanced sampling into the curated table",
          reads=(T.PAIRS, T.METADATA, T.MATCHES, T.ENTRY_COUNTS, T.QID_COUNTS, T.MATCH_STATE, T.ENTITIES,
                 T.CURATED, T.CURATION_RUNS),  # a recorded run to build on
          writes=(T.CURATED, T.CURATION_RUNS, T.PAIR_TEXTS, T.LEASES),
          pipeline=True, deploy=Resources(30, 4, "12g"), retries=2, options=("balance",)),
    Stage("curated", "curated", "list the curated sets kept side by side, or drop one",
          reads=(T.CURATED, T.CURATION_RUNS), writes=(T.CURATED, T.CURATION_RUNS, T.LEASES),
          options=("curated",)),
    Stage("report", "report", "HTML report with plots of counts and sizes",
          reads=(T.PAIRS, T.INGEST_LOG, T.BAD_RECORDS, T.METADATA, T.METADATA_SOURCES, T.ENTITY_SETS, T.MATCHES,
                 T.ENTRY_COUNTS, T.QID_COUNTS, T.MATCH_STATE, T.CURATED, T.CURATION_RUNS, T.TRAIN_RUNS, T.EVAL_RUNS),
          lake="read", pipeline=True, deploy=Resources(10, 4, "8g"), retries=1,
          options=("report",)),
    Stage("download", "download", "download a curated run's images into webdataset shards",
          reads=(T.CURATED, T.CURATION_RUNS, T.PAIR_TEXTS, T.DOWNLOADS, T.DOWNLOAD_RUNS),
          writes=(T.DOWNLOADS, T.DOWNLOAD_RUNS, T.LEASES), deploy=Resources(50, 4, "8g"), retries=3,
          options=("download",)),
    Stage("train", "train", "train a CLIP model on a download's shards with open_clip's trainer",
          reads=(T.DOWNLOADS, T.DOWNLOAD_RUNS), writes=(T.TRAIN_RUNS, T.BAD_RECORDS, T.LEASES), needs_spark=False,
          deploy=Resources(1, 64, "480g", gpus=8), retries=3, options=("train",)),
    Stage("evaluate", "evaluate", "zero-shot accuracy and image-text retrieval of a trained CLIP checkpoint",
          reads=(T.TRAIN_RUNS,), writes=(T.EVAL_RUNS, T.BAD_RECORDS, T.LEASES), needs_spark=False,
          deploy=Resources(1, 8, "64g", gpus=1), retries=2, options=("evaluate",)),
    # Commands over other stages: the pipeline in one session, a crawl's refresh, table upkeep.
    Stage("run", "run_pipeline", "the whole pipeline from a config file",
          extra_flags=("report.out",)),
    Stage("refresh", "refresh", "incremental refresh for a new crawl",
          reads=(T.INGEST_LOG, T.METADATA, T.MATCH_STATE, T.CURATION_RUNS),
          writes=(T.PAIRS, T.INGEST_LOG, T.BAD_RECORDS, T.MATCHES, T.ENTRY_COUNTS, T.QID_COUNTS, T.MATCH_STATE,
                  T.CURATED, T.CURATION_RUNS, T.PAIR_TEXTS, T.LEASES),
          options=("refresh",), extra_flags=("balance.t", "balance.target_size", "balance.tail_share",
                                              "wat.allow_failed_files")),
    Stage("maintain", "maintain", "OPTIMIZE and VACUUM the lake's tables", writes=tuple(T.SCHEMAS),
          options=("maintain",)),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def _ordered(steps: list[Stage]) -> list[Stage]:
    """``steps`` with every writer of a table before its readers (log tables aside); steps that do not
    depend on each other keep their order of declaration."""
    writers = {t: [s.name for s in steps if t in s.writes] for t in {t for s in steps for t in s.writes}}
    needs = {s.name: {w for t in s.reads if t not in LOG_TABLES for w in writers.get(t, []) if w != s.name}
             for s in steps}
    done: list[Stage] = []
    while len(done) < len(steps):
        ready = [s for s in steps if s not in done and needs[s.name] <= {d.name for d in done}]
        if not ready:
            cycle = sorted(s.name for s in steps if s not in done)
            raise ValueError(f"stages {cycle} read each other's tables: no pipeline order")
        done.append(ready[0])
    return done


def pipeline_order(stages: tuple[Stage, ...] | None = None) -> list[Stage]:
    """The stages `kgcurate run` executes (of ``stages``, default the registry), writers before readers."""
    return _ordered([s for s in (STAGES if stages is None else stages) if s.pipeline])


def deployed() -> list[Stage]:
    """The stages a cluster runs as jobs, writers before readers: the pipeline's Spark jobs, then the
    stages after it that are not part of `kgcurate run` (download reaches the internet; train and
    evaluate need GPUs and no Spark)."""
    return _ordered([s for s in STAGES if s.deploy is not None])


def doc_line(stage: Stage) -> str:
    """The line docs/stages.md carries under each stage's heading (kept equal by the tests)."""
    def names(ts: tuple[str, ...]) -> str:
        return ", ".join(f"`{t}`" for t in ts) or "nothing"

    spark = "" if stage.needs_spark else " No Spark."
    job = f" Cluster job: `{stage.job_script}`, {stage.retries} retries." if stage.deploy else ""
    return f"Reads: {names(stage.reads)}. Writes: {names(stage.writes)}.{spark}{job}"


def deploy_json() -> str:
    """``deploy/stages.json``: what ``deploy/pipeline.py`` (which imports nothing from kgcurate, so it
    can sit next to a DAG) reads; rendered by ``python deploy/pipeline.py render``."""
    rows = [{"stage": s.name, "script": s.job_script, "retries": s.retries, "spark": s.needs_spark,
             "resources": asdict(s.deploy)} for s in deployed()]
    return json.dumps(rows, indent=2) + "\n"
