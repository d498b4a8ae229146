"""``kgcurate run --config conf/demo.yaml``: every stage in order, in one Spark session.

Each stage's ``execute(ctx, cfg)`` is the same code its own command runs, so the pipeline is
exactly the sequence a user would type, in the order :func:`kgcurate.registry.pipeline_order`
derives from what the stages read and write. A stage whose input is not configured says so in its
``skip_reason(cfg)`` and is skipped (no Wikidata dump -> no knowledge-graph entries; no balance
target -> no curated table).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import logging
import time
from typing import Any

from kgcurate import registry
from kgcurate.context import Context, Skipped, Summary
from kgcurate.errors import UserError

log = logging.getLogger("kgcurate.run")

# (command, module) in the order the registry derives from what each stage reads and writes
STEPS: tuple[tuple[str, str], ...] = tuple((s.name, s.module) for s in registry.pipeline_order())


def skip_reason(step: str, cfg: dict[str, Any]) -> str | None:
    """Why a step does not apply to this config (None: run it): the stage's own ``skip_reason``."""
    module = importlib.import_module(f"kgcurate.stages.{registry.BY_NAME[step].module}")
    reason = getattr(module, "skip_reason", None)
    return reason(cfg) if reason is not None else None


def execute(ctx: Context, cfg: dict[str, Any], only: list[str] | None = None,
            skip: list[str] | None = None) -> dict[str, Summary]:
    """Each step's own summary (``Skipped`` when its input is not configured), by command, in order."""
    summaries: dict[str, Summary] = {}
    for step, module_name in STEPS:
        if (only and step not in only) or (skip and step in skip):
            continue
        reason = skip_reason(step, cfg)
        if reason:
            log.info("run: skipping %s (%s)", step, reason)
            summaries[step] = Skipped(reason)
            continue
        log.info("run: %s ...", step)
        started = time.monotonic()
        summary = importlib.import_module(f"kgcurate.stages.{module_name}").execute(ctx.for_stage(step), cfg)
        summary.seconds = round(time.monotonic() - started, 1)  # every pipeline stage's summary has seconds
        summaries[step] = summary
        log.info("run: %s done in %.1fs", step, summary.seconds)
    return summaries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = [s for s, _ in STEPS]
    parser.add_argument("--only", action="append", choices=names, help="run only these stages (repeatable)")
    parser.add_argument("--skip", action="append", choices=names, help="skip these stages (repeatable)")


def _short(summary: Summary) -> str:
    """The first ten scalar fields (counts, ids, timings) of a summary, ``name=value`` (any dataclass), its
    :attr:`Summary.headline` fields first; a stage that found its work already done (``done_by``) says so
    first."""
    fields = dataclasses.asdict(summary)  # type: ignore[call-overload]
    first = getattr(summary, "headline", ())
    ordered = {**{k: fields[k] for k in first if k in fields}, **fields}
    keep = {k: v for k, v in ordered.items() if isinstance(v, int | float | str) and not k.startswith("_")}
    done_by = fields.get("done_by")
    head = f"nothing to do (inputs unchanged since run {done_by}), " if done_by else ""
    return head + ", ".join(f"{k}={v}" for k, v in list(keep.items())[:10] if v != "")


def _runs(step: str, args: argparse.Namespace) -> bool:
    return (not args.only or step in args.only) and step not in (args.skip or [])


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    if not args.config:
        raise UserError("run needs --config (e.g. conf/demo.yaml or conf/cluster.yaml)")
    if not any(_runs(step, args) for step, _ in STEPS):
        raise UserError(f"no stage left to run: --only {' '.join(args.only or [])} and --skip "
                        f"{' '.join(args.skip or [])} select nothing (see kgcurate run --help)")
    if _runs("ingest-wat", args) and not skip_reason("ingest-wat", cfg):
        from kgcurate.stages import ingest_wat

        ingest_wat.check_options(cfg["wat"])  # text bounds that keep nothing fail now, not as "ok" files
    if _runs("ingest-wikidata", args) and not skip_reason("ingest-wikidata", cfg):
        from kgcurate.stages import ingest_wikidata

        ingest_wikidata.prepare(args, cfg)  # a mistyped dump fails now, not after ingest-wat's hours
    if _runs("build-metadata", args) and not skip_reason("build-metadata", cfg):
        from kgcurate.stages import build_metadata

        build_metadata.prepare(args, cfg)  # WordNet, MetaCLIP, entity-set specs: there before anything runs
    if _runs("balance", args) and not skip_reason("balance", cfg):
        from kgcurate.stages import balance

        balance.check_options(cfg["balance"])  # a target that cannot work fails now, not after match
    if _runs("report", args):
        from kgcurate.stages import report

        report.prepare(args, cfg)  # a report folder nothing could write fails now, not after every stage
    return {"only": args.only, "skip": args.skip}


def report(summaries: dict[str, Summary], args: argparse.Namespace) -> int:
    """One line per stage, then each stage's own warnings and errors (its command's ``report``, whose
    stdout summary is the line above): the exit code is the worst of the stages', so failed input files
    make ``run`` exit 1 and are named, as ``ingest-wat`` alone does."""
    from kgcurate.stages.report import ReportSummary

    for step, summary in summaries.items():
        print(f"{step}: {_short(summary)}")
    code = 0
    for step, summary in summaries.items():
        if isinstance(summary, Skipped):
            continue
        module = importlib.import_module(f"kgcurate.stages.{registry.BY_NAME[step].module}")
        with contextlib.redirect_stdout(io.StringIO()):
            code = max(code, int(module.report(summary, args) or 0))
    report = summaries.get("report")
    if isinstance(report, ReportSummary) and report.html:
        print(f"report: {report.html}")
    return code
