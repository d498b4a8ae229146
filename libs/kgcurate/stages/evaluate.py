"""``kgcurate evaluate``: a trained CLIP checkpoint -> zero-shot accuracy and retrieval recall, into
``eval_runs`` and ``eval.json`` next to the checkpoint. No Spark: the lake is read and written with
``deltalake``, the model runs in torch (cpu, or cuda when present).

Which checkpoint: ``--checkpoint FILE --model NAME`` (``--model-config-dir`` for a config outside
open_clip), else the train run ``--train-run-id`` or the newest finished one in ``train_runs``, whose
``experiment_dir/manifest.json`` names the model and its config folder. What on: zero-shot sets
(``digits`` and ``skimage`` are written offline from PyPI packages; any ``DIR/<class>/<image>`` folder,
e.g. ImageNet or iNat) and retrieval sets (webdataset shards, as ``kgcurate download`` writes them).
Rows are keyed by (checkpoint, dataset): a rerun replaces them (kgcurate.evaluate.results).

One evaluation of a checkpoint at a time: the run holds the lease ``evaluate:<checkpoint>`` in the
``leases`` table (kgcurate.leases, the Spark stages' lease written with deltalake) from before the
model loads until its rows are written, so a second run of the same checkpoint fails at once with one
line; evaluations of different checkpoints run side by side (their eval_runs rows are disjoint).
What a dataset could not use (an image that does not decode, a sample without its text, a cut-off
tar) is counted, listed in eval.json and recorded in ``bad_records`` (job ``evaluate``, the run's
eval_run_id, the file or shard, the sample's position in it), once however often the run is repeated.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from kgcurate import lake_rs, leases, paths, run_ids, settings, tables
from kgcurate.bad_input import BadInput
from kgcurate.context import Context
from kgcurate.errors import UserError
from kgcurate.lake_rs import open_table, table_uri
from kgcurate.train.experiment import COMPLETED

JOB = "evaluate"
FINISHED = (COMPLETED,)  # train_runs.status of a run with a usable checkpoint (kgcurate train writes it)
UNREADABLE_LISTED = 20  # unreadable files named in eval.json and the summary, per dataset


@dataclass(frozen=True)
class EvalSet:
    """One dataset to evaluate: its name in eval_runs, its kind and where it is."""

    name: str
    kind: str  # "zeroshot" or "retrieval"
    path: str  # a folder, a glob of shards, or an offline set's name (digits, skimage)
    offline: bool = False


@dataclass(frozen=True)
class Target:
    """The checkpoint to evaluate and where it came from."""

    checkpoint: str
    model: str
    model_config_dir: str | None
    train_run_id: str | None


@dataclass
class DatasetResult:
    dataset: str
    kind: str
    samples: int
    metrics: dict[str, float]
    unreadable: int = 0
    unreadable_examples: list[tuple[str, str]] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)  # every unreadable sample, for bad_records
    same_prompts: list[str] = field(default_factory=list)  # zero-shot classes with identical prompts, described
    empty_classes: list[str] = field(default_factory=list)  # zero-shot class folders without an image


@dataclass
class EvaluateSummary:
    eval_run_id: str
    train_run_id: str | None
    checkpoint: str
    model: str
    device: str
    results: list[DatasetResult]
    rows: int
    table: str
    eval_json: str
    seconds: float
    bad_records: int = 0  # rows this run added to bad_records (a rerun adds none)


# ---------------------------------------------------------------- what to evaluate


def _named(spec: str) -> tuple[str | None, str]:
    name, sep, path = spec.partition("=")
    # NAME=~/x: the path after "=" gets the home folder too (expand_paths sees only a leading ~)
    if sep and name.strip() and "/" not in name:
        return name.strip(), paths.expand_home(path.strip())
    return None, paths.expand_home(spec)


def eval_sets(o: settings.EvaluateOptions) -> list[EvalSet]:
    """The datasets of the options, checked (a missing folder or shard set is one line, before any
    model is loaded); names are unique."""
    from kgcurate.evaluate import folders, offline
    from kgcurate.evaluate.retrieval import shard_files

    sets: list[EvalSet] = []
    for spec in o.datasets:
        if spec == "none":  # retrieval only: --dataset none replaces the default offline sets
            continue
        name, path = _named(str(spec))
        if path in offline.OFFLINE:
            sets.append(EvalSet(name or path, "zeroshot", path, offline=True))
            continue
        if not os.path.isdir(path):
            raise UserError(f"evaluate: dataset folder {path} does not exist: pass a folder laid out as "
                            f"DIR/<class>/<image>, or one of {', '.join(offline.OFFLINE)} for the offline sets")
        folders.check_folder(path)  # no image in it: one line now, not after the model and earlier sets
        sets.append(EvalSet(name or os.path.abspath(path), "zeroshot", os.path.abspath(path)))
    for spec in o.retrieval:
        name, path = _named(str(spec))
        shard_files(path)  # none there: one line now
        sets.append(EvalSet(name or f"retrieval:{os.path.abspath(path)}", "retrieval", path))
    names = [s.name for s in sets]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"evaluate: dataset {dup[0]} given twice: give each set once (NAME=PATH names one)")
    if not sets:
        raise UserError("evaluate: no dataset to evaluate: pass --dataset digits|skimage|DIR or --retrieval SHARDS")
    return sets


def train_target(root: str, train_run_id: str | None) -> Target:
    """The checkpoint of a train run (``train_run_id`` or the newest finished one) from ``train_runs``."""
    from kgcurate.evaluate.manifest import read_manifest

    uri = table_uri(root, tables.TRAIN_RUNS)
    table = open_table(root, tables.TRAIN_RUNS)
    if table is None:
        raise UserError(f"evaluate: no {tables.TRAIN_RUNS} table in lake {root}: run `kgcurate train` first, or "
                        "pass --checkpoint FILE --model NAME")
    runs = table.to_pyarrow_table().to_pylist()
    if train_run_id is not None:
        picked = [r for r in runs if r["train_run_id"] == train_run_id]
        if not picked:
            raise UserError(f"evaluate: no train run {train_run_id!r} in {uri}: see its train_run_id column")
    else:
        picked = sorted((r for r in runs if r.get("status") in FINISHED and r.get("finished_at") is not None),
                        key=lambda r: r["finished_at"])[-1:]
        if not picked:
            raise UserError(f"evaluate: no finished train run in {uri}: run `kgcurate train`, or pass --checkpoint")
    run = picked[0]
    manifest = read_manifest(run.get("experiment_dir"))
    checkpoint = run.get("checkpoint") or manifest.get("checkpoint")
    model = run.get("model") or manifest.get("model")
    if not checkpoint or not model:
        raise UserError(f"evaluate: train run {run['train_run_id']} records no checkpoint or model "
                        f"(status {run.get('status')}): evaluate a finished run, or pass --checkpoint and --model")
    return Target(checkpoint, model, manifest.get("model_config_dir"), run["train_run_id"])


def target(cfg: dict[str, Any], o: settings.EvaluateOptions) -> Target:
    if o.checkpoint:
        if not o.model:
            raise UserError("evaluate: --checkpoint needs --model (the open_clip model name it was trained as)")
        if not os.path.isfile(o.checkpoint):
            raise UserError(f"evaluate: checkpoint {o.checkpoint} does not exist: pass an open_clip checkpoint file")
        return Target(os.path.abspath(o.checkpoint), o.model, o.model_config_dir, o.train_run_id)
    t = train_target(str(cfg.get("lake") or ""), o.train_run_id)
    return Target(t.checkpoint, o.model or t.model, o.model_config_dir or t.model_config_dir, t.train_run_id)


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """Every check that needs no model: the datasets and the checkpoint, one line each."""
    o = settings.section(cfg, settings.EvaluateOptions)
    check_ks(o)
    eval_sets(o)
    target(cfg, o)
    return {}


def check_ks(o: settings.EvaluateOptions) -> None:
    """``top_k`` and ``recall_k`` from YAML (lists, the config loader checks): non-empty and of positive
    integers, or one line now (an empty list failed after the model was loaded; a 0 wrote a meaningless
    ``top0`` row)."""
    for key, value in (("top_k", o.top_k), ("recall_k", o.recall_k)):
        if not value or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in value):
            raise UserError(f"evaluate: config key evaluate.{key} is {value!r}: give a non-empty list of positive "
                            "integers, e.g. [1, 5]")


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- the run


def evaluate_set(m: Any, s: EvalSet, o: settings.EvaluateOptions, scratch: str) -> DatasetResult:
    from kgcurate.evaluate import folders, offline, retrieval, zeroshot

    if s.kind == "retrieval":
        r = retrieval.evaluate(m, s.path, o.recall_k, o.batch_size, o.retrieval_limit)
        return DatasetResult(s.name, s.kind, r.samples, r.recall, len(r.unreadable), r.unreadable[:UNREADABLE_LISTED],
                             r.bad)
    path = offline.write_offline(s.path, os.path.join(scratch, s.path), o.digits_per_class) if s.offline else s.path
    folder = folders.read_folder(path)
    z = zeroshot.evaluate(m, folder, o.templates, o.top_k, o.batch_size, o.workers)
    return DatasetResult(s.name, s.kind, z.samples, {f"top{k}": v for k, v in z.accuracy.items()},
                         len(z.unreadable), z.unreadable[:UNREADABLE_LISTED], z.bad,
                         zeroshot.describe_same(folder, z.same_prompts), folder.empty_classes)


def lease_scope(checkpoint: str) -> str:
    """The lease of an evaluation: one run per checkpoint (see the module docstring)."""
    return f"{JOB}:{checkpoint}"


def execute(ctx: Context, cfg: dict[str, Any]) -> EvaluateSummary:
    o = settings.section(cfg, settings.EvaluateOptions)
    sets = eval_sets(o)
    t = target(cfg, o)
    with leases.held(ctx.root, lease_scope(t.checkpoint)):
        return evaluate_target(ctx, o, sets, t)


def evaluate_target(ctx: Context, o: settings.EvaluateOptions, sets: list[EvalSet], t: Target) -> EvaluateSummary:
    """Load the checkpoint, score every set, record the bad input, then the rows and eval.json."""
    from kgcurate.evaluate import model as model_io
    from kgcurate.evaluate.results import EVAL_JSON, EvalRow, update_eval_json, write_rows

    t0 = time.monotonic()
    device = model_io.pick_device(o.device)
    m = model_io.load(t.model, t.checkpoint, t.model_config_dir, device)
    params = {"model": t.model, "checkpoint": t.checkpoint, "sets": [asdict(s) for s in sets],
              "templates": o.templates, "top_k": o.top_k, "recall_k": o.recall_k,
              "retrieval_limit": o.retrieval_limit, "digits_per_class": o.digits_per_class}
    eval_run_id = run_ids.derived(JOB, params, {"checkpoint_sha256": file_digest(t.checkpoint)})
    results = []
    with tempfile.TemporaryDirectory(prefix="kgcurate-eval-") as scratch:
        for s in sets:
            ctx.log.info("%s: %s (%s) with %s on %s", JOB, s.name, s.kind, t.model, device)
            results.append(evaluate_set(m, s, o, scratch))
            if empty := results[-1].empty_classes:
                more = ", ..." if len(empty) > 10 else ""
                ctx.log.warning("%s: %s: %d class folder(s) without an image, kept as classes the model can "
                                "predict: %s%s", JOB, s.name, len(empty), ", ".join(empty[:10]), more)
            if results[-1].same_prompts:
                ctx.log.warning("%s: %s: classes with identical prompts, hence identical logits: %s; the first "
                                "of each takes every tie (open_clip's rule), the others are never top-1: give them "
                                "distinct names in the folder's classnames.txt", JOB, s.name,
                                "; ".join(results[-1].same_prompts))
    now = datetime.now(timezone.utc)
    rows = [EvalRow(eval_run_id, t.train_run_id, t.checkpoint, t.model, r.dataset, metric,
                    None if value != value else value, r.samples, now)  # NaN (nothing scored) as null
            for r in results for metric, value in r.metrics.items()]
    bad = [b for r in results for b in r.bad]
    recorded = lake_rs.record_bad_input(ctx.root, JOB, eval_run_id, bad)
    if bad:
        ctx.log.warning("%s: %d unreadable samples in %s (%d new rows in %s)", JOB, len(bad),
                        ", ".join(sorted({r.dataset for r in results if r.bad})), recorded, tables.BAD_RECORDS)
    uri = table_uri(ctx.root, tables.EVAL_RUNS)
    write_rows(uri, rows)
    head = {"checkpoint": t.checkpoint, "model": t.model, "train_run_id": t.train_run_id, "eval_run_id": eval_run_id,
            "created_at": now.isoformat(timespec="seconds")}
    per_set = {r.dataset: {"kind": r.kind, "samples": r.samples, "metrics": r.metrics, "unreadable": r.unreadable,
                           "unreadable_examples": r.unreadable_examples, "eval_run_id": eval_run_id} for r in results}
    eval_json = update_eval_json(os.path.join(os.path.dirname(t.checkpoint), EVAL_JSON), head, per_set)
    return EvaluateSummary(eval_run_id, t.train_run_id, t.checkpoint, t.model, device, results, len(rows), uri,
                           eval_json, round(time.monotonic() - t0, 2), recorded)


def report(s: EvaluateSummary, args: argparse.Namespace) -> int:
    print(f"{JOB} {s.eval_run_id}: {s.model} {s.checkpoint} on {s.device}"
          f"{f' (train run {s.train_run_id})' if s.train_run_id else ''}: {s.rows} rows -> {s.table}, {s.eval_json} "
          f"in {s.seconds}s")
    for r in s.results:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in r.metrics.items())
        print(f"  {r.dataset} ({r.kind}, {r.samples:,} samples): {metrics or 'nothing scored'}")
        if r.unreadable:
            first = r.unreadable_examples[0] if r.unreadable_examples else ("?", "?")
            print(f"kgcurate: warning: {r.dataset}: {r.unreadable:,} unreadable samples not scored (first: {first[0]}: "
                  f"{first[1]}); listed in {s.eval_json} and table {tables.BAD_RECORDS}", file=sys.stderr)
    return 0
