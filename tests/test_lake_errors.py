"""Which Delta failures reach users as 'another run wrote this table' (no Spark needed)."""

from __future__ import annotations

from kgcurate import lake
from kgcurate.errors import ConcurrentRunError


def test_conflicts_are_translated_anywhere() -> None:
    for text in ("ConcurrentAppendException: files were added", "FileAlreadyExistsException: 00000.json"):
        assert isinstance(lake._translate_conflict(RuntimeError(text), "pairs"), ConcurrentRunError)


def test_not_found_is_a_race_only_while_creating_or_opening() -> None:
    exc = RuntimeError("[DELTA_TABLE_NOT_FOUND] Delta table `x` doesn't exist.")
    assert isinstance(lake._translate_conflict(exc, "pairs", creating=True), ConcurrentRunError)
    missing_column = RuntimeError("Column `text2` doesn't exist")
    assert lake._translate_conflict(missing_column, "pairs") is missing_column


def test_version_from_the_delta_log_and_its_fallback_agree(spark, tmp_path, monkeypatch) -> None:
    """The fast DeltaLog answer equals history(1) after every commit, and the fallback gives the same."""
    from delta.tables import DeltaTable

    from kgcurate import tables

    root = str(tmp_path / "lake")
    assert lake.version(spark, root, tables.MATCH_STATE) is None
    df = spark.createDataFrame([("k", "v")], tables.schema(tables.MATCH_STATE))
    seen = []
    for _ in range(3):
        lake.append(spark, root, tables.MATCH_STATE, df)
        history = DeltaTable.forPath(spark, lake.table_path(root, tables.MATCH_STATE)).history(1).first()
        seen.append(lake.version(spark, root, tables.MATCH_STATE))
        assert seen[-1] == history["version"]
    assert seen == sorted(set(seen))  # one new version per commit, never a stale one

    def broken(*_args):
        raise RuntimeError("no such method")

    monkeypatch.setattr(lake, "_log_version", broken)
    assert lake.version(spark, root, tables.MATCH_STATE) == seen[-1]
