"""A stage's note on its own Delta commit: which run made it, from what (its inputs record).

Skip-if-unchanged for a stage whose inputs have no stable name (a weekly dump is always
``latest-all.json.bz2``; WordNet lemmas and entity-set specs are not files in any log): the stage
writes ``{key: {"run_id": ..., **record}}`` as the commit's ``userMetadata``
(:func:`kgcurate.lake.commit_note`), and a later run that computes an equal record finds that run
(:func:`kgcurate.lake.last_data_note`) instead of redoing it. Pure JSON in and out: tested without Spark.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as it reads back from a note (tuples become lists), so the two compare equal."""
    return json.loads(json.dumps(record, sort_keys=True))


def write(key: str, run_id: str, record: Mapping[str, Any]) -> str:
    """The note of run ``run_id``, made from ``record``, under the stage's ``key``."""
    return json.dumps({key: {"run_id": run_id, **record}}, sort_keys=True)


def read(note: str | None, key: str) -> tuple[str, dict[str, Any]] | None:
    """(run_id, record) of the stage's note; None for no note or another writer's (another stage,
    an older kgcurate, a hand-made commit)."""
    try:
        noted = json.loads(note or "")[key]
        run_id = noted.pop("run_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (run_id, noted) if isinstance(run_id, str) else None


def digest(items: list[str]) -> str:
    """A short fingerprint of a list of strings (order counts): entries hashed into a note rather
    than copied (MetaCLIP's list is 500k strings)."""
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()[:32]
