"""``kgcurate refresh --crawl CC-MAIN-YYYY-WW`` (or ``latest``): bring the lake up to date with one crawl.

Meant to run on a schedule (deploy/airflow ``kgcurate_refresh``) while a crawl is being published
or after it: each run ingests only the crawl's WAT files not yet ``ok`` in ``ingest_log`` (the
ingest stage's own skip), matches only the pairs added since the last match (the match stage's
incremental mode), and re-balances to the target, which writes a new ``curated`` version and a
new ``curation_runs`` row. Earlier curated versions stay readable by Delta time travel at the
version recorded in ``curation_runs``.

A refresh with nothing new is a no-op: ingest finds every file done, match finds the pairs
version it already matched, and balance is skipped when ``curation_runs`` already holds the run
its inputs would produce (balance's run_id is a hash of its parameters and input versions), so no
table gets a new Delta version. Everything here is composition of the stages' ``execute``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession

from kgcurate import lake, s3, tables
from kgcurate.context import Context, Skipped, Summary
from kgcurate.errors import ConcurrentRunError, UserError

JOB = "refresh"
log = logging.getLogger("kgcurate.refresh")

if TYPE_CHECKING:
    from kgcurate.stages.balance import BalanceSummary
    from kgcurate.stages.ingest_wat import IngestWatSummary
    from kgcurate.stages.match import MatchSummary


@dataclass
class RefreshSummary(Summary):
    """One refresh: the crawl, its listing, the child stages' own summaries (balance :class:`Skipped`
    when a curated run already holds these inputs) and the tables it changed (none: a no-op)."""

    crawl: str
    listing: str
    ingest: IngestWatSummary | None = None
    match: MatchSummary | None = None
    balance: BalanceSummary | Skipped | None = None
    changed_tables: list[str] = field(default_factory=list)
    versions: dict[str, int | None] = field(default_factory=dict)
    noop: bool = False
    seconds: float = 0.0
# The tables a refresh may change; their versions before/after make the summary.
WATCHED = (tables.PAIRS, tables.INGEST_LOG, tables.BAD_RECORDS, tables.MATCHES, tables.ENTRY_COUNTS,
           tables.QID_COUNTS, tables.MATCH_STATE, tables.CURATED, tables.CURATION_RUNS, tables.PAIR_TEXTS)


def _versions(spark: SparkSession, root: str) -> dict[str, int | None]:
    return {name: lake.version(spark, root, name) for name in WATCHED}


def base_of(listing_base: str | None) -> str:
    """The root laid out like CommonCrawl's bucket (``--listing-base``; a mirror, a bucket, a folder)."""
    base = listing_base or s3.COMMONCRAWL_BASE
    return base if "://" in base or base.endswith("/") else base + "/"


def listing_for(crawl: str, listing_base: str | None) -> tuple[str, str]:
    """(listing URL, base for its relative lines). CommonCrawl's lines are relative to the bucket root."""
    base = base_of(listing_base)
    return s3.listing_url(crawl, base), base


LATEST = "latest"


def latest_crawl(base: str) -> str:
    """The newest crawl under ``base`` (``crawl-data/CC-MAIN-YYYY-WW``, newest by name) whose WAT listing is
    published: what ``--crawl latest`` refreshes, so a schedule moves to a new crawl by itself. CommonCrawl
    writes a crawl's listings once its files are all there; a folder without one is a crawl in the making."""
    import os

    from kgcurate.wat.inputs import strip_file_uri

    if s3.is_s3(base):
        _, bucket, prefix = s3.split_url(f"{base.rstrip('/')}/crawl-data/")
        names = s3.list_folders(bucket, prefix)
    elif "://" in base and not base.startswith("file:"):
        raise UserError(f"--crawl {LATEST} lists {base}crawl-data/, which an {base.split(':', 1)[0]} base cannot "
                        "do: pass --crawl CC-MAIN-YYYY-WW, or an s3:// or local --listing-base")
    else:
        base = strip_file_uri(base)
        folder = os.path.join(base, "crawl-data")
        names = os.listdir(folder) if os.path.isdir(folder) else []
    for crawl in sorted((n for n in names if s3.CRAWL_RE.match(n)), reverse=True):
        listing = s3.listing_url(crawl, base)
        if s3.exists(listing) if s3.is_s3(base) else os.path.isfile(listing):
            return crawl
    raise UserError(f"--crawl {LATEST}: no crawl-data/CC-MAIN-YYYY-WW/wat.paths.gz under {base}: check "
                    "--listing-base, or pass --crawl CC-MAIN-YYYY-WW")


def balance_params(cfg: dict[str, Any]) -> dict[str, Any]:
    b = cfg.get("balance", {})
    return {"t": b.get("t"), "target_size": b.get("target_size"), "tail_share": b.get("tail_share"),
            "seed": int(b.get("seed") or 0), "per_qid": bool(b.get("per_qid"))}


def balance_is_current(spark: SparkSession, root: str, cfg: dict[str, Any]) -> str | None:
    """The run_id when ``curation_runs`` already holds the balance these inputs would produce, by
    ``balance``'s own rule (:func:`kgcurate.stages.balance.done_before`): a recorded row is not enough
    when ``entities``, ``pair_texts`` or the label languages changed since (its KG texts would be stale),
    and ``balance.full`` always selects again."""
    from kgcurate.stages import balance

    if (cfg.get("balance") or {}).get("full") or not lake.exists(spark, root, tables.CURATION_RUNS):
        return None
    versions = balance.input_versions(spark, root)
    params = {k: balance_params(cfg)[k] for k in ("t", "target_size", "tail_share", "seed", "per_qid")}
    run_id = balance.run_id_now(spark, root, params)
    languages = balance.label_languages(spark, root, cfg)
    return run_id if balance.done_before(spark, root, run_id, versions, languages) is not None else None


def execute(ctx: Context, cfg: dict[str, Any], crawl: str | None = None) -> RefreshSummary:
    """``crawl``: the crawl ``prepare`` resolved (``--crawl latest``); else the config's, resolved here."""
    from kgcurate.stages import balance, ingest_wat, match

    crawl = crawl or resolve_crawl(cfg)
    spark = ctx.spark
    root = cfg["lake"]
    if not lake.exists(spark, root, tables.METADATA):
        raise UserError(f"table 'metadata' not found in lake {root}: run `kgcurate build-metadata --lake {root}` "
                        "once before scheduling refreshes")
    listing, base = listing_for(crawl, _listing_base(cfg))
    t0 = time.monotonic()
    before = _versions(spark, root)
    summary = RefreshSummary(crawl=crawl, listing=listing)

    wcfg = copy.deepcopy(cfg)
    wcfg["wat"].update(inputs=[listing], crawl=crawl, listing_base=base, force=False)
    log.info("%s: %s: ingesting files not yet ok from %s", JOB, crawl, listing)
    summary.ingest = ingest_wat.execute(ctx.for_stage(ingest_wat.JOB), wcfg)

    log.info("%s: matching new pairs", JOB)
    try:
        summary.match = match.execute(ctx.for_stage(match.JOB), copy.deepcopy(cfg))
        current = balance_is_current(spark, root, cfg)
        if current:
            log.info("%s: balance %s already holds these inputs: nothing to re-balance", JOB, current)
            summary.balance = Skipped("up to date", run_id=current)
        else:
            summary.balance = balance.execute(ctx.for_stage(balance.JOB), copy.deepcopy(cfg))
    except ConcurrentRunError as exc:  # what did commit before the refusal: say so, not "changed nothing"
        raise ConcurrentRunError(str(exc).replace("this run changed nothing", _done_so_far(summary, crawl))) from None

    after = _versions(spark, root)
    summary.changed_tables = sorted(n for n in WATCHED if after[n] != before[n])
    summary.versions = after
    summary.noop = not summary.changed_tables
    summary.seconds = round(time.monotonic() - t0, 2)
    return summary


def _done_so_far(summary: RefreshSummary, crawl: str) -> str:
    """What a refresh stopped by another run's lease had already committed, for its one-line error."""
    done = []
    if summary.ingest is not None and summary.ingest.ok:
        done.append(f"ingested {summary.ingest.ok} of {crawl}'s files")
    if summary.match is not None and summary.match.pairs_matched:
        done.append(f"matched {summary.match.pairs_matched} new pairs")
    return f"this refresh {' and '.join(done)}, then stopped" if done else "this refresh changed nothing"


def check_options(cfg: dict[str, Any]) -> str:
    """The crawl (a well-formed id) and one balance target within its range, before Spark starts: a target
    that cannot work failed only after the crawl's ingest and match. Returns the crawl."""
    from kgcurate.stages import balance, ingest_wat

    ingest_wat.check_options(cfg["wat"])
    crawl = (cfg.get("refresh") or {}).get("crawl") or cfg["wat"].get("crawl")
    if not crawl:
        raise UserError(f"refresh needs --crawl CC-MAIN-YYYY-WW or --crawl {LATEST} (or refresh.crawl in the config)")
    if crawl != LATEST:
        s3.listing_url(crawl)  # a malformed crawl id fails here
    balance.check_options(cfg.get("balance") or {}, JOB)
    return crawl


def _listing_base(cfg: dict[str, Any]) -> str | None:
    return (cfg.get("refresh") or {}).get("listing_base") or cfg["wat"].get("listing_base")


def resolve_crawl(cfg: dict[str, Any]) -> str:
    """The crawl this refresh reads: the one named, or for ``latest`` the newest published one."""
    crawl = check_options(cfg)
    if crawl != LATEST:
        return crawl
    base = base_of(_listing_base(cfg))
    found = latest_crawl(base)
    log.info("%s: --crawl %s is %s (the newest crawl with a WAT listing under %s)", JOB, LATEST, found, base)
    return found


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    return {"crawl": resolve_crawl(cfg)}


def report(s: RefreshSummary, args: argparse.Namespace) -> int:
    from kgcurate.stages.balance import BalanceSummary

    ing, bal, m = s.ingest, s.balance, s.match
    assert ing is not None and m is not None  # execute sets both or raises
    if s.noop:
        print(f"refresh {s.crawl}: nothing new ({ing.inputs} files all ingested, matches and "
              "balance up to date); no table changed")
        return 0
    failed = ing.failed_count
    print(f"refresh {s.crawl}: {ing.files} files read ({ing.ok} ok, "
          f"{ing.partial} partial, {failed} failed, "
          f"{ing.skipped_done} already done), {ing.pairs_inserted:,} new pairs, "
          f"match {m.mode} ({m.matches:,} new matches), "
          + (f"curated {bal.pairs_out:,} (run {bal.run_id})" if isinstance(bal, BalanceSummary)
             else "balance up to date")
          + f"; changed: {', '.join(s.changed_tables)}")
    for path, error in ing.partial_files:
        print(f"  partial: {path}: {error}")
    for path, error in ing.failed:
        print(f"  failed: {path}: {error}")
    if failed:
        allowed = ing.failures_allowed
        print(f"kgcurate: {'warning' if allowed else 'error'}: {failed} files of {s.crawl} failed (see ingest_log); "
              "the rest are in; the next refresh retries them", file=sys.stderr)
        return 0 if allowed else 1
    return 0
