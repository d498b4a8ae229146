"""A MetaCLIP ``metadata.json``: one JSON list of strings (the released file has ~500k entries).

The file is an input, not crawl-sized data, so it is parsed whole on the driver. A file that is not
JSON, or not a list, is unusable and raises :class:`UserError`; a single bad item (not a string, or
empty after whitespace normalization) is reported as a bad record with its list index and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kgcurate.bad_input import SAMPLE_CHARS, BadInput
from kgcurate.errors import UserError
from kgcurate.metadata import normalize


@dataclass
class MetaclipEntries:
    entries: list[str]  # distinct normalized entries, in first-seen order
    items: int = 0
    duplicates: int = 0
    bad: list[BadInput] = field(default_factory=list)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json_list(data: bytes, source_file: str) -> list[Any]:
    """The file's JSON list; UserError (one line) when it is not one."""
    if data.startswith(b"\xef\xbb\xbf"):  # a byte order mark (editors on Windows write one): not JSON, not content
        data = data[3:]
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"MetaCLIP metadata {source_file} is not valid JSON ({_one_line(str(exc))[:120]}): "
                        "pass a metadata.json holding a JSON list of strings") from None
    if not isinstance(items, list):
        raise UserError(f"MetaCLIP metadata {source_file} holds a JSON {type(items).__name__}, not a list: "
                        "pass a metadata.json holding a JSON list of strings")
    return items


def parse_bytes(data: bytes, source_file: str) -> MetaclipEntries:
    """Entries from the file's bytes; UserError (one line) when it is not a JSON list."""
    items = _json_list(data, source_file)
    out = MetaclipEntries(entries=[], items=len(items))
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, str):
            sample = orjson.dumps(item).decode("utf-8", "replace")[:SAMPLE_CHARS]
            out.bad.append(BadInput(source_file, index, f"item is a JSON {type(item).__name__}, not a string", sample))
            continue
        entry = normalize(item)
        if not entry:
            reason = "empty entry after whitespace normalization"
            out.bad.append(BadInput(source_file, index, reason, item[:SAMPLE_CHARS]))
        elif entry in seen:
            out.duplicates += 1
        else:
            seen.add(entry)
            out.entries.append(entry)
    return out


def _local_bytes(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"MetaCLIP metadata file not found: {path} (pass an existing metadata.json "
                        "to --metaclip-metadata, or leave the flag out)")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read MetaCLIP metadata {path}: {exc.strerror}") from None
    return data


def read_file(path: str) -> MetaclipEntries:
    """Parse a local file; UserError when it cannot be read."""
    return parse_bytes(_local_bytes(path), path)


def check_file(path: str) -> None:
    """The checks :func:`read_file` makes of the whole file (there, readable, a JSON list), for
    build-metadata to run before Spark starts: a bad file was refused only after the JVM was up."""
    _json_list(_local_bytes(path), path)
