"""Evaluation results as rows of ``eval_runs`` (written with ``deltalake``, no Spark) and as
``eval.json`` next to the checkpoint.

Idempotent: one Delta commit replaces the rows of this checkpoint for the datasets evaluated now
(a predicate overwrite) and appends the new ones, so a rerun never duplicates a row and a failed run
leaves the table as it was. ``eval.json`` keeps the other datasets' entries and is replaced whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kgcurate import lease_rules, tables
from kgcurate.errors import UserError
from kgcurate.lake_rs import sql_string, storage_options

EVAL_JSON = "eval.json"


@dataclass(frozen=True)
class EvalRow:
    eval_run_id: str
    train_run_id: str | None
    checkpoint: str
    model: str
    dataset: str
    metric: str
    value: float | None
    samples: int
    created_at: datetime


def replace_predicate(checkpoint: str, datasets: Iterable[str]) -> str:
    names = ", ".join(sql_string(d) for d in sorted(set(datasets)))
    return f"checkpoint = {sql_string(checkpoint)} AND dataset IN ({names})"


def write_rows(table_uri: str, rows: Sequence[EvalRow], tries: int = 5) -> None:
    """Replace this checkpoint's rows for the datasets of ``rows`` with ``rows``, in one commit.

    A commit that lost to another evaluation's (another checkpoint: the stage's lease keeps a second run
    of this one out) is made again on the new table version: the predicate overwrite gives the same
    result whenever it lands."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError, TableNotFoundError

    if not rows:
        return
    schema = tables.arrow_schema(tables.EVAL_RUNS)
    data = pa.Table.from_pylist([r.__dict__ for r in rows], schema=schema)
    checkpoints = {r.checkpoint for r in rows}
    if len(checkpoints) != 1:
        raise ValueError("one checkpoint per write")
    predicate = replace_predicate(checkpoints.pop(), [r.dataset for r in rows])
    opts = storage_options(table_uri)
    lease_rules.check_not_lost()
    for attempt in range(tries):
        try:
            try:
                DeltaTable(table_uri, storage_options=opts)
            except TableNotFoundError:
                # a concurrent first writer: the commit conflicts
                write_deltalake(table_uri, data, mode="append", storage_options=opts)
                return
            write_deltalake(table_uri, data, mode="overwrite", predicate=predicate, storage_options=opts)
            return
        except CommitFailedError as exc:
            if attempt == tries - 1:
                raise UserError(f"evaluate: other runs kept changing {table_uri} ({str(exc)[:120]}); nothing was "
                                "written: re-run the evaluation") from None


def read_rows(table_uri: str) -> list[dict[str, Any]]:
    """Every row of ``eval_runs`` (small: a few rows per dataset and checkpoint)."""
    from deltalake import DeltaTable

    return DeltaTable(table_uri, storage_options=storage_options(table_uri)).to_pyarrow_table().to_pylist()


def update_eval_json(path: str, head: Mapping[str, Any], datasets: Mapping[str, Any]) -> str:
    """Write ``path``: ``head`` (checkpoint, model, run ids) and ``datasets`` over the datasets an
    earlier evaluation of the same checkpoint recorded there. The file is per folder and every
    ``epoch_N.pt`` of a run shares one: an earlier file of another checkpoint is replaced, not merged,
    so no dataset's numbers ever sit under a checkpoint that did not produce them."""
    from kgcurate.download.shards import write_file_atomically

    earlier: dict[str, Any] = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("checkpoint") == head.get("checkpoint"):
                earlier = doc.get("datasets") or {}
        except (OSError, ValueError, AttributeError):
            earlier = {}  # unreadable: rewritten whole below
    doc = {**head, "datasets": {**earlier, **datasets}}
    blob = (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()
    write_file_atomically(path, lambda f: f.write(blob))
    return path
