"""``kgcurate build-metadata``: WordNet lemmas, a MetaCLIP list and KG names -> ``metadata``.

One string is one entry, whatever lists it (MetaCLIP's metadata is a set of strings and its
``metadata.json`` already holds WordNet lemmas): what each source lists is kept in
``metadata_sources`` (entry, source, qid), and ``metadata`` is derived from it, one row per distinct
string with ``entry_id = xxhash64(entry)`` and its provenance (sorted ``sources`` and ``qids``).

Sources rebuilt by a run: ``wordnet`` (unless ``--no-wordnet``), ``metaclip`` (when a file is given)
and ``kg`` (when entity sets are given). Only those sources' rows of ``metadata_sources`` are
replaced (one Delta commit, ``replaceWhere source IN (...)``); a source not given this run keeps its
rows, because leaving out ``--metaclip-metadata`` on a re-run most likely means "no change", not
"delete". ``--replace-all`` rebuilds it from this run's sources only. Every run then re-derives
``metadata`` whole from ``metadata_sources`` (a second commit), so a run that died between the two
commits is undone by the next one (:func:`undo_dead_run`, under the lake's build-metadata lease).

All input files are read and checked before anything is written, so a bad file leaves every
table as it was.

A run whose inputs are unchanged since the last build is a no-op (:func:`done_before`): the
``metadata`` commit is noted with what it was built from, and rebuilding from the same entries, specs
and options over the same table versions would write the same rows again. ``--force`` rebuilds.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import __version__, ids, lake, leases, paths, run_notes, tables
from kgcurate.bad_input import BadInput
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError, first_line
from kgcurate.metadata import SOURCE_KG, SOURCE_METACLIP, SOURCE_WORDNET, kg, metaclip, old_layout_message, wordnet

JOB = "build-metadata"
log = logging.getLogger("kgcurate.build_metadata")
ENTRY_DDL = "entry string, source string, qid string"


@dataclass
class BuildMetadataSummary(Summary):
    """One build-metadata run: what each source read (None: not read this run), the entity sets' sizes,
    entries per source and KG names dropped per reason (of the committed tables), bad input."""

    run_id: str
    wordnet_synsets: int | None = None
    wordnet_lemmas: int | None = None
    metaclip_items: int | None = None
    metaclip_duplicates: int | None = None
    sets: dict[str, int] = field(default_factory=dict)  # entity set -> entities, those computed this run
    entity_sets: str | None = None  # the sets whose names were read, comma-separated
    entries: dict[str, int] = field(default_factory=dict)  # source -> distinct strings it lists
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> KG names dropped
    rows_total: int = 0
    dropped_total: int = 0
    bad_records: int = 0
    rebuilt: str = ""
    metadata_version: int | None = None
    seconds: float = 0.0
    done_by: str | None = None  # nothing rebuilt: the earlier run that built it from these same inputs


def report(summary: BuildMetadataSummary, args: argparse.Namespace) -> int:
    if summary.done_by:
        print(f"{JOB}: nothing to do: inputs unchanged since run {summary.done_by} (use --force to rebuild)")
    print(format_summary(summary))
    return 0


def format_summary(summary: BuildMetadataSummary) -> str:
    sources = (SOURCE_WORDNET, SOURCE_METACLIP, SOURCE_KG)
    per_source = ", ".join(f"{s}={summary.entries.get(s, 0)}" for s in sources)
    drops = ", ".join(f"{r}={summary.dropped.get(r, 0)}" for r in kg.REASONS)
    return (f"metadata: {summary.rows_total} entries (distinct strings; listed by {per_source}); "
            f"rebuilt: {summary.rebuilt or 'nothing'}\n"
            f"kg names dropped: {summary.dropped_total} ({drops}) -> table {tables.METADATA_DROPS}\n"
            f"bad input records: {summary.bad_records} -> table {tables.BAD_RECORDS}")


# ---------------------------------------------------------------- inputs

def _read_remote(spark: SparkSession, path: str) -> bytes:
    """One whole input file from a Hadoop path (s3a://...): an input file, not crawl data."""
    try:
        row = spark.read.format("binaryFile").load(path).select("content").first()
    except Exception as exc:  # noqa: BLE001 - Spark raises AnalysisException for a missing path
        raise UserError(f"cannot read {path}: {str(exc).strip().splitlines()[0][:200]}") from None
    if row is None:
        raise UserError(f"cannot read {path}: no such file")
    return bytes(row[0])


def read_wordnet(spark: SparkSession, directory: str | None, mode: str = "lemmas") -> wordnet.WordNetLemmas:
    if directory and paths.is_uri(directory):
        files = [(f"{directory.rstrip('/')}/{name}", None) for name in wordnet.POS_FILES.values()]
        return wordnet.parse_files(((p, _read_remote(spark, p)) for p, _ in files), mode)
    return wordnet.read_dir(directory, mode=mode)


def read_metaclip(spark: SparkSession, path: str) -> metaclip.MetaclipEntries:
    if paths.is_uri(path):
        return metaclip.parse_bytes(_read_remote(spark, path), path)
    return metaclip.read_file(path)


def _is_spec_file(item: str) -> bool:
    return item.endswith((".yaml", ".yml")) or Path(item).is_file()


def load_set_item(item: str) -> Any:
    """An ``--entity-set`` item: its spec (an EntitySetSpec) for a YAML file, else the set's name."""
    if not _is_spec_file(item):
        return item
    if not paths.is_uri(item) and not Path(item).is_file():
        raise UserError(f"entity set file not found: {item} (pass a conf/entity_sets/*.yaml file "
                        "or the name of a set already computed with kgcurate entity-set)")
    from kgcurate.entity_sets import load_spec  # written by its own stage

    return load_spec(item)


def resolve_entity_sets(spark: SparkSession, root: str, items: list[Any]) -> tuple[list[str], dict[str, int]]:
    """Set names to build KG entries for (``items`` from :func:`load_set_item`); specs are computed
    into ``entity_sets`` first."""
    specs = [item for item in items if not isinstance(item, str)]
    wanted = {item for item in items if isinstance(item, str)} - {spec.name for spec in specs}
    if wanted:  # every name is checked before a spec is computed: a typo leaves entity_sets as it was
        found = set() if not lake.exists(spark, root, tables.ENTITY_SETS) else {
            r["set_name"] for r in lake.read(spark, root, tables.ENTITY_SETS)
            .where(F.col("set_name").isin(sorted(wanted))).select("set_name").distinct().collect()}
        for name in sorted(wanted - found):
            raise UserError(f"entity set {name!r} is neither a YAML file nor a set in {tables.ENTITY_SETS}: "
                            "pass conf/entity_sets/<name>.yaml or run kgcurate entity-set first")
    computed: dict[str, int] = {}
    for spec in specs:
        from kgcurate.entity_sets import write_entity_set

        computed[spec.name] = int(write_entity_set(spark, root, spec))
    names = [item if isinstance(item, str) else item.name for item in items]
    return list(dict.fromkeys(names)), computed


def check_inputs(md: dict[str, Any]) -> None:
    """The local files this stage reads (WordNet's data files, the MetaCLIP list, entity-set specs), checked
    before Spark starts with the lines reading them would give; s3a:// and other URIs are read through Hadoop
    later. An entity set given by name is looked up in the lake then."""
    if md.get("wordnet", True):
        configured = md.get("wordnet_dir")
        if not (configured and paths.is_uri(str(configured))):
            wordnet.checked_dir(configured)
    path = md.get("metaclip_metadata")
    if path and not paths.is_uri(str(path)):
        metaclip.check_file(str(path))
    for item in md.get("entity_sets") or []:
        load_set_item(str(item))  # a spec file: there and valid (it is read locally, as here)


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    check_inputs(cfg.get("metadata") or {})
    return {}


# ---------------------------------------------------------------- skip if unchanged

NOTE_KEY = "kgcurate.build-metadata"  # the key of this stage's note on its metadata commit


def inputs_record(rows: list[tuple[str, str, None]], rebuilt: list[str], set_items: list[Any], guards: kg.Guards,
                  replace_all: bool) -> dict[str, Any]:
    """What a run builds ``metadata`` from, besides the lake's tables: a fingerprint of each source's
    entries as read (WordNet, MetaCLIP; their order does not count), the entity sets (a spec's every
    rule, or a set's name), the KG guards, ``--replace-all`` and kgcurate's version."""
    entries = {src: run_notes.digest(sorted(e for e, s, _ in rows if s == src)) for src in rebuilt}
    sets = [item if isinstance(item, str) else {k: v for k, v in vars(item).items() if k != "source"}
            for item in set_items]
    options = {f: getattr(guards, f) for f in kg.Guards.__dataclass_fields__ if f != "stop_list"}
    return run_notes.plain({"version": __version__, "entries": entries, "entity_sets": sets, "guards": options,
                            "replace_all": replace_all})


def table_versions(spark: SparkSession, root: str, names: tuple[str, ...]) -> dict[str, int | None]:
    return {name: lake.version(spark, root, name) for name in names}


WRITTEN_TABLES = (tables.METADATA_SOURCES, tables.METADATA_DROPS)  # metadata is derived from them


def done_before(spark: SparkSession, root: str, record: dict[str, Any]) -> str | None:
    """The run that built ``metadata`` from these same inputs (``record``, :func:`inputs_record`) over the
    same tables, so that rebuilding would write the same rows; None: build it.

    The newest commit that changed ``metadata`` must carry that run's note with an equal record, and
    each table the run read or wrote (``metadata_sources``, ``metadata_drops``, and with entity sets
    ``entities`` and ``entity_sets``) must hold the rows it held then: a run that died after writing
    ``metadata_sources``, a new Wikidata ingest, or an ``entity-set`` run in between all rebuild."""
    got = run_notes.read(lake.last_data_note(spark, root, tables.METADATA), NOTE_KEY)
    if got is None:
        return None
    run_id, noted = got
    versions = noted.pop("tables", None)
    if noted != record or not isinstance(versions, dict):
        return None
    return run_id if lake.unchanged_since(spark, root, versions) else None


def undo_dead_run(spark: SparkSession, root: str) -> bool:
    """Put ``metadata_sources`` and ``metadata_drops`` back where the last completed run left them (the
    versions its ``metadata`` commit noted); True when no run ever completed but one wrote sources, so this
    run must replace them all.

    A run that died after its ``metadata_sources`` commit left its sources there; re-deriving ``metadata``
    from them would publish that failed run's list through a later run that never named it (one with
    WordNet only, say). Called under the lease, so such a commit is a dead run's, not a running one's.
    """
    got = run_notes.read(lake.last_data_note(spark, root, tables.METADATA), NOTE_KEY)
    if got is None:
        dead = not lake.exists(spark, root, tables.METADATA) and lake.exists(spark, root, tables.METADATA_SOURCES)
        if dead:
            log.warning("%s: %s holds rows of a run that never completed; this run replaces all of them",
                        JOB, tables.METADATA_SOURCES)
        return dead
    versions = got[1].get("tables") or {}
    for name in (tables.METADATA_SOURCES, tables.METADATA_DROPS):
        recorded = versions.get(name)
        if not isinstance(recorded, int) or not lake.exists(spark, root, name):
            continue
        same = lake.content_version(spark, root, name, recorded)  # past maintain's commits
        if lake.version(spark, root, name) == same:
            continue
        log.warning("%s: %s changed after the last completed run (%s); restoring version %s",
                    JOB, name, got[0], same)
        try:
            lake.restore(spark, root, name, same)
        except Exception as exc:  # noqa: BLE001 - vacuumed: the dead run cannot be told apart any more
            raise UserError(f"{name} in {root} holds a run that died after writing it, and version {same} of the "
                            f"last completed run cannot be restored ({first_line(exc)[:160]}): re-run with "
                            "--replace-all and every source") from None
    return False


# ---------------------------------------------------------------- layout

def derive(sources: DataFrame) -> DataFrame:
    """``metadata`` from (entry, source, qid) rows: one row per distinct string, provenance sorted.

    ``collect_set`` skips nulls, so ``qids`` is empty for strings no KG entity names.
    """
    return (sources.groupBy("entry")
            .agg(F.array_sort(F.collect_set("source")).alias("sources"),
                 F.array_sort(F.collect_set("qid")).alias("qids"))
            .withColumn("entry_id", ids.entry_id()))


def is_old_layout(spark: SparkSession, root: str, version: int | None = None) -> bool:
    """``metadata`` written before one-string-one-entry: a ``source`` column instead of ``sources``."""
    if not lake.exists(spark, root, tables.METADATA):
        return False
    return "sources" not in lake.read(spark, root, tables.METADATA, version).columns


def check_layout(spark: SparkSession, root: str, version: int | None = None) -> None:
    """Refuse (one line, exit 2) a lake in the old layout rather than mix string ids with old ones."""
    if is_old_layout(spark, root, version):
        raise UserError(old_layout_message(root))


# ---------------------------------------------------------------- the job

def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _write(spark: SparkSession, root: str, name: str, df: DataFrame, rebuilt: list[str], replace_all: bool) -> None:
    if replace_all:
        lake.overwrite(spark, root, name, df)
    elif rebuilt:
        lake.overwrite(spark, root, name, df, replace_where=f"source IN ({_sql_list(rebuilt)})")
    else:
        lake.ensure(spark, root, name)


def read_sources(spark: SparkSession, md: dict[str, Any],
                 summary: BuildMetadataSummary) -> tuple[list, list, list]:
    """Step 1: WordNet and MetaCLIP entries, read and checked before anything is written: (entry, source,
    qid) rows, their bad input items, and the sources this run rebuilds."""
    rows: list[tuple[str, str, None]] = []
    bad: list[BadInput] = []
    rebuilt: list[str] = []
    if md.get("wordnet", True):
        wn = read_wordnet(spark, md.get("wordnet_dir"), md.get("wordnet_entries") or "lemmas")
        rows += [(e, SOURCE_WORDNET, None) for e in wn.entries]
        bad += wn.bad
        summary.wordnet_synsets, summary.wordnet_lemmas = wn.synsets, wn.lemmas
        rebuilt.append(SOURCE_WORDNET)
    if md.get("metaclip_metadata"):
        mc = read_metaclip(spark, str(md["metaclip_metadata"]))
        rows += [(e, SOURCE_METACLIP, None) for e in mc.entries]
        bad += mc.bad
        summary.metaclip_items, summary.metaclip_duplicates = mc.items, mc.duplicates
        rebuilt.append(SOURCE_METACLIP)
    return rows, bad, rebuilt


def kg_entries(spark: SparkSession, root: str, set_items: list[Any], guards: kg.Guards,
               summary: BuildMetadataSummary) -> DataFrame:
    """Step 2: KG names of the entity sets by Spark joins (computing a YAML set writes entity_sets), kept
    and dropped alike (``reason`` set on drops); persisted, the caller unpersists."""
    set_names, computed = resolve_entity_sets(spark, root, set_items)
    summary.sets, summary.entity_sets = dict(computed), ",".join(set_names)
    return kg.kg_frames(spark, root, set_names, guards).persist(StorageLevel.MEMORY_AND_DISK)


def write_tables(spark: SparkSession, root: str, base: DataFrame, kg_all: DataFrame | None, rebuilt: list[str],
                 replace_all: bool, old_layout: bool, note: Callable[[], str]) -> None:
    """Step 3: the sources' rows, the drops of the same sources, then metadata derived from all sources
    (its commit noted with ``note()``, made once the others are written)."""
    _write(spark, root, tables.METADATA_SOURCES, base, rebuilt, replace_all)
    if kg_all is not None:
        _write(spark, root, tables.METADATA_DROPS, kg_all.where(F.col("reason").isNotNull()), rebuilt, replace_all)
    elif replace_all:  # only KG names are ever dropped: without KG this run there is nothing to replace
        empty = spark.createDataFrame([], tables.schema(tables.METADATA_DROPS))
        lake.overwrite(spark, root, tables.METADATA_DROPS, empty)
    else:
        lake.ensure(spark, root, tables.METADATA_DROPS)
    derived = derive(lake.read(spark, root, tables.METADATA_SOURCES))
    with lake.commit_note(spark, note()):
        lake.overwrite(spark, root, tables.METADATA, derived, new_schema=old_layout)


def summarize(spark: SparkSession, root: str, summary: BuildMetadataSummary, bad: list[BadInput],
              rebuilt: list[str]) -> None:
    """Step 4: counts per source and per drop reason from the committed tables (a handful of rows)."""
    per_source = {r["source"]: r["count"] for r in lake.read(spark, root, tables.METADATA)
                  .select(F.explode("sources").alias("source")).groupBy("source").count().collect()}
    drops_by = {r["reason"]: r["count"] for r in lake.read(spark, root, tables.METADATA_DROPS)
                .where(F.col("source") == SOURCE_KG).groupBy("reason").count().collect()}
    summary.entries = {s: int(per_source.get(s, 0)) for s in (SOURCE_WORDNET, SOURCE_METACLIP, SOURCE_KG)}
    summary.dropped = {reason: int(drops_by.get(reason, 0)) for reason in kg.REASONS}
    summary.rows_total = lake.read(spark, root, tables.METADATA).count()  # distinct strings
    summary.dropped_total = int(sum(drops_by.values()))
    summary.bad_records = len(bad)
    summary.rebuilt = ",".join(rebuilt)
    summary.metadata_version = lake.version(spark, root, tables.METADATA)
    for reason, n in summary.dropped.items():
        if n:
            log.info("kg names dropped as %s: %d", reason, n)


def execute(ctx: Context, cfg: dict[str, Any]) -> BuildMetadataSummary:
    spark, root = ctx.spark, ctx.root
    t0 = time.monotonic()
    md = cfg.get("metadata") or {}
    guards = kg.Guards.from_config(md)
    replace_all = bool(md.get("replace_all", False))
    run_id = ctx.new_run_id()
    summary = BuildMetadataSummary(run_id=run_id)
    old_layout = is_old_layout(spark, root)
    if old_layout and not replace_all:
        raise UserError(old_layout_message(root))
    rows, bad, rebuilt = read_sources(spark, md, summary)
    set_items = [load_set_item(str(s)) for s in (md.get("entity_sets") or [])]
    if set_items and not lake.exists(spark, root, tables.ENTITIES):
        raise UserError(f"entity sets are configured but the lake {root} has no {tables.ENTITIES} table: "
                        "run kgcurate ingest-wikidata first, or leave --entity-set / metadata.entity_sets out")
    record = inputs_record(rows, rebuilt, set_items, guards, replace_all)
    earlier = None if md.get("force") else done_before(spark, root, record)
    if earlier is not None:
        log.info("%s: inputs unchanged since run %s: nothing to do (use --force to rebuild)", JOB, earlier)
        summary.run_id, summary.done_by = "", earlier  # no run of this job made anything
        summary.entity_sets = ",".join(i if isinstance(i, str) else i.name for i in set_items) or None
        if bad:  # that run recorded them; an insert-only MERGE, so again only if it died before
            ctx.record_bad_input(earlier, bad)
        summarize(spark, root, summary, bad, [])
        summary.seconds = round(time.monotonic() - t0, 2)
        return summary
    with leases.held(root, JOB, run_id):
        wipe = False if replace_all else undo_dead_run(spark, root)
        read = table_versions(spark, root, (tables.ENTITIES,)) if set_items else {}  # before sets are computed
        base = spark.createDataFrame(rows, ENTRY_DDL) if rows else spark.createDataFrame([], ENTRY_DDL)
        kg_all = kg_entries(spark, root, set_items, guards, summary) if set_items else None
        if kg_all is not None:
            read.update(table_versions(spark, root, (tables.ENTITY_SETS,)))  # after this run's sets are written
            base = base.unionByName(kg_all.where(F.col("reason").isNull()).select("entry", "source", "qid"))
            rebuilt.append(SOURCE_KG)

        def note() -> str:
            return run_notes.write(NOTE_KEY, run_id, {**record, "tables": {
                **read, **table_versions(spark, root, WRITTEN_TABLES)}})
        try:
            write_tables(spark, root, base, kg_all, rebuilt, replace_all or wipe, old_layout, note)
        finally:
            if kg_all is not None:
                kg_all.unpersist()
    if bad:
        ctx.record_bad_input(run_id, bad)
    summarize(spark, root, summary, bad, rebuilt)
    summary.seconds = round(time.monotonic() - t0, 2)
    return summary
