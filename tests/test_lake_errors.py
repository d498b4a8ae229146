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


def test_a_table_whose_creator_was_killed_before_its_first_commit_is_created_again(spark, tmp_path) -> None:
    """A SIGKILL between ``mkdir _delta_log`` and the first commit left a folder Delta would neither
    read nor create over, so every later run of that stage failed. That folder is cleared, while a
    log with a commit is never touched and a folder of bare files is refused in one line."""
    import pytest

    from kgcurate import tables
    from kgcurate.errors import UserError

    root = tmp_path / "lake"
    log = root / tables.CURATED / "_delta_log"
    log.mkdir(parents=True)
    (log / ".00000000000000000000.json.4f1c.tmp").write_text('{"commitInfo"')
    lake.ensure(spark, str(root), tables.CURATED)
    assert lake.version(spark, str(root), tables.CURATED) == 0
    assert lake.read(spark, str(root), tables.CURATED).columns == tables.schema(tables.CURATED).fieldNames()

    assert not lake._clear_uncommitted_log(spark, str(root / tables.CURATED))
    assert (log / "00000000000000000000.json").exists()

    bare = root / tables.PAIRS
    (bare / "_delta_log").mkdir(parents=True)
    (bare / "part-00000.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError, match="holds files but no Delta table"):
        lake.ensure(spark, str(root), tables.PAIRS)
