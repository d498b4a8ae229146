"""One type for input a stage could not use, whatever the stage: where it is, why, a sample.

Pure parsers (WordNet, MetaCLIP, ...) return these; Spark tasks emit the same four columns; one
writer (:func:`kgcurate.lake.record_bad_input`) puts either into ``bad_records``, keyed on
(job, source_file, offset, reason) so a re-run never duplicates them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SAMPLE_CHARS = 200
KEYS = ("job", "source_file", "offset", "reason")  # bad_records' idempotence key
# reason of a webdataset shard that cannot be read on (train, evaluate): offset = samples read before the damage
SHARD_DAMAGED = "shard unreadable (cut off or damaged tar)"


@dataclass(frozen=True)
class BadInput:
    source_file: str
    offset: int | None  # where in source_file: a byte offset, a line, or a position in a JSON list
    reason: str
    sample: str | None = None  # the first SAMPLE_CHARS characters of what could not be used


def shard_error(exc: BaseException) -> tuple[str, str]:
    """(the shard, why) of an error webdataset hands its ``handler``: it adds the shard's URL to the
    exception's args (or the tar names it); why is one line without the stream's repr."""
    named = re.search(r"name='([^']+)'", str(exc))
    where = next((a for a in exc.args[1:] if isinstance(a, str)), named.group(1) if named else "a shard")
    why = re.sub(r" @ <.*", "", str(exc.args[0] if exc.args else exc))
    return where, f"{type(exc).__name__}: {why[:SAMPLE_CHARS]}"
