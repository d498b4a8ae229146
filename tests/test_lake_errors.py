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
