"""Run ids: one scheme for every stage (no Spark)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from kgcurate import run_ids


def test_a_new_id_names_the_job_and_sorts_by_start_time() -> None:
    early = run_ids.new("ingest-wat", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    late = run_ids.new("ingest-wat", datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))
    assert re.fullmatch(r"ingest-wat-20260102T030405-[0-9a-f]{8}", early)
    assert early < late and run_ids.new("x") != run_ids.new("x")


def test_a_derived_id_is_a_function_of_parameters_and_versions() -> None:
    params = {"t": 20.0, "target_size": None, "tail_share": None, "seed": 0, "per_qid": False}
    versions = {"pairs": 3, "matches": 2}
    # pinned: curated runs already in lakes keep their ids (a re-run replaces its own partition)
    assert run_ids.derived("balance", params, versions) == "balance-60df680224b3"
    assert run_ids.derived("balance", dict(reversed(params.items())), versions) == "balance-60df680224b3"
    assert run_ids.derived("balance", params, {**versions, "pairs": 4}) != "balance-60df680224b3"
