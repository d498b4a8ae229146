"""MetaCLIP substring matching, pure Python (no Spark): spacing, entry wrapping, an Aho-Corasick matcher.

Semantics (design.md, MetaCLIP 2 ``curation/substr_matching.py``): a caption becomes
``" " + text + " "`` with each of ``, . ; : ? ! ` `` padded by a space on both sides and tab/CR/LF
turned into spaces; an entry gets a space before (after) it unless its first (last) character is
CJK-like or punctuation, so ``"狗"`` or ``"C++"`` can match inside unspaced text. A caption matches
an entry when the wrapped entry is a substring of the spaced caption; every occurrence counts,
overlapping ones too, and a caption's result is the *set* of entry ids.

One automaton serves all entries: several entries may share one wrapped string (a WordNet lemma and
a KG name of another qid), so the automaton maps a string to a group index and the groups hold the
entry ids (CSR arrays). Matching a batch returns flat numpy arrays, ready for Arrow.
"""

from __future__ import annotations

import logging
import os
import pickle
import string
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import ahocorasick
import numpy as np

log = logging.getLogger("kgcurate.matching")

PUNCTS_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARS_TO_SPACE = ("\t", "\n", "\r")
# (character, replacement) in MetaCLIP's order: punctuation first, then tab/CR/LF.
_SPACING = tuple((p, f" {p} ") for p in PUNCTS_TO_WRAP) + tuple((c, " ") for c in CHARS_TO_SPACE)

# Full-width / CJK punctuation MetaCLIP 2 treats as punctuation besides string.punctuation.
EXTRA_PUNCTUATION = frozenset("，。、；：？！“”‘’（）【】《》〈〉「」『』～—")
_PUNCTUATION = frozenset(string.punctuation) | EXTRA_PUNCTUATION
# Scripts written without spaces between words (inclusive code point ranges).
NO_SPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Burmese
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2EFF),  # CJK radicals supplement
    (0x2F00, 0x2FDF),  # Kangxi radicals
    (0x2FF0, 0x2FFF),  # ideographic description characters
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2A6DF),  # CJK extension B
    (0x2A700, 0x2EBEF),  # CJK extensions C-F
    (0x2EBF0, 0x2EE5F),  # CJK extension I
    (0x2F800, 0x2FA1F),  # CJK compatibility ideographs supplement
    (0x30000, 0x323AF),  # CJK extensions G-H
)


def spacing(text: str) -> str:
    """The caption as MetaCLIP matches it: padded, punctuation spaced, tab/CR/LF as spaces.

    A chain of ``str.replace`` (each a fast C scan, skipped when the character is absent) beats one
    ``str.translate`` with multi-character replacements on caption-sized strings.
    """
    s = f" {text} "
    for char, spaced in _SPACING:
        if char in s:
            s = s.replace(char, spaced)
    return s


def is_cjk_or_punct(char: str) -> bool:
    """True when no space should be added next to ``char`` in a wrapped entry."""
    if char in _PUNCTUATION:
        return True
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in NO_SPACE_RANGES)


def wrap_entry(entry: str) -> str:
    """``" entry "``, without the space on a side whose end character is CJK-like or punctuation."""
    if not entry:
        return entry
    left = "" if is_cjk_or_punct(entry[0]) else " "
    right = "" if is_cjk_or_punct(entry[-1]) else " "
    return f"{left}{entry}{right}"


def entry_problem(entry: str | None) -> str | None:
    """Why an entry cannot be matched (None when it can): an empty entry would match every caption."""
    if entry is None or not entry.strip():
        return "empty or whitespace-only entry"
    return None


def build_automaton(keys: Iterable[str]) -> ahocorasick.Automaton:
    """An automaton mapping the i-th key to i, its trie nodes laid out in traversal order.

    pyahocorasick allocates a node when a word first reaches it, so one node's children lie scattered
    over the heap and matching is bound by cache misses. Saving the automaton and loading it again
    allocates the nodes one after another in the order the file walks the trie: up to ~1.25x faster
    matching with 500k entries (docs/curation.md) for ~3 s once per worker. Through a temporary
    file, not a pickle round trip (whose buffers stayed in the heap: 402 instead of 205 MiB per
    worker at 500k entries); the built automaton is dropped before the load, so only one is in memory at a time.
    When the file cannot be written, the automaton is used as built.
    """
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for idx, key in enumerate(keys):
        automaton.add_word(key, idx)
    if len(automaton) == 0:
        return automaton
    automaton.make_automaton()
    with tempfile.TemporaryDirectory(prefix="kgcurate-automaton-") as tmp:
        path = os.path.join(tmp, "automaton")
        try:
            automaton.save(path)  # STORE_INTS: values are stored as they are, no serializer
        except OSError as exc:
            log.warning("automaton used as built, not laid out again (%s: %s)", type(exc).__name__, exc)
            return automaton
        del automaton
        return ahocorasick.load(path, pickle.loads)


@dataclass
class Matcher:
    """An Aho-Corasick automaton over wrapped entries; one per Python worker, reused for every caption."""

    lowercase: bool = False
    automaton: ahocorasick.Automaton = field(repr=False, default=None)  # type: ignore[assignment]
    group_offsets: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    group_ids: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    single: bool = True  # every wrapped string has exactly one entry id (fast path)
    n_entries: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def build(cls, entry_ids: Sequence[int] | np.ndarray, entries: Sequence[str], lowercase: bool = False) -> Matcher:
        """Group entries by wrapped string and build the automaton (entries that cannot match are skipped)."""
        groups: dict[str, list[int]] = {}
        skipped: list[tuple[int, str]] = []
        seen: set[int] = set()
        for eid, entry in zip(entry_ids, entries, strict=True):
            eid = int(eid)
            problem = entry_problem(entry)
            if problem is not None:
                skipped.append((eid, problem))
                continue
            if eid in seen:  # the same entry listed twice must not count twice
                continue
            seen.add(eid)
            key = wrap_entry(entry.lower() if lowercase else entry)
            groups.setdefault(key, []).append(eid)
        automaton = build_automaton(groups)
        sizes = np.fromiter((len(ids) for ids in groups.values()), dtype=np.int64, count=len(groups))
        flat = [eid for ids in groups.values() for eid in ids]
        offsets = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return cls(
            lowercase=lowercase,
            automaton=automaton,
            group_offsets=offsets,
            group_ids=np.asarray(flat, dtype=np.int64),
            single=bool(len(groups) == 0 or sizes.max() == 1),
            n_entries=len(seen),
            skipped=skipped,
        )

    def match(self, text: str) -> set[int]:
        """The set of entry ids whose wrapped entry occurs in ``text`` (one caption, for callers and tests)."""
        if self.automaton is None or len(self.group_offsets) <= 1:
            return set()
        spaced = spacing(text.lower() if self.lowercase else text)
        groups = {g for _, g in self.automaton.iter(spaced)}
        out: set[int] = set()
        for g in groups:
            out.update(int(x) for x in self.group_ids[self.group_offsets[g]:self.group_offsets[g + 1]])
        return out

    def match_batch(self, texts: Iterable[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Match many captions; returns (row index per match, entry id per match), both int64.

        The hot loop only collects automaton group indices per caption; expanding groups to entry ids
        and repeating row indices is vectorised numpy. A null caption matches nothing.
        """
        empty = np.zeros(0, dtype=np.int64)
        if self.automaton is None or len(self.group_offsets) <= 1:
            return empty, empty
        it = self.automaton.iter
        value = itemgetter(1)  # automaton.iter yields (end index, group index)
        lower = self.lowercase
        flat: list[int] = []
        lengths: list[int] = []
        extend, append = flat.extend, lengths.append
        for text in texts:
            if not text:
                append(0)
                continue
            if lower:
                text = text.lower()
            s = f" {text} "  # spacing(), inlined: a call per caption costs a few % of this loop
            for char, spaced in _SPACING:
                if char in s:
                    s = s.replace(char, spaced)
            found = set(map(value, it(s)))  # C-level: ~6% faster than {g for _, g in it(s)}
            extend(found)
            append(len(found))
        groups = np.asarray(flat, dtype=np.int64)
        counts = np.asarray(lengths, dtype=np.int64)
        rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        if self.single:
            return rows, self.group_ids[groups] if len(groups) else empty
        starts = self.group_offsets[groups]
        sizes = self.group_offsets[groups + 1] - starts
        rows = np.repeat(rows, sizes)
        # position of each output inside its group: 0..size-1, then index the CSR array
        total = int(sizes.sum())
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return rows, self.group_ids[np.repeat(starts, sizes) + within]


def reference_match(text: str, entries: Iterable[tuple[int, str]], lowercase: bool = False) -> set[int]:
    """MetaCLIP's plain loop (``wrapped in spaced_text`` per entry): slow, for tests and the baseline."""
    spaced = spacing(text.lower() if lowercase else text)
    out: set[int] = set()
    for eid, entry in entries:
        if entry_problem(entry) is None and wrap_entry(entry.lower() if lowercase else entry) in spaced:
            out.add(int(eid))
    return out


# Executor-side cache: Spark reuses Python workers (spark.python.worker.reuse), so a module global
# outlives tasks; the automaton is built once per worker and entry set, not per task or row.
_CACHE: dict[object, Matcher] = {}


def cached_matcher(key: object, load: Callable[[], tuple[Sequence[int], Sequence[str], bool]]) -> Matcher:
    """The matcher for ``key`` (entry-set fingerprint + options), building it from ``load()`` on a miss."""
    matcher = _CACHE.get(key)
    if matcher is None:
        ids, entries, lowercase = load()
        _CACHE.clear()  # one entry set at a time: an old automaton is dead weight
        matcher = Matcher.build(ids, entries, lowercase)
        _CACHE[key] = matcher
    return matcher


def cache_size() -> int:
    return len(_CACHE)
