"""Wikidata JSON dump lines -> ``entities`` rows. Pure Python (orjson), no Spark.

The dump (``latest-all.json.gz``/``.bz2``) is one JSON array with one entity per line: ``[``,
then ``{...},`` lines, then ``]``. A line is parsed on its own, so the dump can be split anywhere.

Field rules, shared with the N-Triples reader so that both formats give the same row:

* label / description: the first configured language that has one, else ``mul``.
* aliases: every alias in the configured languages and ``mul``; sorted, distinct.
* statements use *truthy* semantics, as Wikidata's ``latest-truthy`` dump does: per property
  the best non-deprecated rank wins (preferred if any, else normal), and only ``value`` snaks
  give a value (``somevalue``/``novalue`` give none, but still take part in the rank choice).
* instance_of (P31), subclass_of (P279), parent_taxon (P171): item ids, sorted, distinct.
* taxon_name (P225): the smallest truthy value (a dump's statement order is not a meaning, and
  the N-Triples dump has none, so the choice must not depend on it).
* common_names (P1843): monolingual texts in the configured languages (and ``mul``); sorted, distinct.
* sitelinks: the number of sitelinks; has_image: whether P18 has a truthy value.

Every value a row takes is type-checked (a label ``{"value": 123}`` would otherwise reach Arrow
and abort the Spark job): a wrong type is a :class:`BadRecord` whose reason names the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kgcurate.wikidata import (
    ITEM_PROPS,
    MUL,
    P_COMMON_NAME,
    P_IMAGE,
    P_TAXON_NAME,
    is_item_id,
    language_order,
)

SAMPLE_CHARS = 300


class BadRecord(ValueError):
    """A line that is not a well-formed entity: goes to ``bad_records``, never crashes the job."""


class SkippedEntity(Exception):
    """A well-formed entity that is not an item (property, lexeme, ...): counted, not an error."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_BYTES_MARKS = (b"\xef\xbb\xbf", b"[", b",", b"{", b"]")
_STR_MARKS = ("\ufeff", "[", ",", "{", "]")


def strip_dump_line(line: bytes | str) -> bytes | str | None:
    """The entity JSON of one dump line, or None for the array's ``[``/``]`` and blank lines.

    The array's brackets may share a line with the first or last entity (``[{...},`` and ``{...}]``),
    and a file may start with a byte order mark: neither belongs to the entity.
    """
    bom, open_, comma, brace, close = _BYTES_MARKS if isinstance(line, bytes) else _STR_MARKS
    s = line.strip().removeprefix(bom).strip()
    if s.startswith(open_):
        s = s[1:].lstrip()
    if s.endswith(comma):
        s = s[:-1].rstrip()
    if s.startswith(brace) and s.endswith(close):
        s = s[:-1].rstrip()
    return s if s and s != close else None


def _mapping(value: Any, name: str) -> dict[str, Any]:
    """A JSON object field; missing, null and ``[]`` (how the dumps write an empty object) are empty."""
    if value is None or value == []:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(f"{name} is not an object")
    return value


def _text(value: Any, name: str) -> str | None:
    """A text field that reaches a string column: a non-string is a bad record naming the field
    (Arrow would reject it in the executor and abort the whole job)."""
    if value is None or isinstance(value, str):
        return value or None
    raise BadRecord(f"{name} is not a string ({type(value).__name__})")


def truthy(statements: Any, prop: str = "statement") -> list[dict[str, Any]]:
    """The main snaks' datavalues of the best-ranked statements that carry a value (Wikidata's
    truthy rule)."""
    if not statements:
        return []
    if not isinstance(statements, list):
        raise BadRecord(f"{prop} statements are not a list")
    ranks = {s.get("rank", "normal") for s in statements}
    best = "preferred" if "preferred" in ranks else "normal"
    out = []
    for s in statements:
        if s.get("rank", "normal") != best:
            continue
        snak = s.get("mainsnak") or {}
        if snak.get("snaktype") == "value" and "datavalue" in snak:
            if not isinstance(snak["datavalue"], dict):
                raise BadRecord(f"{prop} datavalue is not an object")
            out.append(snak["datavalue"])
    return out


def _item_ids(values: list[dict[str, Any]], prop: str) -> list[str]:
    ids = set()
    for dv in values:
        v = dv.get("value")
        if not isinstance(v, dict):
            raise BadRecord(f"{prop} value is not an entity id object")
        qid = v.get("id")
        if qid is None and v.get("entity-type", "item") == "item" and "numeric-id" in v:
            qid = f"Q{v['numeric-id']}"  # dumps before 2016 carry only the numeric id
        if isinstance(qid, str) and is_item_id(qid):
            ids.add(qid)
    return sorted(ids)


def _first_text(terms: Any, langs: tuple[str, ...], name: str) -> str | None:
    terms = _mapping(terms, name)
    for lang in langs:
        term = terms.get(lang)
        if term is None:
            continue
        if not isinstance(term, dict):
            raise BadRecord(f"{name}.{lang} is not an object")
        value = _text(term.get("value"), f"{name}.{lang}.value")
        if value:
            return value
    return None


def _aliases(alias_map: Any, langs: tuple[str, ...]) -> list[str]:
    alias_map = _mapping(alias_map, "aliases")
    out: set[str] = set()
    for lang in langs:
        terms = alias_map.get(lang)
        if terms is None:
            continue
        if not isinstance(terms, list):
            raise BadRecord(f"aliases.{lang} is not a list")
        for term in terms:
            if not isinstance(term, dict):
                raise BadRecord(f"aliases.{lang} holds a non-object")
            value = _text(term.get("value"), f"aliases.{lang}.value")
            if value:
                out.add(value)
    return sorted(out)


def entity_to_row(entity: Any, langs: tuple[str, ...]) -> dict[str, Any]:
    """One decoded entity -> an ``entities`` row (without source_file). ``langs`` ends with mul.

    Every value the row gets is type-checked here (strings, lists of strings, an int in the
    column's range), so a row always fits the Arrow schema; a wrong type is a :class:`BadRecord`
    whose reason names the field.
    """
    if not isinstance(entity, dict):
        raise BadRecord("entity is not a JSON object")
    qid = entity.get("id")
    if not isinstance(qid, str) or not qid:
        raise BadRecord("entity has no id")
    etype = entity.get("type")
    if etype != "item":
        raise SkippedEntity(etype if isinstance(etype, str) else "unknown")
    if not is_item_id(qid):  # an item whose id is not Q + digits ("q42", "Q4 2"): damage, not another entity kind
        raise BadRecord(f"item id {qid[:40]!r} is not Q followed by digits")
    try:
        claims = _mapping(entity.get("claims"), "claims")
        row: dict[str, Any] = {
            "qid": qid,
            "label": _first_text(entity.get("labels"), langs, "labels"),
            "description": _first_text(entity.get("descriptions"), langs, "descriptions"),
            "aliases": _aliases(entity.get("aliases"), langs),
        }
        for prop, column in ITEM_PROPS.items():
            row[column] = _item_ids(truthy(claims.get(prop), prop), prop)
        names = [_text(dv.get("value"), f"{P_TAXON_NAME} value") for dv in truthy(claims.get(P_TAXON_NAME),
                                                                                  P_TAXON_NAME)]
        names = [n for n in names if n]
        row["taxon_name"] = min(names) if names else None
        wanted = set(langs)
        common = set()
        for dv in truthy(claims.get(P_COMMON_NAME), P_COMMON_NAME):
            v = dv.get("value")
            if not isinstance(v, dict):
                raise BadRecord(f"{P_COMMON_NAME} value is not a monolingual text object")
            text = _text(v.get("text"), f"{P_COMMON_NAME} text")
            if text and v.get("language") in wanted:
                common.add(text)
        row["common_names"] = sorted(common)
        row["has_image"] = bool(truthy(claims.get(P_IMAGE), P_IMAGE))
        row["sitelinks"] = len(_mapping(entity.get("sitelinks"), "sitelinks"))
    except (AttributeError, TypeError, KeyError) as exc:
        raise BadRecord(f"malformed entity {qid}: {type(exc).__name__}: {exc}") from exc
    return row


def parse_entity_line(line: bytes | str, languages: Iterable[str] | str | None = None) -> dict[str, Any] | None:
    """One dump line -> row; None for ``[``, ``]`` and blank lines.

    Raises :class:`BadRecord` (malformed) or :class:`SkippedEntity` (not an item).
    """
    langs = languages if isinstance(languages, tuple) and languages[-1:] == (MUL,) else language_order(languages)
    body = strip_dump_line(line)
    if body is None:
        return None
    try:
        entity = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"invalid JSON: {exc}") from exc
    return entity_to_row(entity, langs)


@dataclass
class ParsedLines:
    """A batch's outcome: rows, bad lines as (index in the batch, reason, sample), skip counts."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: int = 0
    records: int = 0


def sample_of(line: bytes | str) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    return text[:SAMPLE_CHARS]


def parse_lines(lines: Iterable[bytes | str | None], languages: Iterable[str] | str | None = None) -> ParsedLines:
    """A batch of dump lines (the executor's hot loop): never raises on bad input."""
    langs = language_order(languages)
    out = ParsedLines()
    for i, line in enumerate(lines):
        if line is None:
            continue
        try:
            row = parse_entity_line(line, langs)
        except SkippedEntity:
            out.records += 1
            out.skipped += 1
            continue
        except BadRecord as exc:
            out.records += 1
            out.bad.append((i, str(exc)[:500], sample_of(line)))
            continue
        if row is not None:
            out.records += 1
            out.rows.append(row)
    return out


def _json(text: bytes | str | None) -> Any:
    """The JSON value of ``text``; None when it is not one."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _is_api_wrapper(value: Any) -> bool:
    """The entity API's ``{"entities": {...}}`` (Special:EntityData), not an entity."""
    return isinstance(value, dict) and isinstance(value.get("entities"), dict) and "id" not in value


def looks_line_per_entity(head_lines: Iterable[str]) -> bool:
    """Whether a file is a line-per-entity dump, judged from its first non-blank lines.

    A dump has whole entities on its lines (the array's ``[``/``]`` alone or on the first and last
    entity's line). A document is read whole: the entity API's ``{"entities": ...}`` (compact on one
    line, as Special:EntityData serves it, or pretty-printed), a pretty-printed entity (a lone ``{`` or
    an unfinished object first), a pretty-printed array (``[`` then a lone ``{``) or an array on one line.
    One damaged line (the first one cut, say) does not make a dump a document: read whole as one value,
    all its good lines were lost.
    """
    lines = [s for s in (line.strip().removeprefix("\ufeff").strip() for line in head_lines) if s]
    if not lines:
        return True  # empty file: nothing to parse either way
    values = [_json(strip_dump_line(s)) for s in lines]
    if any(isinstance(v, dict) and not _is_api_wrapper(v) for v in values):
        return True
    if any(_is_api_wrapper(v) for v in values):
        return False
    first = lines[0]
    if isinstance(_json(first.removesuffix(",")), list) or first.startswith("{"):
        return False
    return not (first == "[" and len(lines) > 1 and lines[1].startswith("{"))


def document_entities(text: bytes | str) -> Iterator[Any]:
    """Entities of one JSON document: ``{"entities": {...}}``, a bare entity, or a JSON array."""
    try:
        doc = orjson.loads(text.removeprefix(b"\xef\xbb\xbf" if isinstance(text, bytes) else "\ufeff"))
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"invalid JSON document: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("entities"), dict):
        yield from doc["entities"].values()
    elif isinstance(doc, list):
        yield from doc
    else:
        yield doc


def parse_document(text: bytes | str, languages: Iterable[str] | str | None = None) -> ParsedLines:
    """A whole pretty-printed file -> rows; bad entities are indexed by their position in it."""
    langs = language_order(languages)
    out = ParsedLines()
    try:
        entities = list(document_entities(text))
    except BadRecord as exc:
        out.records += 1
        out.bad.append((0, str(exc)[:500], sample_of(text)))
        return out
    for i, entity in enumerate(entities):
        out.records += 1
        try:
            out.rows.append(entity_to_row(entity, langs))
        except SkippedEntity:
            out.skipped += 1
        except BadRecord as exc:
            out.bad.append((i, str(exc)[:500], sample_of(orjson.dumps(entity))))
    return out
