"""Knowledge-graph texts for each curated pair (EntityNet): the ``pair_texts`` table.

EntityNet trains on alt texts mixed with texts from the knowledge graph (names, common and taxon
names, descriptions of the entities a caption names), and the mix beat either alone. So every
curated pair gets one row per text a training sample may show: its own alt/title text (qid and
language null) and the KG texts of the entities its matched entries name, looked up by joins
(curated.entry_ids -> metadata -> qid -> entities); nothing input-sized reaches the driver.

Rules (pure functions below are the spec; the Spark code applies them with built-in expressions):

- KG texts are whitespace-normalized as metadata entries are; empty ones are skipped.
- One KG row per (pair, text) compared case-insensitively (CLIP's tokenizer lowercases, so "Dog"
  and "dog" are one text and would double its weight in a uniform pick): the most specific source
  wins, in the order of :data:`KG_SOURCES` (label > common name > taxon > alias > description),
  then the smallest qid, then the smallest text.
- A KG text equal (case-insensitively) to the pair's own text is not emitted: a draw meant to show
  a KG text would show the alt text again.
- language: ``entities`` keeps one value per label/description (the first configured language
  that has one, else ``mul``) and mixes the configured languages and ``mul`` in aliases and common
  names, without saying which. With one configured language L every such value is L or ``mul``
  (which Wikidata defines as valid in every language), so it is recorded as L; with several it is
  not knowable and left null. A taxon name (P225) has no language: ``mul``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kgcurate.metadata import WS_PATTERN, normalize
from kgcurate.wikidata import MUL, language_order

if TYPE_CHECKING:  # Spark stays out of the pure import path
    from pyspark.sql import Column, DataFrame, SparkSession

KG_LABEL, KG_COMMON_NAME, KG_TAXON, KG_ALIAS, KG_DESCRIPTION = (
    "kg_label", "kg_common_name", "kg_taxon", "kg_alias", "kg_description")
# Most specific first: the order that decides which source keeps a text found under several.
KG_SOURCES = (KG_LABEL, KG_COMMON_NAME, KG_TAXON, KG_ALIAS, KG_DESCRIPTION)
# entities column per source, and whether it holds a list.
SOURCE_COLUMNS = {KG_LABEL: ("label", False), KG_COMMON_NAME: ("common_names", True),
                  KG_TAXON: ("taxon_name", False), KG_ALIAS: ("aliases", True),
                  KG_DESCRIPTION: ("description", False)}
# The MERGE key of pair_texts: a text of a pair, from one source and entity.
KEYS = ("pair_id", "text", "text_source", "qid")

Text = tuple[str, str, str | None, str | None]  # (text, text_source, qid, language)


# ---------------------------------------------------------------- pure rules (the spec)

def text_language(source: str, languages: Sequence[str] | str | None) -> str | None:
    """The language recorded for a KG text of ``source`` (see the module docstring for why)."""
    if source == KG_TAXON:
        return MUL
    if source not in SOURCE_COLUMNS:
        return None  # the pair's own alt/title text: its language is not known
    configured = language_order(languages)[:-1]
    return configured[0] if len(configured) == 1 else None


def entity_texts(entity: Mapping[str, Any], languages: Sequence[str] | str | None) -> list[Text]:
    """An ``entities`` row -> its candidate texts (normalized, non-empty), most specific source first."""
    out: list[Text] = []
    for source in KG_SOURCES:
        column, is_list = SOURCE_COLUMNS[source]
        values = (entity.get(column) or []) if is_list else [entity.get(column)]
        for value in values:
            text = normalize(value) if value is not None else ""
            if text:
                out.append((text, source, entity["qid"], text_language(source, languages)))
    return out


def pair_texts(text: str, text_source: str, entities: Iterable[Mapping[str, Any]],
               languages: Sequence[str] | str | None) -> list[Text]:
    """All rows of one pair: its own text, then one KG text per distinct lowercased text (the best
    by (source order, qid, text)), none equal to the pair's own text. Reference for the Spark code."""
    best: dict[str, tuple[tuple[int, str, str], Text]] = {}
    own = text.lower()
    for entity in entities:
        for row in entity_texts(entity, languages):
            key = row[0].lower()
            order = (KG_SOURCES.index(row[1]), row[2] or "", row[0])
            if key != own and (key not in best or order < best[key][0]):
                best[key] = (order, row)
    return [(text, text_source, None, None)] + sorted(row for _, row in best.values())


# ---------------------------------------------------------------- Spark (thin)

def entry_qids(meta: DataFrame, lowercase: bool = False) -> DataFrame:
    """Distinct (entry_id, qid) of the KG entries of a ``metadata`` frame, in either layout: one row
    per (entry, source, qid) with a ``qid`` column, or one row per string with a ``qids`` array.

    ``lowercase`` (the recorded match mode): a pair's entry_ids are then case-folded groups, each
    named by its smallest entry_id, which stands for every qid of the group's strings, as in
    ``match.entry_groups``; without it a pair matched through ``Kitchen`` (a WordNet string) got no
    texts of the entities named ``kitchen``."""
    from pyspark.sql import functions as F

    if "qids" in meta.columns:
        pairs = meta.select("entry_id", F.explode("qids").alias("qid"))
    else:
        pairs = meta.select("entry_id", "qid")
    if lowercase:
        folds = meta.select("entry_id", F.lower("entry").alias("fold")).distinct()
        heads = folds.groupBy("fold").agg(F.min("entry_id").alias("head"))
        pairs = pairs.join(folds, "entry_id").join(heads, "fold").select(F.col("head").alias("entry_id"), "qid")
    return pairs.where(F.col("qid").isNotNull() & (F.col("qid") != "")).distinct()


def qid_texts(entities: DataFrame, languages: Sequence[str] | str | None) -> DataFrame:
    """(qid, text, text_source, language, rank): :func:`entity_texts` for every row of ``entities``."""
    from pyspark.sql import functions as F

    def tagged(value: Column, source: str) -> Column:
        return F.struct(value.alias("text"), F.lit(source).alias("text_source"),
                        F.lit(text_language(source, languages)).cast("string").alias("language"),
                        F.lit(KG_SOURCES.index(source)).alias("rank"))

    def tagger(source: str):  # one argument only: F.transform passes the index to a two-argument function
        return lambda x: tagged(x, source)

    parts = []
    for source in KG_SOURCES:
        column, is_list = SOURCE_COLUMNS[source]
        if is_list:
            parts.append(F.transform(F.coalesce(F.col(column), F.array().cast("array<string>")),
                                     tagger(source)))
        else:
            parts.append(F.array(tagged(F.col(column), source)))
    exploded = entities.select("qid", F.explode(F.concat(*parts)).alias("t"))
    return exploded.select(
        "qid", F.trim(F.regexp_replace(F.col("t.text"), WS_PATTERN, " ")).alias("text"),
        F.col("t.text_source").alias("text_source"), F.col("t.language").alias("language"),
        F.col("t.rank").alias("rank"),
    ).where(F.col("text").isNotNull() & (F.length("text") > 0))


def build_pair_texts(own: DataFrame, meta: DataFrame, entities: DataFrame,
                     languages: Sequence[str] | str | None, lowercase: bool = False) -> DataFrame:
    """``pair_texts`` rows for the pairs in ``own`` (pair_id, text, text_source, entry_ids): the
    pair's own text plus its KG texts by the rules of :func:`pair_texts`, by joins only
    (``lowercase``: the entry_ids are case-folded groups, :func:`entry_qids`)."""
    from pyspark.sql import functions as F

    eq = entry_qids(meta, lowercase)
    ents = entities.join(eq.select("qid").distinct(), "qid", "left_semi")
    pq = (own.select("pair_id", F.col("text").alias("own_text"), F.explode("entry_ids").alias("entry_id"))
          .join(eq, "entry_id").select("pair_id", "own_text", "qid").distinct())
    kg = (pq.join(qid_texts(ents, languages), "qid")
          .where(F.lower(F.col("text")) != F.lower(F.col("own_text"))))
    best = (kg.groupBy("pair_id", F.lower(F.col("text")).alias("folded"))
            .agg(F.min(F.struct("rank", "qid", "text", "text_source", "language")).alias("b"))
            .select("pair_id", "b.text", "b.text_source", "b.qid", "b.language"))
    mine = own.select("pair_id", "text", "text_source", F.lit(None).cast("string").alias("qid"),
                      F.lit(None).cast("string").alias("language"))
    return mine.unionByName(best)


def write_pair_texts(
    spark: SparkSession, root: str, curated: DataFrame, meta_version: int | None,
    entities_version: int | None, languages: Sequence[str] | str | None, *, pairs_version: int | None = None,
    lowercase: bool = False,
) -> dict[str, Any]:
    """Write the texts of one balance run's curated pairs into ``pair_texts``; returns row counts
    and the table version.

    ``curated``: pair_id, text, entry_ids (one row per pair; a ``text_source`` column is used when
    present, else it comes from ``pairs`` at ``pairs_version``). ``metadata`` and ``entities`` are
    read at the given versions (None: latest); ``languages`` is ``wikidata.languages`` as ingested;
    ``lowercase``: the match's case mode (its entry_ids are case-folded groups).

    One MERGE commit replaces these pairs' rows: new ones are inserted, rows of these pairs that are
    no longer produced (a newer dump changed a description, an entity left the metadata) are
    deleted, and a changed language is updated; pairs of earlier runs keep theirs. A re-run on the
    same inputs changes nothing and makes no commit.
    """
    from pyspark import StorageLevel

    from kgcurate import lake, tables

    language_order(languages)  # fail early on an empty language list
    if "text_source" in curated.columns:
        own = curated.select("pair_id", "text", "text_source", "entry_ids")
    else:
        sources = lake.read(spark, root, tables.PAIRS, pairs_version).select("pair_id", "text_source")
        own = curated.select("pair_id", "text", "entry_ids").join(sources, "pair_id")
    meta = lake.read(spark, root, tables.METADATA, meta_version)
    entities = lake.read(spark, root, tables.ENTITIES, entities_version)
    rows = build_pair_texts(own, meta, entities, languages, lowercase).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        existing = lake.read(spark, root, tables.PAIR_TEXTS).join(own.select("pair_id"), "pair_id", "left_semi")
        metrics = lake.replace_rows(spark, root, tables.PAIR_TEXTS, rows, existing, KEYS, update_columns=["language"])
    finally:
        rows.unpersist()
    return {
        "rows_inserted": metrics.get("numTargetRowsInserted", 0),
        "rows_deleted": metrics.get("numTargetRowsDeleted", 0),
        "rows_updated": metrics.get("numTargetRowsUpdated", 0),
        "version": lake.version(spark, root, tables.PAIR_TEXTS),
        "languages": [lang for lang in language_order(languages) if lang != MUL],
    }

