"""One scheme for run ids, which every stage writes next to its rows (ingest_log, bad_records,
curation_runs, leases): ``<job>-<UTC time>-<8 hex>`` for a run whose output depends on when it ran,
``<job>-<12 hex>`` derived from the parameters and input versions where the output is a function of
them (balance: the same inputs give the same id, so a re-run replaces its own curated partition)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any


def new(job: str, now: datetime | None = None) -> str:
    """A fresh id for a run of ``job``; sorts by start time."""
    now = now or datetime.now(timezone.utc)
    return f"{job}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def derived(job: str, params: Mapping[str, Any], versions: Mapping[str, Any]) -> str:
    """The id of the run ``job`` makes of ``params`` over tables at ``versions``: equal inputs, equal id."""
    blob = json.dumps({"p": params, "v": versions}, sort_keys=True).encode()
    return f"{job}-{hashlib.sha1(blob).hexdigest()[:12]}"
