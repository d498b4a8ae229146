"""``kgcurate match``: captions x metadata entries -> ``matches``, ``entry_counts``, ``qid_counts``.

An entry is a distinct string (``metadata`` has one row per string; with ``--lowercase``, strings
equal after ``lower()`` are one entry, see :func:`entry_groups`), so a string two sources list is
matched and counted once. The (entry_id, entry) list is read at a pinned Delta version and broadcast once; each
Python worker builds one Aho-Corasick automaton from it and keeps it in a module cache keyed by
the entry set's fingerprint (workers are reused), so 500k entries cost one build per executor, not
per task. Captions flow through ``mapInArrow`` in Arrow batches.

Incremental by default: ``match_state`` records the metadata version/fingerprint, the options and
the ``pairs`` version already matched. A later run matches only the pairs added since and adds
their counts to the counts recorded with the state (time travel), so counts stay exact without
rescanning ``matches``. The new pairs are the rows of the files the Delta log says were added since
(``pairs`` is insert-only; see :func:`added_pairs`), so finding them costs what they cost, not what
the table costs; where the log cannot say (rows removed, log cleaned up), an anti-join on pair_id
against ``pairs`` at the recorded version. Changed metadata,
changed options, a missing state or ``--full`` re-match everything. A full match writes the
matches straight into the table (one atomic overwrite, the only pass over the captions); an
incremental one stages the new matches as Parquet, so their counts can be added. Crash safety:
``matches`` is restored to the recorded version when a previous run died after writing it,
counts are always rebuilt from the recorded base, and the state is written last, so a re-run
converges to the same tables.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import lake, leases, matching, run_ids, tables
from kgcurate.bad_input import BadInput
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError, first_line
from kgcurate.match_state import MatchState
from kgcurate.stages import build_metadata

JOB = "match"
log = logging.getLogger("kgcurate.match")
OUT_DDL = "pair_id bigint, entry_id bigint"


# --- executor side ------------------------------------------------------------------------------


def make_matcher_fn(key: str, payload: Any, accs: tuple[Any, Any, Any] | None = None):
    """The mapInArrow function: (pair_id, text) batches -> (pair_id, entry_id) batches.

    ``accs`` (captions read, captions with a match, matches) are counted here, in the one pass
    that writes the matches, instead of by extra scans of the output. Every use runs this in the
    result stage of a write (no shuffle before it), where Spark applies each task's accumulator
    updates once even when tasks are retried.
    """

    def match_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        matcher = matching.cached_matcher(key, lambda: payload.value)
        for batch in batches:
            texts = batch.column(1).to_pylist()
            rows, ids = matcher.match_batch(texts)
            if accs is not None:
                accs[0].add(len(texts))
                if len(rows):  # rows ascend: each change of row index is a new caption
                    accs[1].add(int(np.count_nonzero(np.diff(rows))) + 1)
                    accs[2].add(len(rows))
            if not len(rows):
                continue
            pair_ids = batch.column(0).to_numpy(zero_copy_only=False)
            yield pa.RecordBatch.from_arrays(
                [pa.array(pair_ids[rows], pa.int64()), pa.array(ids, pa.int64())], names=["pair_id", "entry_id"]
            )

    return match_batches


# --- driver side ----------------------------------------------------------------------------------


def read_state(spark: SparkSession, root: str) -> MatchState | None:
    """What the last completed match recorded; None when no match ever did."""
    if not lake.exists(spark, root, tables.MATCH_STATE):
        return None
    return MatchState.from_rows((r["key"], r["value"]) for r in lake.read(spark, root, tables.MATCH_STATE).collect())


def write_state(spark: SparkSession, root: str, state: MatchState) -> None:
    rows = spark.createDataFrame(state.to_rows(), tables.schema(tables.MATCH_STATE))
    lake.overwrite(spark, root, tables.MATCH_STATE, rows)


def record_state(spark: SparkSession, root: str, meta_version: int | None, fp: str, lowercase: bool,
                 pairs_version: int | None, matches_version: int | None = None) -> None:
    """Mark a completed match: the versions written last are the consistent set later stages read."""
    write_state(spark, root, MatchState(
        metadata_version=meta_version, metadata_fingerprint=fp, lowercase=lowercase, pairs_version=pairs_version,
        matches_version=lake.version(spark, root, tables.MATCHES) if matches_version is None else matches_version,
        entry_counts_version=lake.version(spark, root, tables.ENTRY_COUNTS),
        qid_counts_version=lake.version(spark, root, tables.QID_COUNTS),
        updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds")))


# The tables whose versions a completed match records in match_state (what balance reads, and hashes).
RECORDED_TABLES = (tables.PAIRS, tables.METADATA, tables.MATCHES, tables.ENTRY_COUNTS, tables.QID_COUNTS)


def completed_versions(spark: SparkSession, root: str, state: MatchState | None = None) -> dict[str, int | None]:
    """The table versions the last completed match run recorded: pairs, metadata, matches and counts
    that agree with each other, whatever a running or dead match has committed since. ``state``:
    ``match_state`` when the caller has read it already."""
    state = read_state(spark, root) if state is None else state
    if state is None or not state.completed:
        raise UserError(f"no completed match run is recorded in lake {root} (table match_state): "
                        f"run `kgcurate match --lake {root}` first")

    def v(name: str) -> int | None:
        x = state.version_of(name)
        return None if x is None else lake.content_version(spark, root, name, x)

    versions = {name: v(name) for name in RECORDED_TABLES}
    # a match recorded on the old layout has ids that hash the source: never read beside string ids
    build_metadata.check_layout(spark, root, versions[tables.METADATA])
    return versions


def entry_groups(meta: DataFrame, lowercase: bool, lists: tuple[str, ...] = ("qids",)) -> DataFrame:
    """(entry_id, entry, qids): the entries matching uses, one per string in the match's case mode.

    Case-sensitive, that is ``metadata`` itself. With ``lowercase``, strings that Spark's ``lower()``
    folds together ("Kitchen", "kitchen") are one entry: the smallest entry_id of the group stands for
    it (so matches and counts still name a real ``metadata`` row) and holds the union of their qids
    (of each of ``lists``: the report also takes ``sources``).
    """
    if not lowercase:
        return meta.select("entry_id", "entry", *lists)
    groups = meta.groupBy(F.lower("entry").alias("fold")).agg(
        F.min("entry_id").alias("entry_id"),
        *[F.array_sort(F.array_distinct(F.flatten(F.collect_list(c)))).alias(c) for c in lists])
    return groups.join(meta.select("entry_id", "entry"), "entry_id").select("entry_id", "entry", *lists)


def entry_qids(meta: DataFrame, lowercase: bool) -> DataFrame:
    """(entry_id, qid) for every matched entry a KG entity names (metadata-sized)."""
    return entry_groups(meta, lowercase).select("entry_id", F.explode("qids").alias("qid"))


def recorded_lowercase(spark: SparkSession, root: str) -> bool:
    """The case mode of the last completed match: entry ids in ``matches`` are groups of that mode."""
    state = read_state(spark, root)
    return state is not None and state.lowercase


def load_entries(
    spark: SparkSession, root: str, version: int, lowercase: bool = False
) -> tuple[np.ndarray, list[str], list[tuple[int, str]], list[list[str]]]:
    """(entry ids, entries) to match, the (entry_id, reason) of entries that cannot be matched, and
    each matched entry's qids (for the fingerprint: qid_counts depend on them).

    The list is metadata-sized (bounded by the entry set, ~500k), not input-sized, so it is fetched once
    as Arrow on the driver and broadcast.
    """
    tbl = entry_groups(lake.read(spark, root, tables.METADATA, version), lowercase).toArrow()
    ids = tbl.column("entry_id").to_numpy(zero_copy_only=False).astype(np.int64)
    entries = tbl.column("entry").to_pylist()
    qids = [q or [] for q in tbl.column("qids").to_pylist()]
    keep = np.ones(len(entries), dtype=bool)
    bad: list[tuple[int, str]] = []
    for i, entry in enumerate(entries):
        problem = matching.entry_problem(entry)
        if problem is not None:
            keep[i] = False
            bad.append((int(ids[i]), problem))
    if bad:
        entries = [e for e, k in zip(entries, keep, strict=True) if k]
        qids = [q for q, k in zip(qids, keep, strict=True) if k]
        ids = ids[keep]
    order = np.argsort(ids, kind="stable")  # canonical order: the fingerprint ignores file layout
    return ids[order], [entries[i] for i in order], bad, [qids[i] for i in order]


def fingerprint(ids: np.ndarray, entries: list[str], qids: list[list[str]] | None = None) -> str:
    """Content hash of the entry set and its qids: a rewritten but identical metadata table needs no
    re-match, while a string that changed entity does (its qid counts would be stale)."""
    h = hashlib.sha1(ids.tobytes())
    h.update("\x00".join(entries).encode("utf-8", "surrogatepass"))
    if qids is not None:
        h.update(b"\x01" + "\x00".join(",".join(q) for q in qids).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def heal(spark: SparkSession, root: str, state: MatchState) -> tuple[list[str], list[str]]:
    """Put ``matches`` and the count tables back at the versions the last completed run recorded:
    (tables restored, tables that could not be).

    A run that died (or lost a race) after some of its commits left them newer than ``match_state``
    says; every later read must start from the recorded, mutually consistent versions. Once ``maintain``
    has vacuumed a recorded version's files, RESTORE fails on every run: such a table is reported, and
    the caller matches in full, which rewrites all three (docs/curation.md: a re-run converges).
    """
    healed, lost = [], []
    for name in (tables.MATCHES, tables.ENTRY_COUNTS, tables.QID_COUNTS):
        recorded = state.version_of(name)
        if recorded is None or not lake.exists(spark, root, name):
            continue
        same = lake.content_version(spark, root, name, recorded)  # past maintain's OPTIMIZE commits
        if lake.version(spark, root, name) != same:
            log.warning("%s: %s changed after the last completed run; restoring version %s", JOB, name, same)
            try:
                lake.restore(spark, root, name, same)
            except Exception as exc:  # noqa: BLE001 - see the docstring; any other failure recurs in the full run
                log.warning("%s: %s@%s cannot be restored (%s): matching in full", JOB, name, same,
                            first_line(exc)[:200])
                lost.append(name)
                continue
            healed.append(name)
    return healed, lost


def _time_travel(spark: SparkSession, root: str, name: str, version: int | None) -> DataFrame | None:
    """The table at ``version``, or None when that version is gone (vacuumed) or unknown."""
    if version is None:
        return None
    try:
        df = lake.read(spark, root, name, version)
        df.limit(1).collect()  # force the snapshot to resolve now
        return df
    except Exception as exc:  # noqa: BLE001 - a vacuumed version: fall back to a recount
        log.warning("%s: %s@%s not readable (%s); falling back", JOB, name, version, type(exc).__name__)
        return None


def _add_counts(base: DataFrame | None, delta: DataFrame, key: str) -> DataFrame:
    if base is None:
        return delta
    return (
        base.select(key, F.col("count").alias("a"))
        .join(delta.select(key, F.col("count").alias("b")), key, "full_outer")
        .select(key, (F.coalesce("a", F.lit(0)) + F.coalesce("b", F.lit(0))).cast("long").alias("count"))
    )


def qid_delta(matches: DataFrame, meta: DataFrame, lowercase: bool = False) -> DataFrame:
    """Per qid: pairs matching at least one of its names (a pair naming an entity twice counts once).

    Metadata without KG entries (WordNet, MetaCLIP's list) has no qid to count: no scan of the matches.
    """
    kg = entry_qids(meta, lowercase)
    if kg.isEmpty():  # metadata-sized check
        return matches.sparkSession.createDataFrame([], tables.schema(tables.QID_COUNTS))
    return (
        matches.join(F.broadcast(kg), "entry_id")
        .select("pair_id", "qid").distinct()
        .groupBy("qid").agg(F.count(F.lit(1)).alias("count"))
    )


def entry_delta(matches: DataFrame) -> DataFrame:
    return matches.groupBy("entry_id").agg(F.count(F.lit(1)).alias("count"))


def decide_mode(state: MatchState | None, meta_version: int, fp: str, lowercase: bool, full: bool,
                matches_exist: bool) -> tuple[str, str]:
    """('full' | 'incremental', why)."""
    if full:
        return "full", "--full given"
    if state is None or not matches_exist:
        return "full", "no previous match run"
    if state.lowercase != lowercase:
        return "full", "lowercase option changed"
    if state.metadata_fingerprint != fp:
        return "full", f"metadata changed (version {state.metadata_version} -> {meta_version})"
    return "incremental", f"pairs since version {state.pairs_version}"


@dataclass
class MatchSummary(Summary):
    """One match run: full or incremental and why, the versions read, entries (and those unmatchable),
    pairs matched and matches written; ``healed`` lists tables put back (incremental runs),
    ``up_to_date`` says no pair was new."""

    mode: str
    reason: str
    metadata_version: int | None
    pairs_version: int | None
    entries: int
    entries_skipped: int
    healed: list[str] | None = None
    pairs_matched: int = 0
    pairs_with_match: int = 0
    matches: int = 0
    entries_with_count: int = 0
    seconds: float = 0.0
    up_to_date: bool = False


def execute(ctx: Context, cfg: dict[str, Any]) -> MatchSummary:
    """Match under the lake's match lease: two runs at once would each be right alone and wrong together."""
    spark = ctx.spark
    root = cfg["lake"]
    for name, stage in ((tables.PAIRS, "ingest-wat"), (tables.METADATA, "build-metadata")):
        if not lake.exists(spark, root, name):
            raise UserError(f"table '{name}' not found in lake {root}: run `kgcurate {stage} --lake {root}` first")
    build_metadata.check_layout(spark, root)
    with leases.held(root, JOB):
        return _execute(spark, cfg)


def _execute(spark: SparkSession, cfg: dict[str, Any]) -> MatchSummary:
    """Decide full or incremental, match, and write in the order crash safety needs: (heal,) matches,
    entry_counts, qid_counts, and ``match_state`` last, which names the versions just written."""
    root = cfg["lake"]
    mcfg = cfg.get("match", {})
    lowercase = bool(mcfg.get("lowercase"))
    t0 = time.monotonic()
    meta_version = lake.version(spark, root, tables.METADATA)
    pairs_version = lake.version(spark, root, tables.PAIRS)
    ids, entries, bad, fp = _entry_set(spark, root, meta_version, lowercase)
    state = read_state(spark, root)
    mode, why = decide_mode(state, meta_version, fp, lowercase, bool(mcfg.get("full")),
                            lake.exists(spark, root, tables.MATCHES))
    summary = MatchSummary(mode=mode, reason=why, metadata_version=meta_version, pairs_version=pairs_version,
                           entries=len(entries), entries_skipped=len(bad))
    log.info("%s: %s match (%s), %d entries", JOB, mode, why, len(entries))
    if bad:
        _record_bad_entries(spark, root, meta_version, bad)

    pairs = lake.read(spark, root, tables.PAIRS, pairs_version).select("pair_id", "text")
    base: tuple[DataFrame | None, DataFrame | None] = (None, None)
    if mode == "incremental":
        summary.healed, lost = heal(spark, root, state)  # before "up to date": a dead run may have written since
        if lost:
            mode = summary.mode = "full"
            summary.reason = f"{', '.join(lost)} changed after the last completed run and its recorded version " \
                             "is vacuumed"
        elif _same_rows(spark, root, tables.PAIRS, state.pairs_version, pairs_version):
            # pairs unchanged, or only moved by maintain (OPTIMIZE, its retention property): nothing new, and
            # match_state stays as it is, so balance's run id (which hashes it) finds its run done
            if not _same_rows(spark, root, tables.METADATA, state.metadata_version, meta_version):
                # rewritten, same entries: later stages read this one
                record_state(spark, root, meta_version, fp, lowercase, state.pairs_version)
            summary.up_to_date, summary.entries_with_count = True, _entries_with_count(spark, root)
            return summary
        else:
            pairs, base = _unmatched_since(spark, root, state, pairs, pairs_version)

    matches_version, accs = _write_matches_and_counts(
        spark, root, mode, pairs, (ids, entries, lowercase, fp), meta_version, base)
    record_state(spark, root, meta_version, fp, lowercase, pairs_version, matches_version)  # last
    summary.pairs_matched, summary.pairs_with_match = int(accs[0].value), int(accs[1].value)
    summary.matches, summary.entries_with_count = int(accs[2].value), _entries_with_count(spark, root)
    summary.seconds = round(time.monotonic() - t0, 2)
    return summary


def _same_rows(spark: SparkSession, root: str, name: str, recorded: int | None, now: int | None) -> bool:
    """``name`` at ``now`` holds the rows it held at ``recorded``: the same version, or newer ones that only
    ``maintain`` made (:func:`kgcurate.lake.unchanged_since`)."""
    return recorded == now or lake.unchanged_since(spark, root, {name: recorded})


def _entry_set(spark: SparkSession, root: str, meta_version: int | None,
               lowercase: bool) -> tuple[np.ndarray, list[str], list[tuple[int, str]], str]:
    """(ids, entries, unmatchable entries, fingerprint) at ``meta_version``: the fingerprint is what
    decides whether the recorded matches still hold; no usable entry at all is the user's error."""
    ids, entries, bad, qids = load_entries(spark, root, meta_version, lowercase)
    if len(entries) == 0:
        raise UserError(f"table 'metadata' in lake {root} holds no usable entry: re-run build-metadata")
    return ids, entries, bad, fingerprint(ids, entries, qids)


def added_pairs(spark: SparkSession, root: str, since: int | None, until: int,
                cols: str = "pair_id bigint, text string") -> DataFrame | None:
    """``cols`` (default pair_id, text) of the pairs added after version ``since`` up to ``until``, read from the
    files those commits added (:func:`kgcurate.lake.files_since`), so the cost follows the new pairs,
    not the table: ``pairs`` is insert-only (ingest's insert-only MERGE), so its new rows are the rows
    of the files added since, except that OPTIMIZE (``kgcurate maintain``) may have rewritten files
    of ``since`` together with new ones; the rows of such rewritten files are anti-joined on pair_id
    against the rewritten files of ``since`` alone. None when the log does not say (a commit that
    removed rows, a deletion vector, a cleaned-up log, a rewritten file vacuumed): the caller then
    anti-joins against the whole table at ``since``."""
    files = None if since is None else lake.files_since(spark, root, tables.PAIRS, since, until)
    if files is None:
        return None
    if not files.inserted and not files.moved:
        return spark.createDataFrame([], cols)
    try:
        parts = [spark.read.schema(cols).parquet(*files.inserted)] if files.inserted else []
        if files.moved:
            moved = spark.read.schema(cols).parquet(*files.moved)
            if files.gone:
                moved = moved.join(spark.read.schema("pair_id bigint").parquet(*files.gone), "pair_id", "left_anti")
            parts.append(moved)
    except Exception as exc:  # noqa: BLE001 - a file listed in the log is gone (vacuumed): the slow way
        log.warning("%s: files of pairs since version %s not readable (%s)", JOB, since, type(exc).__name__)
        return None
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])


def _unmatched_since(spark: SparkSession, root: str, state: MatchState, pairs: DataFrame,
                     pairs_version: int) -> tuple[DataFrame, tuple[DataFrame | None, DataFrame | None]]:
    """(pairs added since the recorded run up to ``pairs_version``, (entry counts, qid counts) it
    recorded): an incremental run matches only the former and adds to the latter. A recorded count
    table no longer readable (vacuumed) comes back as None, and the caller recounts."""
    recorded = completed_versions(spark, root, state)  # past maintain's OPTIMIZE commits: files VACUUM keeps
    new = added_pairs(spark, root, recorded[tables.PAIRS], pairs_version)
    if new is not None:
        pairs = new
    else:  # not insert-only growth, or the log was cleaned: compare the two versions whole
        log.info("%s: pairs since version %s not readable from the Delta log; anti-join on pair_id",
                 JOB, recorded[tables.PAIRS])
        old_pairs = _time_travel(spark, root, tables.PAIRS, recorded[tables.PAIRS])
        if old_pairs is None:  # vacuumed: pairs already matched are those in matches (or matched nothing)
            old_pairs = lake.read(spark, root, tables.MATCHES, recorded[tables.MATCHES])
        pairs = pairs.join(old_pairs.select("pair_id"), "pair_id", "left_anti")
    base_entry = _time_travel(spark, root, tables.ENTRY_COUNTS, recorded[tables.ENTRY_COUNTS])
    base_qid = _time_travel(spark, root, tables.QID_COUNTS, recorded[tables.QID_COUNTS])
    return pairs, (base_entry, base_qid)


def _write_matches_and_counts(spark: SparkSession, root: str, mode: str, pairs: DataFrame,
                              matcher: tuple[np.ndarray, list[str], bool, str], meta_version: int | None,
                              base: tuple[DataFrame | None, DataFrame | None]) -> tuple[int | None, tuple[Any, ...]]:
    """Match ``pairs`` and write ``matches``, then ``entry_counts``, then ``qid_counts``; return the
    matches version (for the state the caller writes after these) and the (captions read, captions
    with a match, matches) accumulators the matching pass filled. ``matcher``: (ids, entries,
    lowercase, fingerprint); the entries are broadcast once for the run."""
    ids, entries, lowercase, fp = matcher
    sc = spark.sparkContext
    payload = sc.broadcast((ids, entries, lowercase))
    accs = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))
    key = f"{fp}|{lowercase}"
    matched = pairs.mapInArrow(make_matcher_fn(key, payload, accs), OUT_DDL)
    try:
        with lake.staging_folder(spark, root, run_ids.new(JOB)) as staging:
            new, matches_version = _write_matches(spark, root, mode, matched, staging)
            entry_counts, qid_counts = _counts_after(spark, root, mode, new, matches_version, meta_version,
                                                     lowercase, base)
            lake.overwrite(spark, root, tables.ENTRY_COUNTS, entry_counts)
            lake.overwrite(spark, root, tables.QID_COUNTS, qid_counts)
    finally:
        payload.unpersist()
    return matches_version, accs


def _write_matches(spark: SparkSession, root: str, mode: str, matched: DataFrame,
                   staging: str) -> tuple[DataFrame, int | None]:
    """(the new matches, the ``matches`` version holding them): the one pass over the captions."""
    if mode == "full":
        # One pass straight into the table: an overwrite is one atomic commit, so a crash
        # leaves the previous matches, which the state (written last) still names.
        lake.overwrite(spark, root, tables.MATCHES, matched)
        matches_version = lake.version(spark, root, tables.MATCHES)
        return lake.read(spark, root, tables.MATCHES, matches_version), matches_version
    # The increment is staged so its own counts can be added to the recorded ones.
    matched.write.mode("overwrite").parquet(staging)
    new = spark.read.parquet(staging)
    lake.append(spark, root, tables.MATCHES, new)
    return new, lake.version(spark, root, tables.MATCHES)


def _counts_after(spark: SparkSession, root: str, mode: str, new: DataFrame, matches_version: int | None,
                  meta_version: int | None, lowercase: bool,
                  base: tuple[DataFrame | None, DataFrame | None]) -> tuple[DataFrame, DataFrame]:
    """(entry_counts, qid_counts) for ``matches`` at ``matches_version``: the recorded ``base`` plus the
    new matches' own counts (a full run has no base), or a recount of all matches when an incremental
    run's base is not readable any more."""
    base_entry, base_qid = base
    meta = lake.read(spark, root, tables.METADATA, meta_version)
    if mode == "incremental" and (base_entry is None or base_qid is None):
        log.warning("%s: recorded counts not readable; recounting from matches", JOB)
        everything = lake.read(spark, root, tables.MATCHES, matches_version)
        return entry_delta(everything), qid_delta(everything, meta, lowercase)
    entry_counts = _add_counts(base_entry, entry_delta(new), "entry_id")
    qid_counts = _add_counts(base_qid, qid_delta(new, meta, lowercase), "qid")
    return entry_counts, qid_counts


def _entries_with_count(spark: SparkSession, root: str) -> int:
    return lake.read(spark, root, tables.ENTRY_COUNTS).where(F.col("count") > 0).count()


def _record_bad_entries(spark: SparkSession, root: str, meta_version: int, bad: list[tuple[int, str]]) -> None:
    """Unmatchable entries are not silently dropped: one bad_records row each (offset = entry_id)."""
    log.warning("%s: %d metadata entries cannot be matched (see bad_records)", JOB, len(bad))
    lake.record_bad_input(spark, root, JOB, None,
                          [BadInput(f"{tables.METADATA}@v{meta_version}", eid, reason) for eid, reason in bad])


def report(s: MatchSummary, args: argparse.Namespace) -> int:
    print(f"match ({s.mode}: {s.reason}): pairs matched {s.pairs_matched}, "
          f"with >=1 match {s.pairs_with_match}, matches {s.matches}, "
          f"entries with count>0 {s.entries_with_count} of {s.entries}"
          + (f", {s.entries_skipped} unmatchable entries in bad_records" if s.entries_skipped else ""))
    return 0
