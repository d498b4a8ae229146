"""Knowledge-graph entries: the names of every entity in chosen entity sets, minus risky ones.

Each member's label, aliases, common names and taxon name become entries (source ``kg``) carrying the
entity's qid. Three guards drop strings that would match captions for the wrong reason; every drop
is written to ``metadata_drops`` with its reason:

- ``empty``: nothing left after whitespace normalization;
- ``too_short``: fewer than ``min_length`` characters (``min_length_cjk`` when the string holds a
  CJK/kana/hangul character, where one character can be a whole word: 猫);
- ``stop_word``: an English function word (case-insensitive), e.g. an alias "It" or "The";
- ``shared_alias``: the string (case-insensitive) names ``shared_alias_min_qids`` or more entities.
  ``keep_most_sitelinks`` keeps it for one entity, ``drop`` drops it for all. Labels outrank other
  names: an entity whose *label* is the string wins over entities that only have it as an alias,
  common name or taxon name, whatever their sitelinks (a label is the entity's own name; an alias is
  a secondary, often looser, name). In ``drop`` mode the one entity whose label it is keeps it; the
  string is dropped for everybody only when no entity, or several, have it as label.

The rules are pure functions here (tested without Spark, and the spec of the Spark code); the
Spark side applies the same rules with built-in expressions and one window per string, so the
``entities`` table can be 100M rows and nothing is collected on the driver.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kgcurate.errors import UserError
from kgcurate.matching import NO_SPACE_RANGES
from kgcurate.metadata import SOURCE_KG, WS_PATTERN, normalize

if TYPE_CHECKING:  # Spark stays out of the pure import path
    from pyspark.sql import DataFrame, SparkSession

# Name kinds, best first: the rank decides who keeps a shared string.
RANK_LABEL, RANK_TAXON, RANK_COMMON, RANK_ALIAS = 0, 1, 2, 3
KINDS = {RANK_LABEL: "label", RANK_TAXON: "taxon_name", RANK_COMMON: "common_name", RANK_ALIAS: "alias"}

REASON_EMPTY, REASON_SHORT, REASON_STOP, REASON_SHARED = "empty", "too_short", "stop_word", "shared_alias"
REASONS = (REASON_EMPTY, REASON_SHORT, REASON_STOP, REASON_SHARED)
SHARED_MODES = ("keep_most_sitelinks", "drop")

# CJK ideographs, kana, hangul: the BMP blocks, and the supplementary ideograph blocks the matcher
# treats as unspaced (CJK extensions B-I, the compatibility supplement: a one-character name there is
# matched inside unspaced text as one in the BMP is).
_CJK_RANGES = ((0x2E80, 0x2FDF), (0x3040, 0x30FF), (0x3100, 0x312F), (0x3190, 0x31FF), (0x3400, 0x4DBF),
               (0x4E00, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F),
               *(r for r in NO_SPACE_RANGES if r[0] > 0xFFFF))
# Java regex (Spark's rlike) writes a code point \x{...}; Python re does not know that form.
CJK_PATTERN = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _CJK_RANGES) + "]"
_CJK = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES) + "]")

# English function words: as whole captions tokens they say nothing about an image, yet Wikidata has
# them as aliases (films, bands, letters). Compared lowercased.
_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just let me more
most my myself no nor not now of off on once only or other our ours ourselves out over own same
she should so some such than that the their theirs them themselves then there these they this those
through to too under until up upon very was we were what when where which while who whom why will
with would you your yours yourself yourselves also
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_TEXT.split())


@dataclass(frozen=True)
class Guards:
    min_length: int = 3
    min_length_cjk: int = 1
    stop_words: bool = True
    extra_stop_words: tuple[str, ...] = ()
    shared_alias: str = "keep_most_sitelinks"
    shared_alias_min_qids: int = 2  # a string naming this many entities or more is "shared"
    stop_list: frozenset[str] = field(default=STOP_WORDS, repr=False)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Guards:
        """Read the guard keys of the ``metadata`` config section; UserError on a bad value."""
        mode = section.get("shared_alias", cls.shared_alias)
        if mode not in SHARED_MODES:
            raise UserError(f"metadata.shared_alias is {mode!r}: use one of {', '.join(SHARED_MODES)}")
        ints = {}
        for key, low in (("min_length", 0), ("min_length_cjk", 0), ("shared_alias_min_qids", 2)):
            value = section.get(key, getattr(cls, key))
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"metadata.{key} is {value!r}: use a whole number >= {low}")
            ints[key] = value
        extra = section.get("extra_stop_words") or ()
        if isinstance(extra, str) or not all(isinstance(w, str) for w in extra):
            raise UserError("metadata.extra_stop_words must be a list of strings")
        use_stop = bool(section.get("stop_words", True))
        stop_list = frozenset((STOP_WORDS if use_stop else frozenset()) | {w.lower() for w in extra})
        return cls(stop_words=use_stop, extra_stop_words=tuple(extra), shared_alias=mode,
                   stop_list=stop_list, **ints)


# ---------------------------------------------------------------- pure rules (the spec)

def is_cjk(entry: str) -> bool:
    return _CJK.search(entry) is not None


def row_reason(entry: str, guards: Guards) -> str | None:
    """Why one (already normalized) name is dropped on its own, or None. First matching rule wins."""
    if not entry:
        return REASON_EMPTY
    if len(entry) < (guards.min_length_cjk if is_cjk(entry) else guards.min_length):
        return REASON_SHORT
    if entry.lower() in guards.stop_list:
        return REASON_STOP
    return None


def shared_keepers(holders: Sequence[tuple[str, int, int]], guards: Guards) -> set[str]:
    """The qids that keep a string named by ``holders`` = [(qid, rank, sitelinks)] (rank: best kind).

    Fewer than ``shared_alias_min_qids`` distinct qids: not shared, all keep it. Otherwise
    ``keep_most_sitelinks`` keeps the best (label first, then most sitelinks, then the smallest qid as text:
    Q10 before Q9) and ``drop`` keeps only a sole label holder.
    """
    qids = {q for q, _, _ in holders}
    if len(qids) < guards.shared_alias_min_qids:
        return qids
    if guards.shared_alias == "keep_most_sitelinks":
        return {min(holders, key=lambda h: (h[1], -h[2], h[0]))[0]}
    label_qids = {q for q, r, _ in holders if r == RANK_LABEL}
    return label_qids if len(label_qids) == 1 else set()


def build_entries(
    entities: Iterable[tuple[str, str | None, Sequence[str] | None, Sequence[str] | None, str | None, int | None]],
    guards: Guards,
) -> tuple[set[tuple[str, str]], list[tuple[str, str, str]]]:
    """Reference implementation over (qid, label, aliases, common_names, taxon_name, sitelinks) rows.

    Returns ({(entry, qid)} kept, [(entry, qid, reason)] dropped). Small inputs only: used by tests
    and as the readable spec of :func:`kg_frames`.
    """
    names: dict[tuple[str, str], tuple[int, int]] = {}
    for qid, label, aliases, common, taxon, sitelinks in entities:
        raw = [(label, RANK_LABEL), (taxon, RANK_TAXON)]
        raw += [(c, RANK_COMMON) for c in common or ()] + [(a, RANK_ALIAS) for a in aliases or ()]
        for name, rank in raw:
            if name is None:
                continue
            key = (normalize(name), qid)
            prev = names.get(key)
            names[key] = (min(rank, prev[0]) if prev else rank, sitelinks or 0)
    dropped: list[tuple[str, str, str]] = []
    groups: dict[str, list[tuple[str, str, int, int]]] = {}
    for (entry, qid), (rank, links) in names.items():
        reason = row_reason(entry, guards)
        if reason:
            dropped.append((entry, qid, reason))
        else:
            groups.setdefault(entry.lower(), []).append((entry, qid, rank, links))
    kept: set[tuple[str, str]] = set()
    for rows in groups.values():
        keepers = shared_keepers([(q, r, s) for _, q, r, s in rows], guards)
        for entry, qid, _, _ in rows:
            if qid in keepers:
                kept.add((entry, qid))
            else:
                dropped.append((entry, qid, REASON_SHARED))
    return kept, dropped


# ---------------------------------------------------------------- Spark (thin)

def member_qids(spark: SparkSession, lake_root: str, set_names: Sequence[str]) -> DataFrame:
    from pyspark.sql import functions as F

    from kgcurate import lake, tables

    return (lake.read(spark, lake_root, tables.ENTITY_SETS)
            .where(F.col("set_name").isin(list(set_names))).select("qid").distinct())


def names_frame(spark: SparkSession, lake_root: str, set_names: Sequence[str]) -> DataFrame:
    """(qid, entry, rank, sitelinks): one row per distinct normalized name of each set member."""
    from pyspark.sql import functions as F

    from kgcurate import lake, tables

    def tagged(col: Any, rank: int) -> Any:
        return F.transform(F.coalesce(col, F.array().cast("array<string>")),
                           lambda x: F.struct(x.alias("name"), F.lit(rank).alias("rank")))

    def one(col: Any, rank: int) -> Any:
        return F.array(F.struct(col.alias("name"), F.lit(rank).alias("rank")))

    ents = lake.read(spark, lake_root, tables.ENTITIES).join(member_qids(spark, lake_root, set_names), "qid")
    exploded = ents.select(
        "qid",
        F.coalesce(F.col("sitelinks"), F.lit(0)).alias("sitelinks"),
        F.explode(F.concat(one(F.col("label"), RANK_LABEL), one(F.col("taxon_name"), RANK_TAXON),
                           tagged(F.col("common_names"), RANK_COMMON), tagged(F.col("aliases"), RANK_ALIAS)))
        .alias("n"),
    ).where(F.col("n.name").isNotNull())
    normalized = exploded.select(
        "qid", "sitelinks", F.col("n.rank").alias("rank"),
        F.trim(F.regexp_replace(F.col("n.name"), WS_PATTERN, " ")).alias("entry"),
    )
    return normalized.groupBy("qid", "entry").agg(F.min("rank").alias("rank"), F.max("sitelinks").alias("sitelinks"))


def reason_column(guards: Guards) -> Any:
    """The per-row guards of :func:`row_reason` as one Spark expression (null: keep)."""
    from pyspark.sql import functions as F

    entry = F.col("entry")
    min_len = F.when(entry.rlike(CJK_PATTERN), F.lit(guards.min_length_cjk)).otherwise(F.lit(guards.min_length))
    stop = F.lower(entry).isin(sorted(guards.stop_list)) if guards.stop_list else F.lit(False)
    return (F.when(F.length(entry) == 0, F.lit(REASON_EMPTY))
            .when(F.length(entry) < min_len, F.lit(REASON_SHORT))
            .when(stop, F.lit(REASON_STOP)))


def kg_frames(spark: SparkSession, lake_root: str, set_names: Sequence[str], guards: Guards) -> DataFrame:
    """(entry, qid, reason) for every name of the sets' members; reason null = kept.

    The shared-alias rule is one window over lower(entry): the distinct qids naming the string,
    the best (rank, -sitelinks, qid) holder and the label holders, as in :func:`shared_keepers`.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = names_frame(spark, lake_root, set_names).withColumn("reason", reason_column(guards))
    w = Window.partitionBy(F.lower(F.col("entry")))
    live = F.col("reason").isNull()
    holder = F.when(live, F.col("qid"))
    n_qids = F.size(F.collect_set(holder).over(w))
    best = F.min(F.when(live, F.struct(F.col("rank"), (-F.col("sitelinks")).alias("neg"), F.col("qid")))).over(w)
    label_qids = F.collect_set(F.when(live & (F.col("rank") == RANK_LABEL), F.col("qid"))).over(w)
    if guards.shared_alias == "keep_most_sitelinks":
        winner = best["qid"]
    else:
        winner = F.when(n_qids < guards.shared_alias_min_qids, best["qid"]).when(
            F.size(label_qids) == 1, F.element_at(label_qids, 1))
    shared = live & (n_qids >= guards.shared_alias_min_qids) & (winner.isNull() | (F.col("qid") != winner))
    return names.select(
        "entry", "qid",
        F.when(shared, F.lit(REASON_SHARED)).otherwise(F.col("reason")).alias("reason"),
    ).withColumn("source", F.lit(SOURCE_KG))
