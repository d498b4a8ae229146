"""``kgcurate balance``: balanced sampling of matched pairs -> ``curated`` (a partition per run), ``curation_runs``.

One pass over ``matches`` (joined with the small count table) gives each matched pair its threshold ``min_e
u_e * count_e``; that per-pair frame is persisted and the selection reads it (the kept pairs' entry lists are
gathered as they are written): ``--t`` filters it directly; ``--target-size N`` finds the N-th smallest
threshold with histogram passes (bucket counts to the driver, then only the one bucket holding the N-th value,
refined until it is small enough to fetch; never all thresholds); ``--tail-share P`` derives t from the count
histogram as MetaCLIP's p_to_t does. Coins are ``xxhash64(pair_id, entry_id, seed)`` masked to 53 bits, so a
run is the same on any cluster size or partitioning.

``curated`` keeps every run side by side, partitioned by run_id (MetaCLIP's nested 400M / 1B / 2.5B
sets; a download or training run reads one set for days): a run replaces only its own partition, and
the run_id is a hash of the parameters and input versions, so re-running the same balance is
idempotent. A run already recorded under its run_id is not selected again (:func:`done_before`):
the pipeline re-run after a later stage failed finds it done. ``kgcurate curated list|drop`` manages
the sets; readers take the newest by default.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from kgcurate import argtypes, balancing, lake, leases, run_ids, run_notes, tables
from kgcurate.context import Context, Summary
from kgcurate.errors import UserError
from kgcurate.match_state import MatchState

JOB = "balance"
log = logging.getLogger("kgcurate.balance")
BUCKETS = 4096
FETCH_LIMIT = 200_000  # rows of the final bucket fetched to the driver at most


def coin(pair_id: Column, key: Column, seed: int) -> Column:
    """u in [0, 1) from a built-in hash: identical on every executor (see balancing.coin)."""
    h = F.xxhash64(pair_id.cast("long"), key, F.lit(seed).cast("long"))
    return h.bitwiseAND(F.lit(balancing.MASK53)).cast("double") / F.lit(balancing.TWO53)


def per_pair(spark: SparkSession, root: str, versions: dict[str, int | None], seed: int, per_qid: bool,
             m: DataFrame | None = None) -> DataFrame:
    """(pair_id, threshold) for every matched pair: the only pass over ``matches`` (or over ``m``, the
    (pair_id, entry_id) rows of some pairs, each with all its entries). A plain min per pair: the
    entry lists are gathered for the kept pairs only (:func:`_curated_rows`)."""
    if m is None:
        m = lake.read(spark, root, tables.MATCHES, versions[tables.MATCHES])
    counts = lake.read(spark, root, tables.ENTRY_COUNTS, versions[tables.ENTRY_COUNTS])
    if not per_qid:
        units = m.join(F.broadcast(counts), "entry_id").select(
            "pair_id", (coin(F.col("pair_id"), F.col("entry_id"), seed) * F.col("count")).alias("w"))
        return units.groupBy("pair_id").agg(F.min("w").alias("threshold"))
    # Entities: one coin per (pair, qid) weighted by qid_counts; entries without a qid keep their own coin.
    from kgcurate.stages import match

    meta = lake.read(spark, root, tables.METADATA, versions[tables.METADATA])
    eq = match.entry_qids(meta, _lowercase(spark, root))  # a string may name several qids
    qcounts = lake.read(spark, root, tables.QID_COUNTS, versions[tables.QID_COUNTS])
    mq = m.join(F.broadcast(eq), "entry_id", "left")
    plain = (mq.where(F.col("qid").isNull()).join(F.broadcast(counts), "entry_id")
             .select("pair_id", (coin(F.col("pair_id"), F.col("entry_id"), seed) * F.col("count")).alias("w")))
    kg = (mq.where(F.col("qid").isNotNull()).select("pair_id", "qid").distinct().join(F.broadcast(qcounts), "qid")
          .select("pair_id", (coin(F.col("pair_id"), F.col("qid"), seed) * F.col("count")).alias("w")))
    return plain.unionByName(kg).groupBy("pair_id").agg(F.min("w").alias("threshold"))


def _bucket(col: Column, lo: float, hi: float) -> Column:
    if hi <= lo:
        return F.lit(0)
    b = F.floor((col - F.lit(lo)) / F.lit(hi - lo) * F.lit(BUCKETS)).cast("int")
    return F.least(F.greatest(b, F.lit(0)), F.lit(BUCKETS - 1))


def select_target(pp: DataFrame, n: int, total: int, lo: float, hi: float) -> dict[str, Any]:
    """The cut that keeps exactly n pairs: histogram passes narrowing to the bucket of the n-th threshold."""
    cond: Column = F.lit(True)
    k, in_range, passes = n, total, 0
    col = F.col("threshold")
    while in_range > FETCH_LIMIT and hi > lo:
        passes += 1
        hist = (pp.where(cond).select(_bucket(col, lo, hi).alias("b"), col)
                .groupBy("b").agg(F.count(F.lit(1)).alias("n"), F.min(col).alias("lo"), F.max(col).alias("hi"))
                .collect())  # at most BUCKETS rows
        by_b = {r["b"]: r for r in hist}
        counts = [by_b[b]["n"] if b in by_b else 0 for b in range(BUCKETS)]
        b, k = balancing.locate_kth(counts, k)
        cond = cond & (_bucket(col, lo, hi) == b)
        in_range, lo, hi = by_b[b]["n"], float(by_b[b]["lo"]), float(by_b[b]["hi"])
    passes += 1
    if in_range > FETCH_LIMIT:  # every remaining row ties at one threshold: cut on pair_id instead
        below = pp.where(col < lo).count()
        tie = pp.where(col == lo).select("pair_id").orderBy("pair_id").limit(k).agg(F.max("pair_id")).first()[0]
        return {"tau": lo, "tie_pair_id": int(tie), "passes": passes + 2, "below": below}
    rows = sorted((float(r[0]), int(r[1])) for r in pp.where(cond).select("threshold", "pair_id").collect())
    tau, tie = balancing.cut_in_sorted(rows, k)
    return {"tau": tau, "tie_pair_id": tie, "passes": passes}


def run_id_for(params: dict[str, Any], versions: dict[str, int | None]) -> str:
    """The run's id from its parameters and input versions. ``t`` and ``tail_share`` are numbers whatever
    their spelling: YAML's ``t: 20000`` (an int) and ``--t 20000`` (a float) are one run, not two
    identical curated partitions."""
    same = {k: (float(v) if k in ("t", "tail_share") and v is not None else v) for k, v in params.items()}
    return run_ids.derived(JOB, same, versions)


def count_hist(
    spark: SparkSession, root: str, versions: dict[str, int | None], per_qid: bool
) -> list[tuple[int, int]]:
    """(count, number of units with it): compact (distinct counts are few), safe to fetch."""
    counts = lake.read(spark, root, tables.ENTRY_COUNTS, versions[tables.ENTRY_COUNTS])
    if per_qid:
        from kgcurate.stages import match

        meta = lake.read(spark, root, tables.METADATA, versions[tables.METADATA])
        named = match.entry_qids(meta, _lowercase(spark, root)).select("entry_id")
        counts = counts.join(named, "entry_id", "left_anti").select("count").unionByName(
            lake.read(spark, root, tables.QID_COUNTS, versions[tables.QID_COUNTS]).select("count"))
    return [(r[0], r[1]) for r in counts.where(F.col("count") > 0).groupBy("count").count().collect()]


@dataclass
class BalanceSummary(Summary):
    """One balance run as ``curation_runs`` records it: the run id (derived from parameters and input
    versions), t as applied (None: keep all), pairs in, matched, unmatched and curated, the passes the
    ``--target-size`` search took and the versions read and written."""

    headline: ClassVar[tuple[str, ...]] = ("run_id", "t", "matched_pairs", "pairs_out")
    run_id: str
    seed: int
    per_qid: bool
    matched_pairs: int
    passes_over_matches: int = 1
    tie_pair_id: int | None = None
    selection_passes: int | None = None  # --target-size only
    t: float | None = None
    target_size: int | None = None
    tail_share: float | None = None
    pairs_in: int = 0
    unmatched_pairs: int = 0
    pairs_out: int = 0
    input_versions: dict[str, int] = field(default_factory=dict)
    basis_run_id: str | None = None  # the recorded run this one built on (None: selected from all matches)
    basis_reason: str = ""
    seconds: float = 0.0
    done_by: str | None = None  # nothing selected or written: this run_id was recorded complete before


def check_options(b: dict[str, Any], command: str = "balance") -> None:
    """Exactly one target, each within its range: checked before Spark starts (by ``prepare`` here, in
    ``kgcurate run`` and ``refresh``), not after a run's ingest, metadata and match."""
    t, target, share = b.get("t"), b.get("target_size"), b.get("tail_share")
    given = [x for x in (t, target, share) if x is not None]
    if len(given) != 1:
        raise UserError(f"{command} needs exactly one of --t, --target-size, --tail-share (balance.t, "
                        f"balance.target_size, balance.tail_share in a config), got {len(given)}")
    if t is not None and not (math.isfinite(float(t)) and float(t) > 0):
        raise UserError(f"--t (balance.t) must be a finite number > 0, got {t}")
    if target is not None and not 1 <= int(target) <= argtypes.INT64_MAX:
        raise UserError(f"--target-size (balance.target_size) must be in 1 .. {argtypes.INT64_MAX}, got {target}")
    if not argtypes.INT64_MIN <= int(b.get("seed") or 0) <= argtypes.INT64_MAX:
        raise UserError(f"--seed (balance.seed) must be a 64-bit integer ({argtypes.INT64_MIN} .. "
                        f"{argtypes.INT64_MAX}), got {b.get('seed')}")
    if share is not None and not 0 < float(share) <= 1:
        raise UserError(f"--tail-share (balance.tail_share) must be in (0, 1], got {share}")


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    check_options(cfg["balance"])
    return {}


def execute(ctx: Context, cfg: dict[str, Any]) -> BalanceSummary:
    b = cfg.get("balance", {})
    check_options(b)
    spark = ctx.spark
    root = cfg["lake"]
    t, target, share = b.get("t"), b.get("target_size"), b.get("tail_share")
    seed, per_qid, full = int(b.get("seed") or 0), bool(b.get("per_qid")), bool(b.get("full"))
    for name in (tables.PAIRS, tables.MATCHES, tables.ENTRY_COUNTS):
        if not lake.exists(spark, root, name):
            raise UserError(f"table '{name}' not found in lake {root}: run `kgcurate match --lake {root}` first")
    with leases.held(root, JOB):
        from kgcurate.stages import match

        pinned = _STATE.set(match.read_state(spark, root))  # once: every read of the run agrees on one match
        try:
            return _execute(spark, root, t, target, share, seed, per_qid, label_languages(spark, root, cfg), full)
        finally:
            _STATE.reset(pinned)


def label_languages(spark: SparkSession, root: str, cfg: dict[str, Any]) -> list[str]:
    """The languages ``entities``' labels are in, which pair_texts' ``language`` says: those its last ingest
    recorded (``ingest-wikidata --languages de`` then a plain ``balance`` recorded German labels as ``en``),
    else the config's ``wikidata.languages``."""
    from kgcurate.stages import ingest_wikidata

    configured = list((cfg.get("wikidata") or {}).get("languages") or ["en"])
    ingested = ingest_wikidata.ingested_languages(spark, root)
    if ingested is None:
        return configured
    if ingested != configured:
        log.info("%s: entities were ingested with languages %s (the config says %s): pair_texts follows the "
                 "ingest", JOB, ",".join(ingested), ",".join(map(str, configured)))
    return ingested


# The match_state a running balance read (a match completing meanwhile must not change its versions, its
# run id or its case mode half-way); unset outside a run, where each reader reads the table.
_STATE: ContextVar[MatchState | None] = ContextVar("balance_match_state", default=None)


def _lowercase(spark: SparkSession, root: str) -> bool:
    """The case mode of the match the run's versions come from (``matches`` ids are groups of it)."""
    from kgcurate.stages import match

    state = _STATE.get()
    return match.recorded_lowercase(spark, root) if state is None else state.lowercase


def run_id_now(spark: SparkSession, root: str, params: dict[str, Any], state: MatchState | None = None) -> str:
    """The run's id: its parameters and the versions the last completed match *recorded*, not those moved
    past ``maintain``'s commits (what :func:`input_versions` reads). OPTIMIZE changes no row, so a balance
    after ``maintain`` is the run recorded before it (it wrote a second, identical curated partition).
    ``state``: the ``match_state`` the run's versions came from (read once: a match completing between two
    reads gave an id that named other rows than the run wrote)."""
    from kgcurate.stages import match

    state = match.read_state(spark, root) if state is None else state
    recorded = {} if state is None else {name: state.version_of(name) for name in match.RECORDED_TABLES}
    return run_id_for(params, recorded)


def input_versions(spark: SparkSession, root: str, state: MatchState | None = None) -> dict[str, int | None]:
    """What balance reads: the versions the last completed match recorded (time travel), never a
    half-finished match's newer commits."""
    from kgcurate.stages import match

    return match.completed_versions(spark, root, state)


def _execute(spark: SparkSession, root: str, t: Any, target: Any, share: Any, seed: int,
             per_qid: bool, languages: list[str], full: bool = False) -> BalanceSummary:
    """Reads the recorded versions, selects, and writes (under the stage's lease).

    The selection builds on a recorded run when one allows it (:func:`find_basis`), else reads all
    of ``matches``; both give the same set. The writes, in this order: this run's ``curated``
    partition, its ``pair_texts``, then the ``curation_runs`` row that makes both visible. When the
    row is not written, ``curated`` and ``pair_texts`` are rolled back (:func:`_roll_back`)."""
    from kgcurate.stages import match

    t0 = time.monotonic()
    state = _STATE.get() or match.read_state(spark, root)  # once: versions and run id from the same match
    versions = input_versions(spark, root, state)
    params = {"t": t, "target_size": target, "tail_share": share, "seed": seed, "per_qid": per_qid}
    run_id = run_id_now(spark, root, params, state)
    done = None if full else done_before(spark, root, run_id, versions, languages)
    if done is not None:
        log.info("%s: run %s is recorded with these parameters and inputs: nothing to do (--full selects again)",
                 JOB, run_id)
        again = BalanceSummary(run_id=run_id, seed=seed, per_qid=per_qid, matched_pairs=done["matched_pairs"],
                               basis_reason="recorded before", done_by=run_id)
        return _final_summary(again, _make_newest(spark, root, done, languages), t0)
    if share is not None:
        t = _t_for_tail_share(spark, root, versions, per_qid, float(share))

    basis, why = (None, "--full given") if full else find_basis(spark, root, versions, run_id, seed, per_qid, t)
    pp, chosen = _selection(spark, root, versions, run_id, t, target, seed, per_qid, basis)
    if chosen is None:  # the recorded run's kept pairs do not hold this cut
        why = f"run {basis.run_id} kept too few pairs below its bound for --target-size {target}"
        pp, chosen = _selection(spark, root, versions, run_id, t, target, seed, per_qid, None)
    summary, t, keep = chosen
    summary.basis_reason = why
    log.info("%s: %s (%s)", JOB, f"built on run {summary.basis_run_id}" if summary.basis_run_id
             else "selected from all matches", why)
    try:
        # Counted before the write: replacing curated drops the cache of a frame built on a curated
        # partition, and counting after it would compute the per-pair frame a second time.
        pairs_out = pp.where(keep).count()  # every matched pair_id is in pairs (insert-only)
        curated = _curated_rows(spark, root, versions, pp, keep, pairs_out, run_id,
                                basis if summary.basis_run_id else None)
        before = {name: lake.version(spark, root, name) for name in (tables.CURATED, tables.PAIR_TEXTS)}
        try:
            # 1. Only this run's partition is replaced: other runs stay side by side; a re-run of the same
            # run_id (same parameters and inputs) rewrites identical rows.
            lake.overwrite(spark, root, tables.CURATED, curated, replace_where=run_filter(run_id))
            versions_out = dict(versions)
            versions_out[tables.CURATED] = lake.version(spark, root, tables.CURATED)
            mine = run_partition(spark, root, run_id, versions_out[tables.CURATED])
            # 2. pair_texts before the run row: one visible unit
            versions_out.update(_write_kg_texts(spark, root, mine, versions, languages))
            # 3. Last, the curation_runs row that makes the run visible.
            row = _run_row(spark, root, params, run_id, t, versions, versions_out, summary.matched_pairs, pairs_out)
            # A run_id recorded before (its selection rewritten: new entities, other languages) keeps
            # its row but takes the versions this write made, so that the next re-run can find it done.
            _write_run_row(spark, root, row, languages, ["input_versions", "created_at"])
        except BaseException:
            _roll_back(spark, root, before)
            raise
    finally:
        pp.unpersist()
    return _final_summary(summary, row, t0)


def _write_run_row(spark: SparkSession, root: str, row: dict[str, Any], languages: list[str], columns: list[str],
                   insert: bool = True) -> None:
    """MERGE the run's ``curation_runs`` row (a recorded one updates only ``columns``), its commit noted with
    the run and its label languages: the note :func:`done_before` reads back."""
    df = spark.createDataFrame([row], tables.schema(tables.CURATION_RUNS))
    with lake.commit_note(spark, run_notes.write(NOTE_KEY, row["run_id"], {"languages": list(languages)})):
        lake.merge(spark, root, tables.CURATION_RUNS, df, "t.run_id = s.run_id", matched_update_when="true",
                   columns=columns, insert=insert)


def _make_newest(spark: SparkSession, root: str, row: Any, languages: list[str]) -> dict[str, Any]:
    """A recorded run asked for again becomes the newest (its ``created_at`` now): ``download``, ``report``
    and ``train`` take the newest run, and after t=3, t=8, t=3 they took t=8's set. No commit when it is
    the newest already (a pipeline re-run writes nothing). The run's row, as it now reads."""
    out = row.asDict()
    newest = latest_run(spark, root)
    if newest is None or newest["run_id"] == row["run_id"]:
        return out
    out["created_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
    _write_run_row(spark, root, out, languages, ["created_at"], insert=False)
    log.info("%s: run %s is the newest again", JOB, row["run_id"])
    return out


def _t_for_tail_share(spark: SparkSession, root: str, versions: dict[str, int | None], per_qid: bool,
                      share: float) -> float:
    """``--tail-share``: t from the compact count histogram (MetaCLIP's p_to_t), never from the pairs."""
    hist = count_hist(spark, root, versions, per_qid)
    if not hist:
        raise UserError(f"no matches in lake {root}: nothing to balance (run match first)")
    t = balancing.p_to_t(hist, share)
    log.info("%s: tail share %.4f -> t = %s", JOB, share, t)
    return t


@dataclass(frozen=True)
class Basis:
    """A recorded run a new one can build on: its kept pairs (its ``curated`` partition) plus the
    files ``matches`` gained since its version hold every pair the new cut can keep."""

    run_id: str
    bound: float  # every matched pair the run left out has threshold >= bound, now and later
    matched: int
    pairs_out: int
    versions: dict[str, int]
    new_matches: list[str]  # the data files appended to ``matches`` since the run's version


def find_basis(spark: SparkSession, root: str, versions: dict[str, int | None], run_id: str, seed: int,
               per_qid: bool, t: Any) -> tuple[Basis | None, str]:
    """(the recorded run to build on, why / why not): same seed and per-qid mode, its ``matches``
    version at or before ours and only appended to since (read from the Delta log: a full re-match,
    a RESTORE or an OPTIMIZE in between means reading all matches), and for ``--t`` a bound at or above
    t. Thresholds only rise as ``matches`` grows (:func:`balancing.basis_bound`), so the set is the
    one a selection from all matches gives. Among several, the newest, then the smallest."""
    recorded = runs(spark, root)
    if recorded is None or versions[tables.MATCHES] is None:
        return None, "no recorded run"
    mine = []
    for r in recorded.where((F.col("seed") == seed) & (F.col("per_qid") == per_qid)).collect():  # one row per run
        iv = dict(r["input_versions"] or {})
        if r["run_id"] == run_id or tables.MATCHES not in iv or tables.PAIRS not in iv:
            continue
        if iv[tables.MATCHES] > versions[tables.MATCHES]:
            continue
        bound = balancing.basis_bound(r["t"], r["target_size"], r["pairs_out"], r["matched_pairs"])
        if t is not None and not balancing.builds_on(bound, float(t), None, 0):
            continue
        mine.append((-iv[tables.MATCHES], r["pairs_out"], r["run_id"], bound, r, iv))
    if not mine:
        return None, "no recorded run with this seed and mode whose cut covers this one"
    _, _, rid, bound, r, iv = min(mine, key=lambda x: x[:3])
    files = lake.files_since(spark, root, tables.MATCHES, iv[tables.MATCHES], versions[tables.MATCHES])
    if files is None or files.moved:
        return None, f"matches changed other than by appends since run {rid} (version {iv[tables.MATCHES]})"
    basis = Basis(run_id=rid, bound=bound, matched=int(r["matched_pairs"]), pairs_out=int(r["pairs_out"]),
                  versions={k: int(v) for k, v in iv.items()}, new_matches=files.inserted)
    return basis, f"{len(files.inserted)} matches files since version {iv[tables.MATCHES]}"


def _candidate_matches(spark: SparkSession, root: str, basis: Basis) -> DataFrame:
    """(pair_id, entry_id) of the basis run's kept pairs (from its curated entry_ids) and of the pairs
    matched since: the only matches a run built on it reads."""
    kept = run_partition(spark, root, basis.run_id).select("pair_id", F.explode("entry_ids").alias("entry_id"))
    if not basis.new_matches:
        return kept
    return kept.unionByName(_new_matches(spark, basis))


def _new_matches(spark: SparkSession, basis: Basis) -> DataFrame:
    """(pair_id, entry_id) of the files appended to ``matches`` since the basis run."""
    return spark.read.schema("pair_id bigint, entry_id bigint").parquet(*basis.new_matches)


def _selection(spark: SparkSession, root: str, versions: dict[str, int | None], run_id: str, t: Any, target: Any,
               seed: int, per_qid: bool, basis: Basis | None) -> tuple[DataFrame, Any]:
    """(the persisted per-pair frame, ``_select``'s result or None when ``basis`` cannot hold the cut)."""
    m = None if basis is None else _candidate_matches(spark, root, basis)
    pp = per_pair(spark, root, versions, seed, per_qid, m).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        chosen = _select(pp, root, run_id, t, target, seed, per_qid, basis)
    except BaseException:
        pp.unpersist()
        raise
    if chosen is None:
        pp.unpersist()
    return pp, chosen


def _select(pp: DataFrame, root: str, run_id: str, t: Any, target: Any, seed: int,
            per_qid: bool, basis: Basis | None = None) -> tuple[BalanceSummary, Any, Column] | None:
    """(summary so far, t, keep condition), or None when ``basis`` cannot hold a ``--target-size`` cut:
    read-only.

    One aggregate of the persisted per-pair frame gives the matched count and threshold range that
    ``--target-size`` searches; ``--t`` (given or from the tail share) is a plain cut. Built on a
    basis, the frame holds the basis' kept pairs and those matched since: matched pairs are the
    basis' plus the latter."""
    bound = math.inf if basis is None else basis.bound
    stats = pp.agg(F.count(F.lit(1)).alias("n"), F.min("threshold").alias("lo"),
                   F.max("threshold").alias("hi"),
                   F.count(F.when(F.col("threshold") < F.lit(bound), 1)).alias("below")).first()
    candidates = int(stats["n"])
    if basis is not None and not balancing.builds_on(basis.bound, None if target is not None else float(t),
                                                     None if target is None else int(target), int(stats["below"])):
        return None
    matched = candidates if basis is None else basis.matched + candidates - basis.pairs_out
    summary = BalanceSummary(run_id=run_id, seed=seed, per_qid=per_qid, matched_pairs=matched,
                             basis_run_id=None if basis is None else basis.run_id)
    if target is None:
        return summary, t, F.col("threshold") < F.lit(float(t))
    if matched == 0:  # no thresholds either (lo and hi are null)
        raise UserError(f"no matched pairs in lake {root}: nothing to balance (run match first)")
    t, keep, selection = _target_cut(pp, root, int(target), candidates, float(stats["lo"]), float(stats["hi"]))
    for k, v in selection.items():
        setattr(summary, k, v)
    return summary, t, keep


def _target_cut(pp: DataFrame, root: str, target: int, matched: int, lo: float,
                hi: float) -> tuple[float, Column, dict[str, Any]]:
    """(t, keep, summary keys) for ``--target-size``: exactly ``target`` pairs, ties broken on pair_id
    so the cut is the same on any cluster; a target of all matched pairs or more keeps everything."""
    if target >= matched:
        log.warning("%s: target size %d >= %d matched pairs: keeping all", JOB, target, matched)
        return balancing.t_above(hi), F.lit(True), {"selection_passes": 0}
    cut = select_target(pp, target, matched, lo, hi)
    selection = {"selection_passes": cut["passes"], "tie_pair_id": cut["tie_pair_id"]}
    return balancing.t_above(cut["tau"]), _keep_through(cut), selection


def _keep_through(cut: dict[str, Any]) -> Column:
    """The pairs up to the cut: below tau, and at tau those up to the tie's pair_id (all, when no tie)."""
    if cut["tie_pair_id"] is None:
        return F.col("threshold") <= F.lit(cut["tau"])
    return (F.col("threshold") < F.lit(cut["tau"])) | (
        (F.col("threshold") == F.lit(cut["tau"])) & (F.col("pair_id") <= F.lit(cut["tie_pair_id"])))


def _curated_rows(spark: SparkSession, root: str, versions: dict[str, int | None], pp: DataFrame, keep: Column,
                  kept: int, run_id: str, basis: Basis | None = None) -> DataFrame:
    """The ``kept`` pairs with their image URL, text and entry ids, tagged with the run: from ``pairs``
    and ``matches`` at the recorded versions, or built on a basis, its curated rows and the pairs and
    matches added since (read from the files the Delta log names; the whole table when it does not say).

    Up to :data:`pairs_insert.BROADCAST_IDS` kept pairs, their ids are broadcast and every source is
    filtered to them where it is read: neither the table's strings nor a basis' curated rows are
    shuffled, and entry lists are gathered for kept pairs only (the rest of a 50M-pair lake's matches
    are never grouped)."""
    from kgcurate.pairs_insert import BROADCAST_IDS
    from kgcurate.stages import match

    ids = pp.where(keep).select("pair_id")
    ids = F.broadcast(ids) if kept <= BROADCAST_IDS else ids

    def of_kept(rows: DataFrame) -> DataFrame:
        return rows.join(ids, "pair_id", "left_semi")

    def with_entries(pairs: DataFrame, m: DataFrame) -> DataFrame:
        lists = of_kept(m).groupBy("pair_id").agg(F.array_sort(F.collect_list("entry_id")).alias("entry_ids"))
        return of_kept(pairs).join(lists, "pair_id")

    cols = "pair_id bigint, image_url string, text string"
    new = None if basis is None else match.added_pairs(spark, root, basis.versions[tables.PAIRS],
                                                       versions[tables.PAIRS], cols)
    if new is None:  # no basis, or the log does not say which pairs are new (rows may be gone): all of pairs
        pairs = lake.read(spark, root, tables.PAIRS, versions[tables.PAIRS]).select("pair_id", "image_url", "text")
        m = (lake.read(spark, root, tables.MATCHES, versions[tables.MATCHES]) if basis is None
             else _candidate_matches(spark, root, basis))
        rows = with_entries(pairs, m)
    else:  # the basis' kept pairs keep their rows and entry lists (pairs and matches only gain rows)
        rows = of_kept(run_partition(spark, root, basis.run_id).select("pair_id", "image_url", "text", "entry_ids"))
        if basis.new_matches:
            rows = rows.unionByName(with_entries(new, _new_matches(spark, basis)))
    return rows.select("pair_id", "image_url", "text", "entry_ids", F.lit(run_id).alias("run_id"))


def _run_row(spark: SparkSession, root: str, params: dict[str, Any], run_id: str, t: Any,
             versions: dict[str, int | None], versions_out: dict[str, int | None], matched: int,
             pairs_out: int) -> dict[str, Any]:
    """The ``curation_runs`` row: the run's parameters (t as applied), counts and the versions it read
    and wrote, so readers resolve the run's tables through it."""
    target, share = params["target_size"], params["tail_share"]
    pairs_in = lake.read(spark, root, tables.PAIRS, versions[tables.PAIRS]).count()
    return {
        "run_id": run_id, "t": float(t), "target_size": None if target is None else int(target),
        "tail_share": None if share is None else float(share), "seed": params["seed"], "per_qid": params["per_qid"],
        "pairs_in": pairs_in, "matched_pairs": matched, "unmatched_pairs": max(0, pairs_in - matched),
        "pairs_out": pairs_out, "input_versions": {k: v for k, v in versions_out.items() if v is not None},
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
    }


def _final_summary(summary: BalanceSummary, row: dict[str, Any], t0: float) -> BalanceSummary:
    """The summary as recorded (from the run row); an infinite t (keep all) is reported as None."""
    for k in ("target_size", "tail_share", "pairs_in", "unmatched_pairs", "pairs_out", "input_versions"):
        setattr(summary, k, row[k])
    summary.t = row["t"] if math.isfinite(row["t"]) else None
    summary.seconds = round(time.monotonic() - t0, 2)
    return summary


def needs_kg_texts(spark: SparkSession, root: str, versions: dict[str, int | None]) -> bool:
    """Whether a run writes ``pair_texts``: the lake has entities and the metadata names some (a
    metadata-sized check); WordNet / MetaCLIP-only lakes have no KG texts."""
    from kgcurate.stages import match

    if not lake.exists(spark, root, tables.ENTITIES):
        return False
    meta = lake.read(spark, root, tables.METADATA, versions[tables.METADATA])
    return not match.entry_qids(meta, _lowercase(spark, root)).isEmpty()


NOTE_KEY = "kgcurate.balance"  # the key of this stage's note on its curation_runs commit


def done_before(spark: SparkSession, root: str, run_id: str, versions: dict[str, int | None],
                languages: list[str]) -> Any:
    """The ``curation_runs`` row of ``run_id`` when running it again would write nothing new; None:
    run it.

    The run_id hashes the parameters and the match's input versions, so a recorded row means this
    selection is in ``curated`` already (``curated drop`` removes both). Its ``pair_texts`` also
    depend on ``entities`` and the label languages, which the id does not hash: with KG texts, the
    entities and ``pair_texts`` must hold the rows the run recorded (another run's texts for shared
    pairs may differ) and the run's note on its ``curation_runs`` commit must name these languages."""
    row = latest_run(spark, root, run_id)
    if row is None:
        return None
    recorded = dict(row["input_versions"] or {})
    if tables.PAIR_TEXTS not in recorded:
        return None if needs_kg_texts(spark, root, versions) else row
    kg_inputs = {name: recorded.get(name) for name in (tables.ENTITIES, tables.PAIR_TEXTS)}
    if not lake.unchanged_since(spark, root, kg_inputs):
        return None
    for note in lake.notes(spark, root, tables.CURATION_RUNS):  # newest first: the run's last write
        got = run_notes.read(note, NOTE_KEY)
        if got is not None and got[0] == run_id:
            return row if got[1] == {"languages": list(languages)} else None
    return None


def _write_kg_texts(spark: SparkSession, root: str, mine: DataFrame, versions: dict[str, int | None],
                    languages: list[str]) -> dict[str, int]:
    """``pair_texts`` for this run's pairs (EntityNet: KG texts next to each alt text), when the
    metadata names entities at all; WordNet / MetaCLIP-only lakes skip it (a metadata-sized check)."""
    from kgcurate import kg_texts

    if not needs_kg_texts(spark, root, versions):
        return {}
    entities_version = lake.version(spark, root, tables.ENTITIES)
    out = kg_texts.write_pair_texts(spark, root, mine, versions[tables.METADATA], entities_version, languages,
                                    pairs_version=versions[tables.PAIRS],
                                    lowercase=_lowercase(spark, root))
    log.info("%s: pair_texts: %d rows inserted, %d deleted", JOB, out.get("rows_inserted", 0),
             out.get("rows_deleted", 0))
    return {tables.ENTITIES: entities_version, tables.PAIR_TEXTS: out["version"]}


def run_partition(spark: SparkSession, root: str, run_id: str, version: int | None = None) -> DataFrame:
    """One run's rows of ``curated`` (its partition; ``version``: at that table version)."""
    return lake.read(spark, root, tables.CURATED, version).where(F.col("run_id") == run_id)


def run_filter(run_id: str) -> str:
    """The replaceWhere / delete predicate of one run's partition (run ids are ``balance-<hex>``)."""
    if not all(c.isalnum() or c in "-_." for c in run_id):
        raise UserError(f"not a curation run id: {run_id!r} (see `kgcurate curated list`)")
    return f"run_id = '{run_id}'"


def _roll_back(spark: SparkSession, root: str, before: dict[str, int | None]) -> None:
    """A run is visible only with its ``curation_runs`` row: when that row could not be written,
    ``curated`` and ``pair_texts`` go back to what they were (emptied, if this run created them; the
    ``pair_texts`` MERGE rewrites the rows of pairs that visible runs share). Readers also resolve
    ``curated`` through ``curation_runs`` (:func:`latest_curated`), which covers a killed run."""
    for name, version in before.items():
        try:
            if lake.version(spark, root, name) == version:
                continue
            if version is None:
                lake.delete(spark, root, name, F.lit(True))
            else:
                lake.restore(spark, root, name, version)
            log.warning("%s: run failed before its curation_runs row; %s rolled back", JOB, name)
        except Exception as exc:  # noqa: BLE001 - the original failure is what the user must see
            log.error("%s: could not roll %s back (%s); readers still see only recorded runs", JOB, name, exc)


def runs(spark: SparkSession, root: str) -> DataFrame | None:
    """``curation_runs``, newest first (None when no run was recorded)."""
    if not lake.exists(spark, root, tables.CURATION_RUNS):
        return None
    return lake.read(spark, root, tables.CURATION_RUNS).orderBy(F.col("created_at").desc(), "run_id")


def latest_run(spark: SparkSession, root: str, run_id: str | None = None):
    """The ``curation_runs`` row of ``run_id``, or the newest one; None when there is none."""
    df = runs(spark, root)
    if df is None:
        return None
    if run_id is not None:
        df = df.where(F.col("run_id") == run_id)
    return df.first()


def latest_curated(spark: SparkSession, root: str, run_id: str | None = None) -> DataFrame | None:
    """One curated set: the rows of ``run_id`` (default: the newest recorded run). Only runs with a
    ``curation_runs`` row are visible, so a balance killed after writing its partition but before its
    row is never read. Read at the current version: partitions of other runs do not change it, and
    time travel would end with Delta's log retention; None when no run is recorded."""
    run = latest_run(spark, root, run_id)
    if run is None:
        if run_id is not None:
            raise UserError(f"no curated run '{run_id}' in lake {root}: see `kgcurate curated list --lake {root}`")
        return None
    if not lake.exists(spark, root, tables.CURATED):
        return None
    return run_partition(spark, root, run["run_id"])


def drop_run(spark: SparkSession, root: str, run_id: str) -> int:
    """Remove one curated set: its run row first (it stops being visible), then its partition."""
    where = run_filter(run_id)
    missing = UserError(f"no curated run '{run_id}' in lake {root}: see `kgcurate curated list --lake {root}`")
    if not lake.exists(spark, root, tables.CURATION_RUNS):  # before the lease: a mistyped lake stays unmade
        raise missing
    with leases.held(root, JOB):
        if latest_run(spark, root, run_id) is None:
            raise missing
        rows = run_partition(spark, root, run_id).count()
        lake.delete(spark, root, tables.CURATION_RUNS, where)
        lake.delete(spark, root, tables.CURATED, where)
    return rows


def orphan_runs(spark: SparkSession, root: str) -> list[str]:
    """run_ids with curated rows but no ``curation_runs`` row: what killed balances left (invisible)."""
    if not lake.exists(spark, root, tables.CURATED):
        return []
    cur = lake.read(spark, root, tables.CURATED).select("run_id").distinct()  # one row per partition
    recorded = runs(spark, root)
    if recorded is not None:
        cur = cur.join(recorded.select("run_id"), "run_id", "left_anti")
    return sorted(r[0] for r in cur.collect())


def remove_orphans(spark: SparkSession, root: str) -> list[str]:
    """Delete the partitions of :func:`orphan_runs`, under the balance lease (never a running balance's)."""
    with leases.held(root, JOB):
        orphans = orphan_runs(spark, root)
        for run_id in orphans:
            lake.delete(spark, root, tables.CURATED, run_filter(run_id))
    return orphans


def skip_reason(cfg: dict[str, Any]) -> str | None:
    """``kgcurate run`` skips this stage when no balance target is configured."""
    b = cfg["balance"]
    if b.get("t") is None and b.get("target_size") is None and b.get("tail_share") is None:
        return "no balance.t, balance.target_size or balance.tail_share configured"
    return None


def report(s: BalanceSummary, args: argparse.Namespace) -> int:
    if s.done_by:
        print(f"{JOB}: nothing to do: run {s.done_by} is recorded with these parameters and inputs "
              "(--full selects again)")
    print(f"balance {s.run_id}: t={s.t}, pairs in {s.pairs_in}, matched {s.matched_pairs}, "
          f"unmatched {s.unmatched_pairs} (not curated), curated {s.pairs_out}")
    return 0
