"""Every Delta table of the lake: its name and schema, declared once.

Stages import the names (declared in :mod:`kgcurate.table_names`) and schemas from here; nothing else
spells a table path.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from kgcurate.table_names import (  # noqa: F401 - re-exported: stages spell tables.PAIRS
    BAD_RECORDS,
    CURATED,
    CURATION_RUNS,
    DOWNLOAD_RUNS,
    DOWNLOADS,
    ENTITIES,
    ENTITY_SETS,
    ENTRY_COUNTS,
    EVAL_RUNS,
    INGEST_LOG,
    LEASES,
    MATCH_STATE,
    MATCHES,
    METADATA,
    METADATA_DROPS,
    METADATA_SOURCES,
    PAIR_TEXTS,
    PAIRS,
    QID_COUNTS,
    TRAIN_RUNS,
)


def _s(*fields: StructField) -> StructType:
    return StructType(list(fields))


def _f(name: str, dtype, nullable: bool = True) -> StructField:
    return StructField(name, dtype, nullable)


STR, LONG, INT, DBL, BOOL, TS = StringType(), LongType(), IntegerType(), DoubleType(), BooleanType(), TimestampType()
# Element-nullable: arrays read back from Parquet or built by outer joins are, and MERGE will not cast.
STRS = ArrayType(StringType(), containsNull=True)

SCHEMAS: dict[str, StructType] = {
    # pair_id = xxhash64(image_url, text): stable across runs and clusters.
    PAIRS: _s(
        _f("pair_id", LONG, False), _f("image_url", STR, False), _f("text", STR, False),
        _f("text_source", STR, False), _f("page_url", STR), _f("crawl", STR), _f("source_file", STR),
        _f("run_id", STR),
    ),
    INGEST_LOG: _s(
        _f("job", STR, False), _f("run_id", STR, False), _f("source_file", STR, False),
        _f("status", STR, False), _f("records", LONG), _f("rows_out", LONG), _f("bad_records", LONG),
        _f("filtered", LONG), _f("bytes", LONG), _f("error", STR), _f("started_at", TS),
        _f("finished_at", TS),
    ),
    BAD_RECORDS: _s(
        _f("job", STR, False), _f("run_id", STR), _f("source_file", STR, False), _f("offset", LONG, False),
        _f("reason", STR, False), _f("sample", STR),
    ),
    ENTITIES: _s(
        _f("qid", STR, False), _f("label", STR), _f("description", STR), _f("aliases", STRS),
        _f("common_names", STRS), _f("taxon_name", STR), _f("sitelinks", INT), _f("instance_of", STRS),
        _f("subclass_of", STRS), _f("parent_taxon", STRS), _f("has_image", BOOL), _f("source_file", STR),
    ),
    ENTITY_SETS: _s(_f("set_name", STR, False), _f("qid", STR, False), _f("depth", INT)),
    # What each source lists, one row per (entry, source, qid): replaced per source by build-metadata.
    METADATA_SOURCES: _s(_f("entry", STR, False), _f("source", STR, False), _f("qid", STR)),
    # One row per distinct string, derived from metadata_sources: entry_id = xxhash64(entry) (stable);
    # sources and qids (sorted; qids empty unless the KG names it) are provenance.
    METADATA: _s(_f("entry_id", LONG, False), _f("entry", STR, False), _f("sources", STRS), _f("qids", STRS)),
    METADATA_DROPS: _s(_f("entry", STR, False), _f("source", STR, False), _f("qid", STR), _f("reason", STR, False)),
    MATCHES: _s(_f("pair_id", LONG, False), _f("entry_id", LONG, False)),
    ENTRY_COUNTS: _s(_f("entry_id", LONG, False), _f("count", LONG, False)),
    QID_COUNTS: _s(_f("qid", STR, False), _f("count", LONG, False)),
    # What the last match run saw: the metadata version it used, per matched source table.
    MATCH_STATE: _s(_f("key", STR, False), _f("value", STR)),
    CURATED: _s(
        _f("pair_id", LONG, False), _f("image_url", STR, False), _f("text", STR, False),
        _f("entry_ids", ArrayType(LongType(), True)), _f("run_id", STR, False),
    ),
    CURATION_RUNS: _s(
        _f("run_id", STR, False), _f("t", DBL), _f("target_size", LONG), _f("tail_share", DBL),
        _f("seed", LONG), _f("per_qid", BOOL), _f("pairs_in", LONG), _f("matched_pairs", LONG),
        _f("unmatched_pairs", LONG), _f("pairs_out", LONG), _f("input_versions", MapType(STR, LONG)),
        _f("created_at", TS),
    ),
    # The texts a training sample of a curated pair may show: its own alt/title text (qid, language null)
    # and the KG names/descriptions of the entities it matched (kgcurate.kg_texts).
    PAIR_TEXTS: _s(
        _f("pair_id", LONG, False), _f("text", STR, False), _f("text_source", STR, False), _f("qid", STR),
        _f("language", STR),
    ),
    # One row per image URL of a curated run that `download` tried: where it is (shard, key) or why not.
    # Columns after curated_run_id are kgcurate.download.shard_task.DOWNLOAD_ROWS (checked by a test).
    DOWNLOADS: _s(
        _f("curated_run_id", STR, False), _f("image_url", STR, False), _f("shard", INT, False), _f("key", STR),
        _f("status", STR, False), _f("http_status", INT), _f("error", STR), _f("bytes", LONG), _f("width", INT),
        _f("height", INT), _f("original_width", INT), _f("original_height", INT), _f("sha256", STR),
        _f("opt_out_reason", STR), _f("attempts", INT, False), _f("final_url", STR), _f("download_run_id", STR),
    ),
    # One row per download run: which curated run (and table version) into which folder, its shards.
    DOWNLOAD_RUNS: _s(
        _f("run_id", STR, False), _f("curated_run_id", STR, False), _f("curated_version", LONG), _f("out", STR, False),
        _f("params", MapType(STR, STR)),
        _f("shards", ArrayType(StructType([_f("shard", INT), _f("file", STR), _f("samples", LONG),
                                           _f("urls", LONG)]), True)),
        _f("urls", LONG), _f("succeeded", LONG), _f("success_rate", DBL), _f("bytes", LONG),
        _f("started_at", TS), _f("finished_at", TS),
    ),
    # One row per training experiment (kgcurate train, written with deltalake, no Spark): what it read at which
    # versions, the trainer's exact arguments and package versions, how far it got; a resume updates the row.
    TRAIN_RUNS: _s(
        _f("train_run_id", STR, False), _f("curated_run_id", STR), _f("download_run_id", STR),
        _f("downloads_version", LONG), _f("download_runs_version", LONG), _f("model", STR, False),
        _f("args", STR), _f("packages", STR), _f("samples_seen", LONG), _f("steps", LONG), _f("final_loss", DBL),
        _f("checkpoint", STR), _f("experiment_dir", STR, False), _f("status", STR, False), _f("started_at", TS),
        _f("finished_at", TS),
    ),
    # One row per (evaluation, dataset, metric), written by `kgcurate evaluate` with deltalake; a rerun of
    # a checkpoint on a dataset replaces that checkpoint's rows for the dataset.
    EVAL_RUNS: _s(
        _f("eval_run_id", STR, False), _f("train_run_id", STR), _f("checkpoint", STR, False), _f("model", STR, False),
        _f("dataset", STR, False), _f("metric", STR, False), _f("value", DBL), _f("samples", LONG),
        _f("created_at", TS),
    ),
    # One writer per stage and lake (kgcurate.leases): the run holding it, renewed until expires_at.
    LEASES: _s(_f("scope", STR, False), _f("run_id", STR, False), _f("holder", STR), _f("acquired_at", TS),
               _f("expires_at", TS)),
}


# Partition columns: every balance run's curated set is kept side by side, one partition per run_id,
# so a run rewrites only its own partition and `curated drop` deletes one partition.
PARTITIONED_BY: dict[str, tuple[str, ...]] = {CURATED: ("run_id",)}


def schema(name: str) -> StructType:
    return SCHEMAS[name]


def partition_columns(name: str) -> tuple[str, ...]:
    return PARTITIONED_BY.get(name, ())


def arrow_schema(name: str):
    """A table's schema as Arrow, for writers without Spark (``deltalake``): derived from the one above."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(SCHEMAS[name])


def from_arrow(schema) -> StructType:
    """The Spark schema of an Arrow one: a task-side schema (what ``mapInArrow`` tasks emit and stage
    as Parquet) is declared once, in Arrow, and Spark reads it through this."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)
