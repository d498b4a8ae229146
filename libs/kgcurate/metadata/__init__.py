"""Metadata entries (the strings captions are matched against), from three sources.

- :mod:`kgcurate.metadata.wordnet`: WordNet 3.0 synset lemmas, parsed from the ``data.*`` files (pure).
- :mod:`kgcurate.metadata.metaclip`: a MetaCLIP ``metadata.json`` list of strings (pure).
- :mod:`kgcurate.metadata.kg`: knowledge-graph names of entity-set members, with guards against risky
  aliases (pure rules plus the Spark joins that apply them at scale).

The pure modules import no Spark, so they are unit-tested fast and reused by benchmarks.
"""

from __future__ import annotations

import re

# One whitespace class, written so Python's ``re`` and Java's regex read it the same way: the Spark
# side (KG names) and the Python side (WordNet, MetaCLIP) then normalize identically. It is exactly
# Python's ``str.isspace`` set (the caption side collapses that set), file/group/record/unit separators
# \x1c-\x1f included: an entry of only those is empty, not a string no caption can hold.
WS_PATTERN = "[\\t\\n\\x0b\\f\\r\\x1c-\\x1f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+"
_WS = re.compile(WS_PATTERN)

SOURCE_WORDNET = "wordnet"
SOURCE_METACLIP = "metaclip"
SOURCE_KG = "kg"
SOURCES = (SOURCE_WORDNET, SOURCE_METACLIP, SOURCE_KG)


def normalize(text: str) -> str:
    """Collapse every whitespace run to one space and trim: the form entries are stored (and matched) in."""
    return _WS.sub(" ", text).strip(" ")


def old_layout_message(lake: str) -> str:
    """One line for a lake whose ``metadata`` predates one-string-one-entry (columns source/qid).

    Its entry ids hashed (source, entry, qid), so its matches and counts cannot be mixed with
    string-keyed ones: the lake is rebuilt, never silently read in both layouts.
    """
    return (f"lake {lake} holds metadata in the old per-(source, entry, qid) layout (columns source/qid, "
            f"ids that hash the source): rebuild it with `kgcurate build-metadata --lake {lake} --replace-all` "
            f"(with your usual sources), then `kgcurate match --lake {lake} --full`")
