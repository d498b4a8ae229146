"""What the last completed ``match`` recorded, typed: the table versions that agree with each other
and the metadata they were matched against.

Stored as the ``match_state`` key/value table (strings, one row per field, unchanged on disk); code
reads and writes it only through :class:`MatchState`, so a version is an ``int`` and the case mode a
``bool`` everywhere instead of strings compared with ``str(lowercase)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields


def _int(text: str | None) -> int | None:
    return None if text in (None, "", "None") else int(text)


@dataclass(frozen=True)
class MatchState:
    metadata_version: int | None = None
    metadata_fingerprint: str | None = None
    lowercase: bool = False
    pairs_version: int | None = None
    matches_version: int | None = None
    entry_counts_version: int | None = None
    qid_counts_version: int | None = None
    updated_at: str | None = None  # ISO time of the run's end

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str | None]]) -> MatchState | None:
        """The state in the table's (key, value) rows; None when no match ever recorded one."""
        kv: Mapping[str, str | None] = dict(rows)
        if not kv:
            return None
        return cls(
            metadata_version=_int(kv.get("metadata_version")), metadata_fingerprint=kv.get("metadata_fingerprint"),
            lowercase=kv.get("lowercase") == "True", pairs_version=_int(kv.get("pairs_version")),
            matches_version=_int(kv.get("matches_version")),
            entry_counts_version=_int(kv.get("entry_counts_version")),
            qid_counts_version=_int(kv.get("qid_counts_version")), updated_at=kv.get("updated_at"))

    def to_rows(self) -> list[tuple[str, str | None]]:
        """(key, value) rows as the table has always held them (``"True"``, ``"12"``), sorted by key."""
        return sorted((f.name, None if getattr(self, f.name) is None else str(getattr(self, f.name)))
                      for f in fields(self))

    @property
    def completed(self) -> bool:
        """A run finished and recorded the versions later stages read."""
        return self.matches_version is not None and self.entry_counts_version is not None

    def version_of(self, table: str) -> int | None:
        """The recorded version of ``table`` (pairs, metadata, matches, entry_counts, qid_counts)."""
        return getattr(self, f"{table}_version")
