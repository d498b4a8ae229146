"""WordNet 3.0 synset lemmas from the database files (``data.noun`` ... ``data.adv``), no NLTK needed.

The format is ``wndb(5)``: after a license header (lines starting with two spaces) each line is
``synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt ...`` where ``w_cnt`` is
two hexadecimal digits, words use ``_`` for spaces, and adjectives may carry a syntactic marker
``(a)``, ``(p)`` or ``(ip)`` glued to the word.

Two ways to make entries (``metadata.wordnet_entries``): ``lemmas`` (the default) takes every lemma of
every synset, spaces for underscores, case kept (``Canis familiaris``, ``domestic dog``, ``Einstein``);
``metaclip`` takes what MetaCLIP's ``build_metadata.py`` takes from NLTK: each synset's name
(``ss.name()``, its first lemma lowercased) cut at its first ``.``, spaces for underscores (``dog``,
``einstein``), one string per synset. Matching is case-sensitive, so the two count differently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kgcurate.bad_input import SAMPLE_CHARS, BadInput
from kgcurate.errors import UserError
from kgcurate.metadata import normalize

POS_FILES: dict[str, str] = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
SS_TYPES = frozenset("nvasr")
DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/local/WordNet-3.0/dict", "/usr/local/share/wordnet")
_MARKER = re.compile(r"\((?:a|p|ip)\)$")
ENTRY_MODES = ("lemmas", "metaclip")


@dataclass
class WordNetLemmas:
    entries: list[str]  # distinct normalized lemmas, sorted (deterministic order)
    synsets: int = 0
    lemmas: int = 0  # lemma occurrences before dedup
    per_file: dict[str, int] = field(default_factory=dict)  # synsets per data file
    bad: list[BadInput] = field(default_factory=list)


def lemma_to_entry(word: str) -> str:
    """``hot_dog`` -> ``hot dog``; ``galore(ip)`` -> ``galore``."""
    return normalize(_MARKER.sub("", word).replace("_", " "))


def synset_name_entry(words: list[str]) -> str:
    """MetaCLIP's entry for a synset: NLTK names it by its first lemma, lowercased (``Canis_familiaris``
    -> ``canis_familiaris.n.01``), and MetaCLIP keeps the name up to its first ``.`` (so ``St._Louis``
    gives ``st``), underscores as spaces."""
    name = _MARKER.sub("", words[0]).lower()
    return normalize(name.split(".", 1)[0].replace("_", " "))


def parse_data_line(line: str) -> list[str]:
    """The lemma words of one synset line, raw (``Canis_familiaris``); ValueError says what is wrong."""
    parts = line.split(" ", 4 + 2 * 255)
    if len(parts) < 6:
        raise ValueError("too few fields for a synset line")
    offset, lex_filenum, ss_type, w_cnt = parts[:4]
    if not (offset.isdigit() and len(offset) == 8):
        raise ValueError("synset_offset is not an 8-digit number")
    if not lex_filenum.isdigit():
        raise ValueError("lex_filenum is not a number")
    if ss_type not in SS_TYPES:
        raise ValueError(f"unknown ss_type {ss_type[:5]!r}")
    try:
        count = int(w_cnt, 16)
    except ValueError:
        raise ValueError("w_cnt is not a hexadecimal number") from None
    if count < 1 or len(parts) < 4 + 2 * count + 1:
        raise ValueError(f"w_cnt {w_cnt} does not fit the line")
    words = parts[4 : 4 + 2 * count : 2]
    lex_ids = parts[5 : 5 + 2 * count : 2]
    if any(not w for w in words) or any(not _is_hex(i) for i in lex_ids):
        raise ValueError("word / lex_id pairs are malformed")
    return words


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def iter_data_lines(data: bytes, source_file: str) -> Iterator[tuple[int, list[str] | BadInput]]:
    """(byte offset, words or BadInput) for every non-header line of one data file."""
    offset = 0
    for raw in data.splitlines(keepends=True):
        here, offset = offset, offset + len(raw)
        body = raw.rstrip(b"\r\n")
        if not body.strip() or body.startswith(b"  "):
            continue  # license header / blank
        try:
            line = body.decode("utf-8")
        except UnicodeDecodeError:
            yield here, BadInput(source_file, here, "not UTF-8", body[:SAMPLE_CHARS].decode("latin-1"))
            continue
        try:
            yield here, parse_data_line(line)
        except ValueError as exc:
            yield here, BadInput(source_file, here, str(exc), line[:SAMPLE_CHARS])


def parse_files(files: Iterable[tuple[str, bytes]], mode: str = "lemmas") -> WordNetLemmas:
    """Distinct entries from (name, content) pairs of data files (``mode``: one of :data:`ENTRY_MODES`,
    see the module's docstring); bad lines collected, never fatal."""
    if mode not in ENTRY_MODES:
        raise UserError(f"metadata.wordnet_entries: {mode!r} is not one of {', '.join(ENTRY_MODES)}")
    seen: set[str] = set()
    out = WordNetLemmas(entries=[])
    for name, data in files:
        synsets = 0
        for _, got in iter_data_lines(data, name):
            if isinstance(got, BadInput):
                out.bad.append(got)
                continue
            synsets += 1
            out.lemmas += len(got)
            for entry in (lemma_to_entry(word) for word in got) if mode == "lemmas" else (synset_name_entry(got),):
                if entry:
                    seen.add(entry)
        out.per_file[name] = synsets
        out.synsets += synsets
    out.entries = sorted(seen)
    return out


def find_dir(configured: str | None) -> str | None:
    """The WordNet directory to use: the configured one, else $WNSEARCHDIR, else a usual install path."""
    if configured:
        return configured
    env = os.environ.get("WNSEARCHDIR")
    candidates = ([env] if env else []) + list(DEFAULT_DIRS)
    for cand in candidates:
        if (Path(cand) / POS_FILES["noun"]).is_file():
            return cand
    return None


def missing_message(where: str | None) -> str:
    where_txt = f" in {where}" if where else " (looked in $WNSEARCHDIR and " + ", ".join(DEFAULT_DIRS) + ")"
    return (f"WordNet data files (data.noun, data.verb, data.adj, data.adv) not found{where_txt}: "
            "install them (apt-get install wordnet-base), pass --wordnet-dir DIR or --no-wordnet to build-metadata "
            "(in a --config file for kgcurate run: metadata.wordnet_dir: DIR or metadata.wordnet: false)")


def checked_dir(directory: str | None, pos: Iterable[str] = tuple(POS_FILES)) -> Path:
    """The local WordNet directory holding the data files of ``pos``; UserError when it or one is missing."""
    found = find_dir(directory)
    if found is None or not Path(found).is_dir():
        raise UserError(missing_message(directory))
    for p in pos:
        if p not in POS_FILES:
            raise UserError(f"unknown WordNet part of speech {p!r}: use some of {', '.join(POS_FILES)}")
        path = Path(found) / POS_FILES[p]
        if not path.is_file():
            raise UserError(missing_message(found))
        try:  # opened here, before Spark starts: an unreadable file is refused at once
            path.open("rb").close()
        except OSError as exc:
            raise UserError(f"cannot read WordNet file {path}: {exc.strerror or exc}: fix its permissions or "
                            "pass another --wordnet-dir") from None
    return Path(found)


def read_dir(directory: str | None, pos: Iterable[str] = tuple(POS_FILES), mode: str = "lemmas") -> WordNetLemmas:
    """Parse a local WordNet directory; UserError when it or one of its data files is missing."""
    found = checked_dir(directory, pos)
    files = []
    for p in pos:
        path = found / POS_FILES[p]
        try:
            files.append((str(path), path.read_bytes()))
        except OSError as exc:  # a permission, an I/O error: the input's fault, said in one line
            raise UserError(f"cannot read WordNet file {path}: {exc.strerror or exc}: fix its permissions or "
                            "pass another --wordnet-dir") from None
    return parse_files(files, mode)
