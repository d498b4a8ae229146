"""Issue #16: a Wikidata record whose values cannot reach the Arrow schema is a bad record whose
reason names the field, never an exception in the executor. Pure parsers, no Spark."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from kgcurate.stages.ingest_wikidata import ENTITY_COLUMNS, STAGED
from kgcurate.wikidata import is_item_id
from kgcurate.wikidata.json_entity import parse_document, parse_lines
from kgcurate.wikidata.ntriples import parse_nt_lines

WD = "<http://www.wikidata.org/entity/{}>"
LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"
SITELINKS = "<http://wikiba.se/ontology#sitelinks>"
DATA_NODE = "<https://www.wikidata.org/wiki/Special:EntityData/Q1>"
XSD_INT = "^^<http://www.w3.org/2001/XMLSchema#integer>"


def _item(**fields) -> dict:
    return {"type": "item", "id": "Q1", "labels": {"en": {"language": "en", "value": "one"}}, **fields}


def _claim(prop: str, datavalue) -> dict:
    return {prop: [{"rank": "normal", "mainsnak": {"snaktype": "value", "property": prop, "datavalue": datavalue}}]}


def _arrow_rows(rows: list[dict]) -> pa.RecordBatch:
    """The rows as the stage ships them: must not raise."""
    fields = {f.name: f.type for f in STAGED}
    return pa.RecordBatch.from_arrays([pa.array([r[c] for r in rows], fields[c]) for c in ENTITY_COLUMNS],
                                      names=list(ENTITY_COLUMNS))


BAD_JSON = [
    (_item(labels={"en": {"language": "en", "value": 123}}), "labels.en.value is not a string (int)"),
    (_item(descriptions={"en": {"language": "en", "value": ["x"]}}), "descriptions.en.value is not a string (list)"),
    (_item(aliases={"en": [{"language": "en", "value": 123}]}), "aliases.en.value is not a string (int)"),
    (_item(aliases={"en": {"language": "en", "value": "x"}}), "aliases.en is not a list"),
    (_item(labels={"en": "one"}), "labels.en is not an object"),
    (_item(claims=_claim("P1843", {"type": "monolingualtext", "value": {"language": "en", "text": 123}})),
     "P1843 text is not a string (int)"),
    (_item(claims=_claim("P1843", {"type": "monolingualtext", "value": "dog"})),
     "P1843 value is not a monolingual text object"),
    (_item(claims=_claim("P225", {"type": "string", "value": 7})), "P225 value is not a string (int)"),
    (_item(claims=_claim("P31", {"type": "wikibase-entityid", "value": "Q5"})), "P31 value is not an entity id object"),
    (_item(claims=_claim("P31", "Q5")), "P31 datavalue is not an object"),
    (_item(sitelinks="enwiki"), "sitelinks is not an object"),
]


@pytest.mark.parametrize(("entity", "reason"), BAD_JSON, ids=[r for _, r in BAD_JSON])
def test_json_wrong_type_is_a_bad_record_naming_the_field(entity, reason):
    good = orjson.dumps(_item(id="Q2")).decode()
    res = parse_lines(["[", good + ",", orjson.dumps(entity).decode() + ",", "]"], ["en"])
    assert [(i, r) for i, r, _ in res.bad] == [(2, reason)]
    assert [r["qid"] for r in res.rows] == ["Q2"] and res.records == 2
    _arrow_rows(res.rows)
    doc = parse_document(orjson.dumps({"entities": {"Q2": _item(id="Q2"), "Q1": entity}}), ["en"])
    assert [(i, r) for i, r, _ in doc.bad] == [(1, reason)] and len(doc.rows) == 1


def test_json_wrong_types_outside_the_configured_languages_do_not_matter():
    """Only values that reach the row are checked (checking all ~300 languages would cost)."""
    entity = _item(labels={"en": {"value": "one"}, "fr": {"value": 1}}, aliases=[], claims=[], sitelinks=[])
    res = parse_lines([orjson.dumps(entity)], ["en"])
    assert not res.bad and res.rows[0]["label"] == "one" and res.rows[0]["sitelinks"] == 0


def test_json_invalid_utf8_and_surrogates_are_bad_records():
    lines = [b'{"type":"item","id":"Q1","labels":{"en":{"value":"\\ud800"}}}',
             b'{"type":"item","id":"Q1","labels":{"en":{"value":"caf\xe9"}}}']
    res = parse_lines(lines, ["en"])
    assert [i for i, _, _ in res.bad] == [0, 1] and all("invalid JSON" in r for _, r, _ in res.bad)


def test_item_ids_are_ascii_digits_only():
    assert is_item_id("Q42") and not is_item_id("Q²") and not is_item_id("Q٤٢")


def test_an_item_with_a_malformed_id_is_a_bad_record_not_a_skipped_non_item():
    """`"type":"item","id":"q42"` is damage: it was counted among the properties and lexemes skipped."""
    lines = [b'{"type":"item","id":"q42","labels":{}}', b'{"type":"item","id":"Q\u00b2","labels":{}}',
             b'{"type":"property","id":"P31","labels":{}}']
    res = parse_lines(lines, ["en"])
    assert res.skipped == 1 and not res.rows
    assert [(i, r) for i, r, _ in res.bad] == [(0, "item id 'q42' is not Q followed by digits"),
                                               (1, "item id 'Q²' is not Q followed by digits")]


def _nt(*lines: str | bytes) -> list[bytes]:
    return [ln if isinstance(ln, bytes) else ln.encode() for ln in lines]


def test_nt_invalid_utf8_byte_is_a_bad_record():
    good = f'{WD.format("Q1")} {LABEL} "one"@en .'
    bad = f'{WD.format("Q2")} {LABEL} "caf'.encode() + b'\xe9"@en .'
    res = parse_nt_lines(_nt(good, bad), ["en"])
    assert res.facts == [("Q1", "label", "one", 0)]
    ((i, reason, sample),) = res.bad
    assert (i, reason) == (1, f"invalid UTF-8 byte 0xe9 at byte {bad.index(0xE9)} of the line")
    assert sample.endswith('caf\ufffd"@en .')
    assert res.records == 2


@pytest.mark.parametrize("mode", ["auto", "rdflib"])
def test_nt_lone_surrogate_escape_is_a_bad_record(mode):
    lines = _nt(f'{WD.format("Q1")} {LABEL} "a\\ud800b"@en .', f'{WD.format("Q2")} {LABEL} "\\u00e9t\\u00e9"@en .')
    res = parse_nt_lines(lines, ["en"], mode=mode)
    assert res.facts == [("Q2", "label", "été", 0)]
    assert [(i, r) for i, r, _ in res.bad] == [(0, "lone surrogate escape in the object (not UTF-8)")]
    pa.array([f[2] for f in res.facts], pa.string())


def test_nt_str_line_with_a_surrogate_is_a_bad_record():
    res = parse_nt_lines([f'{WD.format("Q1")} {LABEL} "a\ud800"@en .'], ["en"])
    assert not res.facts and [r for _, r, _ in res.bad] == ["lone surrogate in the line (not UTF-8)"]


@pytest.mark.parametrize(("count", "reason"), [
    ('"²"', "sitelinks count is not a non-negative integer: '²'"),
    ('"-3"' + XSD_INT, "sitelinks count is not a non-negative integer: '-3'"),
    ('"99999999999999999999"' + XSD_INT, "sitelinks count 99999999999999999999 is beyond the column's range "
                                         "(max 2147483647)"),
    ('"2147483648"' + XSD_INT, "sitelinks count 2147483648 is beyond the column's range (max 2147483647)"),
    ("<http://example.org/x>", "sitelinks count is not a non-negative integer: 'http://example.org/x'"),
])
@pytest.mark.parametrize("mode", ["auto", "rdflib"])
def test_nt_bad_sitelinks_counts_are_bad_records(count, reason, mode):
    lines = _nt(f"{DATA_NODE} {SITELINKS} {count} .", f'{DATA_NODE} {SITELINKS} "2147483647"{XSD_INT} .')
    res = parse_nt_lines(lines, ["en"], mode=mode)
    assert [(i, r) for i, r, _ in res.bad] == [(0, reason)]
    assert res.facts == [(DATA_NODE[1:-1], "sitelinks", "2147483647", None)]
