"""One type for input a stage could not use, whatever the stage: where it is, why, a sample.

Pure parsers (WordNet, MetaCLIP, ...) return these; Spark tasks emit the same four columns; one
writer (:func:`kgcurate.lake.record_bad_input`) puts either into ``bad_records``, keyed on
(job, source_file, offset, reason) so a re-run never duplicates them.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_CHARS = 200
KEYS = ("job", "source_file", "offset", "reason")  # bad_records' idempotence key


@dataclass(frozen=True)
class BadInput:
    source_file: str
    offset: int | None  # where in source_file: a byte offset, a line, or a position in a JSON list
    reason: str
    sample: str | None = None  # the first SAMPLE_CHARS characters of what could not be used
