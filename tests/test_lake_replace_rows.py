"""lake.replace_rows: one MERGE that makes a chosen set of target rows equal a frame, and no commit when
they already are."""

from __future__ import annotations

import pytest

from kgcurate import lake, tables

pytestmark = pytest.mark.spark

KEYS = ("pair_id", "text", "text_source", "qid")
SCHEMA = "pair_id long, text string, text_source string, qid string, language string"


def table_rows(spark, root: str) -> set[tuple]:
    return {tuple(r) for r in lake.read(spark, root, tables.PAIR_TEXTS).select(*KEYS, "language").collect()}


def test_replace_rows_inserts_deletes_updates_only_the_given_set_and_is_a_no_op_again(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    before = {(1, "a dog", "alt", None, None), (1, "Canis", "kg_label", "Q1", "en"),
              (1, "wolf", "kg_label", "Q2", "en"), (2, "a cat", "alt", None, None)}
    lake.append(spark, root, tables.PAIR_TEXTS, spark.createDataFrame(sorted(before, key=str), SCHEMA))
    # pair 1 again: "a dog" unchanged, "Canis" now with no language, "wolf" gone, "hound" new
    want_1 = {(1, "a dog", "alt", None, None), (1, "Canis", "kg_label", "Q1", None),
              (1, "hound", "kg_label", "Q3", "en")}

    def replace() -> dict[str, int]:
        existing = lake.read(spark, root, tables.PAIR_TEXTS).where("pair_id = 1")
        rows = spark.createDataFrame(sorted(want_1, key=str), SCHEMA)
        return lake.replace_rows(spark, root, tables.PAIR_TEXTS, rows, existing, KEYS, update_columns=["language"])

    v0 = lake.version(spark, root, tables.PAIR_TEXTS)
    got = replace()
    assert (got["numTargetRowsInserted"], got["numTargetRowsDeleted"], got["numTargetRowsUpdated"]) == (1, 1, 1)
    assert table_rows(spark, root) == want_1 | {(2, "a cat", "alt", None, None)}  # pair 2 is not in the set
    v1 = lake.version(spark, root, tables.PAIR_TEXTS)
    assert v1 == v0 + 1  # one commit
    # the same call again: every row is equal already, so nothing reaches the MERGE and no version is made
    again = replace()
    assert not any(again.values())
    assert lake.version(spark, root, tables.PAIR_TEXTS) == v1
    assert table_rows(spark, root) == want_1 | {(2, "a cat", "alt", None, None)}
