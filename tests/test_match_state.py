"""match_state, typed: the same key/value rows on disk, ints and bools in code (no Spark)."""

from __future__ import annotations

from kgcurate.match_state import MatchState


def test_rows_on_disk_are_what_they_always_were_and_read_back_typed() -> None:
    state = MatchState(metadata_version=3, metadata_fingerprint="ab12", lowercase=True, pairs_version=7,
                       matches_version=12, entry_counts_version=5, qid_counts_version=None,
                       updated_at="2026-12-03T03:00:00+00:00")
    rows = state.to_rows()
    assert rows == [("entry_counts_version", "5"), ("lowercase", "True"), ("matches_version", "12"),
                    ("metadata_fingerprint", "ab12"), ("metadata_version", "3"), ("pairs_version", "7"),
                    ("qid_counts_version", None), ("updated_at", "2026-12-03T03:00:00+00:00")]
    assert MatchState.from_rows(rows) == state
    assert state.completed and state.version_of("matches") == 12 and state.version_of("qid_counts") is None


def test_no_rows_is_no_state_and_a_partial_one_is_not_completed() -> None:
    assert MatchState.from_rows([]) is None
    legacy = MatchState.from_rows([("lowercase", "False"), ("pairs_version", "None"), ("matches_version", "")])
    assert legacy is not None and not legacy.lowercase and legacy.pairs_version is None and not legacy.completed
