"""Wikidata truthy N-Triples (``latest-truthy.nt(.bz2)``) lines -> per-entity facts. Pure Python.

A line is one triple; an entity's row needs all of its triples, so this module only turns lines
into small *facts* ``(subject, kind, value, rank)`` and the Spark side groups them by subject.
Mapping (prefixes as in Wikidata's RDF dump format, mediawiki.org/wiki/Wikibase/Indexing/RDF_Dump_Format):

* ``wd:Q rdfs:label / schema:description / skos:altLabel "text"@lang`` -> label / description /
  alias, kept when ``lang`` is configured (or ``mul``); rank = the language's priority.
* ``wd:Q wdt:P31 / P279 / P171 wd:Q'`` -> instance_of / subclass_of / parent_taxon. The truthy
  dump holds only best-rank statements, so no rank logic is needed here. ``somevalue`` objects
  (blank nodes or ``.well-known/genid`` IRIs) are skipped; ``novalue`` is ``a wdno:P`` (ignored).
* ``wdt:P18`` (any image IRI) -> has_image; ``wdt:P225 "name"`` -> taxon_name;
  ``wdt:P1843 "name"@lang`` -> common name.
* ``wd:Q a wikibase:Item`` (both dump flavours write it for every item) -> an ``item`` fact, so an
  item with none of the facts above still gets its (empty) row, as the JSON reader gives it.
* sitelinks: ``wikibase:sitelinks`` sits on the entity's *data node*
  (``<https://www.wikidata.org/wiki/Special:EntityData/Q42>``), which is ``schema:about`` the
  item; so we emit ``about`` facts (node -> qid) and ``sitelinks`` facts (node -> count) and
  Spark joins them on the node (sitelink article IRIs are ``schema:about`` the item too; they
  simply find no count to join). The truthy dump (``latest-truthy.nt``) carries no such page
  properties, only ``latest-all.nt`` does: an entity without a count gets ``sitelinks`` null
  (unknown), not 0, so a sitelinks filter can tell "none" from "not in this dump".

Two parsers: rdflib's N-Triples parser (exact, any valid line) and a fast path for the common
line shape without backslash escapes (then the text between quotes *is* the value, exactly). A
line the fast path does not recognise goes to rdflib, so escapes, odd spacing and datatypes are
always decoded by the real parser; a line rdflib rejects is a bad record. So is a line that is not
UTF-8, an escape that decodes to a lone surrogate (``\\ud800``: Arrow cannot write it) and a
sitelinks count that is not ASCII digits within the int column: facts are always Arrow-safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kgcurate.wikidata import (
    MAX_SITELINKS,
    MUL,
    P_COMMON_NAME,
    P_IMAGE,
    P_INSTANCE_OF,
    P_PARENT_TAXON,
    P_SUBCLASS_OF,
    P_TAXON_NAME,
    is_ascii_digits,
    is_item_id,
    is_utf8,
    language_order,
    rdf_language,
)

WD = "http://www.wikidata.org/entity/"
WDT = "http://www.wikidata.org/prop/direct/"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
SKOS_ALT = "http://www.w3.org/2004/02/skos/core#altLabel"
SCHEMA_DESCRIPTION = "http://schema.org/description"
SCHEMA_ABOUT = "http://schema.org/about"
WIKIBASE_SITELINKS = "http://wikiba.se/ontology#sitelinks"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
WIKIBASE_ITEM = "http://wikiba.se/ontology#Item"
# The types Wikibase gives the other entities (wd:P31 a wikibase:Property; a lexeme is an ontolex:LexicalEntry):
# one skipped non-item each, as the JSON reader counts one per record, not one per triple about it.
NON_ITEM_TYPES = frozenset({"http://wikiba.se/ontology#Property", "http://www.w3.org/ns/lemon/ontolex#LexicalEntry"})
_ITEM_OBJECT = f"<{WIKIBASE_ITEM}>"
_NON_ITEM_OBJECTS = frozenset(f"<{t}>" for t in NON_ITEM_TYPES)
GENID = "/.well-known/genid/"

# predicate IRI -> fact kind
TEXT_PREDICATES = {RDFS_LABEL: "label", SCHEMA_DESCRIPTION: "description", SKOS_ALT: "alias"}
ITEM_PREDICATES = {WDT + p: p for p in (P_INSTANCE_OF, P_SUBCLASS_OF, P_PARENT_TAXON)}
KEPT_PREDICATES: dict[str, str] = {
    **TEXT_PREDICATES,
    **ITEM_PREDICATES,
    WDT + P_IMAGE: P_IMAGE,
    WDT + P_TAXON_NAME: P_TAXON_NAME,
    WDT + P_COMMON_NAME: P_COMMON_NAME,
    SCHEMA_ABOUT: "about",
    WIKIBASE_SITELINKS: "sitelinks",
    RDF_TYPE: "item",  # `wd:Q a wikibase:Item`: the item exists, even with no other kept fact (as in JSON)
}
FACT_KINDS = tuple(dict.fromkeys(KEPT_PREDICATES.values()))

# Fast path: `<s> <p> object .` with single spaces, as Wikidata writes every line.
_FAST = re.compile(r"<([^<>\"{}|^`\\\s]*)> <([^<>\"{}|^`\\\s]*)> (.+) \.")
_LANG = re.compile(r"[a-zA-Z]+(-[a-zA-Z0-9]+)*")

SAMPLE_CHARS = 300


class BadTriple(ValueError):
    """A well-formed triple whose value cannot go to the entities table (a sitelinks count that is
    not an integer in the column's range): a bad record, never dropped in silence."""


class Term:
    """A decoded object: kind is ``iri``, ``literal`` or ``blank``."""

    __slots__ = ("kind", "value", "lang", "datatype")

    def __init__(self, kind: str, value: str, lang: str | None = None, datatype: str | None = None) -> None:
        self.kind, self.value, self.lang, self.datatype = kind, value, lang, datatype

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Term) and (self.kind, self.value, self.lang, self.datatype) == (
            other.kind, other.value, other.lang, other.datatype)

    def __repr__(self) -> str:
        return f"Term({self.kind!r}, {self.value!r}, {self.lang!r}, {self.datatype!r})"


def fast_object(raw: str) -> Term | None:
    """Decode an object without escapes; None when the shape is not the common one."""
    if raw[0] == "<":
        if raw[-1] == ">" and ">" not in raw[1:-1] and " " not in raw:
            return Term("iri", raw[1:-1])
        return None
    if raw[0] == '"':
        end = raw.find('"', 1)
        if end < 0:
            return None
        value, suffix = raw[1:end], raw[end + 1:]
        if not suffix:
            return Term("literal", value)
        if suffix[0] == "@" and _LANG.fullmatch(suffix, 1):
            return Term("literal", value, lang=rdf_language(suffix[1:]))
        if suffix.startswith("^^<") and suffix[-1] == ">" and " " not in suffix:
            return Term("literal", value, datatype=suffix[3:-1])
        return None
    if raw.startswith("_:") and " " not in raw:
        return Term("blank", raw[2:])
    return None


class _Sink:
    """rdflib sink keeping the last triple the parser produced."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = None

    def triple(self, s, p, o) -> None:  # noqa: ANN001 - rdflib terms
        self.last = (s, p, o)


class RdflibLines:
    """rdflib's W3C N-Triples parser fed line by line, one parser for a whole batch."""

    def __init__(self) -> None:
        from rdflib.plugins.parsers.ntriples import W3CNTriplesParser

        self.sink = _Sink()
        self.parser = W3CNTriplesParser(sink=self.sink)

    def parse(self, line: str) -> tuple[str, str, Term] | None:
        """(subject, predicate, object) of one line; None for a blank/comment line.

        Raises ``ValueError`` (rdflib's ParseError is one) for an invalid line.
        """
        from rdflib import BNode, Literal

        self.sink.last = None
        self.parser.line = line.strip()
        self.parser.parseline()
        if self.sink.last is None:
            return None
        s, p, o = self.sink.last
        if isinstance(o, Literal):
            term = Term("literal", str(o), lang=rdf_language(o.language) if o.language else None,
                        datatype=str(o.datatype) if o.datatype else None)
        elif isinstance(o, BNode):
            term = Term("blank", str(o))
        else:
            term = Term("iri", str(o))
        return str(s), str(p), term


@dataclass
class NtBatch:
    """A batch's outcome: facts (subject, kind, value, rank), bad lines, counts."""

    facts: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    records: int = 0
    skipped: int = 0  # kept predicates on subjects that are not items (properties, lexemes, ...)
    fast: int = 0
    slow: int = 0


def _qid(iri: str) -> str | None:
    if iri.startswith(WD):
        qid = iri[len(WD):]
        if is_item_id(qid):
            return qid
    return None


def sitelinks_count(obj: Term) -> int:
    """The ``wikibase:sitelinks`` count: ASCII digits only (``"²"`` passes ``isdigit`` but not
    ``int``) and within the int column (Spark's cast of a bigger number fails the whole job)."""
    text = obj.value.strip() if obj.kind == "literal" else ""
    digits = text[1:] if text[:1] == "+" else text
    if not is_ascii_digits(digits):
        raise BadTriple(f"sitelinks count is not a non-negative integer: {obj.value[:50]!r}")
    if len(digits) > 10 or int(digits) > MAX_SITELINKS:
        raise BadTriple(f"sitelinks count {digits[:30]} is beyond the column's range (max {MAX_SITELINKS})")
    return int(digits)


def fact_of(subject: str, kind: str, obj: Term, rank_of: dict[str, int]) -> tuple[str, str, str, int | None] | None:
    """The fact for one kept triple, or None when it carries nothing for the entities table.

    Raises :class:`BadTriple` for a value the table cannot hold."""
    if kind == "sitelinks":
        return (subject, kind, str(sitelinks_count(obj)), None)
    if kind == "about":
        qid = _qid(obj.value) if obj.kind == "iri" else None
        return (subject, kind, qid, None) if qid else None
    if kind == "item":  # every statement, value and reference node has a type too: only entities count
        if obj.kind == "iri" and obj.value in NON_ITEM_TYPES and subject.startswith(WD):
            return ("", "skip", "", None)
        qid = _qid(subject) if obj.kind == "iri" and obj.value == WIKIBASE_ITEM else None
        return (qid, kind, "", None) if qid else None
    qid = _qid(subject)
    if qid is None:  # a property's or lexeme's label, statement, ...: counted once, on its type triple
        return None
    if kind in ("label", "description", "alias", P_COMMON_NAME):
        if obj.kind != "literal" or obj.lang not in rank_of or not obj.value:
            return None
        return (qid, kind, obj.value, rank_of[obj.lang])
    if kind in (P_INSTANCE_OF, P_SUBCLASS_OF, P_PARENT_TAXON):
        value = _qid(obj.value) if obj.kind == "iri" else None
        return (qid, kind, value, None) if value else None
    if kind == P_IMAGE:
        if obj.kind == "iri" and GENID not in obj.value:
            return (qid, kind, obj.value, None)
        return None
    if kind == P_TAXON_NAME:
        return (qid, kind, obj.value, None) if obj.kind == "literal" and obj.value else None
    return None


def _sample(text: str) -> str:
    return text[:SAMPLE_CHARS].encode("utf-8", "replace").decode("utf-8")


def parse_nt_lines(
    lines: Iterable[bytes | str | None], languages: Iterable[str] | str | None = None, mode: str = "auto"
) -> NtBatch:
    """A batch of N-Triples lines -> facts. ``mode``: ``auto`` (fast path, rdflib for the rest)
    or ``rdflib`` (every line through rdflib; the baseline the fast path must agree with).

    Never raises on bad input: a line that is not UTF-8 (``bytes`` lines are decoded strictly),
    that rdflib rejects, whose escapes decode to a lone surrogate, or whose value the table cannot
    hold is a bad record; every fact's strings are valid UTF-8 (Arrow-safe)."""
    langs = language_order(languages)
    rank_of = {lang: i for i, lang in enumerate(langs)}
    rank_of.setdefault(MUL, len(langs) - 1)
    out = NtBatch()
    slow: RdflibLines | None = None
    for i, line in enumerate(lines):
        if line is None:
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:  # N-Triples is UTF-8: the line is bad, the file goes on
                text = line.decode("utf-8", "replace").strip()
                if text and text[0] != "#":
                    out.records += 1
                    reason = f"invalid UTF-8 byte 0x{line[exc.start]:02x} at byte {exc.start} of the line"
                    out.bad.append((i, reason, text[:SAMPLE_CHARS]))
                continue
        elif not line.isascii() and not is_utf8(line):  # a str line (tests, callers) may hold one
            out.records += 1
            out.bad.append((i, "lone surrogate in the line (not UTF-8)", _sample(line.strip())))
            continue
        stripped = line.strip()
        if not stripped or stripped[0] == "#":
            continue
        out.records += 1
        m = _FAST.fullmatch(stripped) if mode == "auto" and "\\" not in stripped else None
        obj: Term | None = None
        if m is not None:
            subject, predicate = m.group(1), m.group(2)
            kind = KEPT_PREDICATES.get(predicate)
            if kind is None or (kind == "item" and m.group(3) != _ITEM_OBJECT
                                and m.group(3) not in _NON_ITEM_OBJECTS):
                out.fast += 1
                continue  # shape checked; object not needed
            obj = fast_object(m.group(3))
        if obj is None:
            if slow is None:
                slow = RdflibLines()
            try:
                parsed = slow.parse(stripped)
            except Exception as exc:  # noqa: BLE001 - rdflib raises ParseError and friends
                out.bad.append((i, f"invalid N-Triples line: {str(exc).splitlines()[0][:300]}",
                                stripped[:SAMPLE_CHARS]))
                continue
            out.slow += 1
            if parsed is None:
                continue
            subject, predicate, obj = parsed
            kind = KEPT_PREDICATES.get(predicate)
            if kind is None:
                continue
            if not (is_utf8(subject) and is_utf8(obj.value)):  # a "\\ud800" escape decodes to a lone surrogate
                out.bad.append((i, f"lone surrogate escape in the {'object' if is_utf8(subject) else 'subject'} "
                                   "(not UTF-8)", stripped[:SAMPLE_CHARS]))
                continue
        else:
            out.fast += 1
        try:
            fact = fact_of(subject, kind, obj, rank_of)
        except BadTriple as exc:
            out.bad.append((i, str(exc), stripped[:SAMPLE_CHARS]))
            continue
        if fact is None:
            continue
        if fact[1] == "skip":
            out.skipped += 1
            continue
        out.facts.append(fact)
    return out


def assemble(facts: Iterable[tuple[str, str, str, int | None]]) -> dict[str, dict]:
    """Group facts into rows on one machine: the reference the Spark grouping must agree with
    (tests, small files). Same rules as the JSON reader; sitelinks joined through ``about``."""
    about: dict[str, str] = {}
    counts: dict[str, int] = {}
    ents: dict[str, dict] = {}

    def ent(qid: str) -> dict:
        return ents.setdefault(qid, {
            "qid": qid, "label": None, "description": None, "aliases": set(), "common_names": set(),
            "taxon_name": None, "sitelinks": None, "instance_of": set(), "subclass_of": set(),
            "parent_taxon": set(), "has_image": False, "_ranks": {},
        })

    column = {P_INSTANCE_OF: "instance_of", P_SUBCLASS_OF: "subclass_of", P_PARENT_TAXON: "parent_taxon"}
    for subject, kind, value, rank in facts:
        if kind == "about":
            about[subject] = value
        elif kind == "sitelinks":
            counts[subject] = int(value)
        else:
            e = ent(subject)
            if kind in ("label", "description"):
                best = e["_ranks"].get(kind)
                if best is None or (rank, value) < best:
                    e["_ranks"][kind] = (rank, value)
                    e[kind] = value
            elif kind == "alias":
                e["aliases"].add(value)
            elif kind == P_COMMON_NAME:
                e["common_names"].add(value)
            elif kind in column:
                e[column[kind]].add(value)
            elif kind == P_IMAGE:
                e["has_image"] = True
            elif kind == P_TAXON_NAME:
                e["taxon_name"] = value if e["taxon_name"] is None else min(e["taxon_name"], value)
    for node, n in counts.items():
        qid = about.get(node)
        if qid is not None:
            ent(qid)["sitelinks"] = n
    for e in ents.values():
        e.pop("_ranks")
        for key in ("aliases", "common_names", "instance_of", "subclass_of", "parent_taxon"):
            e[key] = sorted(e[key])
    return ents
