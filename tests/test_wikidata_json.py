"""Wikidata JSON reader: real dump lines, the real Q42 API document, and the fixture's rank cases."""

from __future__ import annotations

import orjson
import pytest

from kgcurate.wikidata.json_entity import (
    BadRecord,
    SkippedEntity,
    looks_line_per_entity,
    parse_document,
    parse_entity_line,
    parse_lines,
    strip_dump_line,
    truthy,
)


@pytest.fixture(scope="module")
def head50(shared_data):
    return (shared_data / "wikidata" / "latest-all-2017-head50.json").read_bytes().split(b"\n")


@pytest.fixture(scope="module")
def sample_rows(fixtures):
    res = parse_lines((fixtures / "wikidata" / "sample.json").read_text().splitlines(), ["en"])
    assert not res.bad
    return {r["qid"]: r for r in res.rows}


def test_real_dump_excerpt(head50):
    res = parse_lines(head50, ["en"])
    assert (len(res.rows), res.bad, res.skipped, res.records) == (49, [], 0, 49)
    rows = {r["qid"]: r for r in res.rows}
    dog = rows["Q144"]
    assert (dog["label"], dog["description"]) == ("dog", "domestic animal")
    assert dog["instance_of"] == ["Q213907", "Q502895"]
    assert dog["subclass_of"] == ["Q39201", "Q622852"]
    assert dog["common_names"] == ["Dog"]  # the en one of ~70 P1843 values
    assert dog["has_image"] and dog["sitelinks"] == 252
    cetacea = rows["Q160"]
    assert cetacea["taxon_name"] == "Cetacea" and cetacea["parent_taxon"] == ["Q25833", "Q7993757"]
    # Rome: two preferred P31 values hide the normal "city" (Q515)
    assert rows["Q220"]["instance_of"] == ["Q5119", "Q747074"]
    # Berlin: deprecated P31 values (Q262166, Q1307779) never count
    assert "Q262166" not in rows["Q64"]["instance_of"] and "Q515" in rows["Q64"]["instance_of"]
    assert rows["Q31"]["label"] == "Belgium" and rows["Q31"]["parent_taxon"] == []


def test_real_pretty_printed_entity(shared_data):
    path = shared_data / "wikidata" / "Q42-2018.json"
    assert not looks_line_per_entity(path.read_text().splitlines()[:5])
    res = parse_document(path.read_bytes(), ["en"])
    (row,) = res.rows
    assert row["qid"] == "Q42" and row["label"] == "Douglas Adams"
    assert row["instance_of"] == ["Q5"] and "Douglas Noel Adams" in row["aliases"]
    assert row["sitelinks"] > 50 and row["has_image"]


def test_api_wrapper_document():
    doc = {"entities": {"Q1": {"type": "item", "id": "Q1", "labels": {"en": {"language": "en", "value": "universe"}}},
                        "P2": {"type": "property", "id": "P2"}}}
    res = parse_document(orjson.dumps(doc), "en")
    assert [r["label"] for r in res.rows] == ["universe"] and res.skipped == 1


def test_line_shapes():
    assert strip_dump_line(b"[") is None and strip_dump_line("]\n") is None and strip_dump_line(b"  ") is None
    assert strip_dump_line(b'{"a":1},\n') == b'{"a":1}'
    assert looks_line_per_entity(["[", '{"type":"item","id":"Q1"},'])
    assert looks_line_per_entity(['{"type":"item","id":"Q1"}'])
    assert not looks_line_per_entity(["{", '  "id": "Q1"'])
    assert not looks_line_per_entity(['{"entities": {', '  "Q1": {', '    "id": "Q1",'])
    assert not looks_line_per_entity(['[{"type":"item","id":"Q1"}, {"type":"item","id":"Q2"}]'])  # one-line array
    # a damaged first line of a dump: still a dump (as one document all its good lines were lost)
    for first in ('{"type":"item","id":"Q1"', "[1, 2]", '"a string"', "garbage"):
        assert looks_line_per_entity([first, '{"type":"item","id":"Q2"},', '{"type":"item","id":"Q3"},']), first


def test_fixture_rank_rules(sample_rows):
    dog = sample_rows["Q144"]
    assert dog["subclass_of"] == ["Q7377"]  # deprecated P279 Q5 dropped
    assert dog["parent_taxon"] == ["Q18099"]  # preferred beats normal
    assert dog["common_names"] == ["dog", "domestic dog"]  # en only, sorted
    assert dog["aliases"] == ["Canis familiaris", "domestic dog"]
    assert sample_rows["Q146"]["instance_of"] == ["Q55983715"]
    assert sample_rows["Q7377"]["has_image"] is False  # preferred somevalue hides the normal image
    assert sample_rows["Q756"]["parent_taxon"] == []  # novalue
    wolf = sample_rows["Q18099"]
    assert wolf["label"] == "Canis lupus" and wolf["aliases"] == ["C. lupus"]  # mul fallback
    assert wolf["taxon_name"] == "Canis lupus" and wolf["common_names"] == ["grey wolf", "wolf"]
    assert "P31" not in sample_rows and "L7" not in sample_rows


def test_language_priority(fixtures):
    lines = (fixtures / "wikidata" / "sample.json").read_text().splitlines()
    rows = {r["qid"]: r for r in parse_lines(lines, ["de", "en"]).rows}
    assert rows["Q18099"]["label"] == "Wolf" and rows["Q144"]["description"] == "Haustier"
    assert rows["Q144"]["label"] == "dog"  # no de label: next language
    assert rows["Q144"]["aliases"] == ["Canis familiaris", "Haushund", "domestic dog"]
    assert rows["Q18099"]["common_names"] == ["Wolf", "grey wolf", "wolf"]
    fr = {r["qid"]: r for r in parse_lines(lines, "fr").rows}
    assert fr["Q144"]["label"] == "chien" and fr["Q7377"]["label"] is None and fr["Q18099"]["label"] == "Canis lupus"


def test_truthy_somevalue_takes_part_in_rank():
    def st(rank, snaktype="value", qid="Q1"):
        snak = {"snaktype": snaktype}
        if snaktype == "value":
            snak["datavalue"] = {"value": {"id": qid}}
        return {"rank": rank, "mainsnak": snak}

    assert truthy([st("preferred", "somevalue"), st("normal")]) == []
    assert [d["value"]["id"] for d in truthy([st("normal", qid="Q2"), st("deprecated", qid="Q3")])] == ["Q2"]
    assert truthy([st("deprecated")]) == []


def test_bad_and_skipped_lines_never_raise():
    good = '{"type":"item","id":"Q5","labels":{"en":{"language":"en","value":"human"}},"claims":{}},'
    old = ('{"type":"item","id":"Q9","claims":{"P279":[{"rank":"normal","mainsnak":{"snaktype":"value",'
           '"datavalue":{"value":{"entity-type":"item","numeric-id":5}}}}]}}')
    lines = [
        "[", good, '{"type":"item","id":"Q6","labels":', "[1, 2]", '{"type":"item"}',
        '{"type":"item","id":"Q7","claims":{"P31":"oops"}}', '{"type":"item","id":"Q8","aliases":{"en":[3]}}',
        '{"type":"property","id":"P31"}', '{"type":"lexeme","id":"L7"}', old, "]",
    ]
    res = parse_lines(lines, ["en"])
    assert [r["qid"] for r in res.rows] == ["Q5", "Q9"]
    assert res.rows[1]["subclass_of"] == ["Q5"]  # numeric-id only, as in dumps before 2016
    assert [i for i, _, _ in res.bad] == [2, 3, 4, 5, 6]
    assert "invalid JSON" in res.bad[0][1] and res.bad[0][2].startswith('{"type":"item","id":"Q6"')
    assert res.skipped == 2 and res.records == 9
    with pytest.raises(BadRecord):
        parse_entity_line('{"id": 5}', "en")
    with pytest.raises(SkippedEntity):
        parse_entity_line('{"type":"property","id":"P5"}', "en")
    with pytest.raises(BadRecord, match="item id 'P5' is not Q"):  # typed item, not an item's id: damage
        parse_entity_line('{"type":"item","id":"P5"}', "en")


def _q(n: int) -> dict:
    return {"type": "item", "id": f"Q{n}", "labels": {"en": {"language": "en", "value": f"thing {n}"}}}


def _read_as_staged(text: bytes) -> list[str]:
    """The qids the stage gets from a file: judged from its first five lines, then read line by line or whole."""
    lines = text.split(b"\n")
    if looks_line_per_entity([ln.decode() for ln in lines[:5]]):
        res = parse_lines(lines, "en")
    else:
        res = parse_document(text, "en")
    assert not res.bad, res.bad
    return [r["qid"] for r in res.rows]


def test_document_shapes_are_documents_and_dump_shapes_dumps():
    """The compact API response (Special:EntityData/Q42.json: one line) was read as a dump line ("entity has no
    id"), a pretty-printed array as a dump (each line a bad record), and the entities sharing a line with the
    array's brackets were lost."""
    one, two = orjson.dumps(_q(1)), orjson.dumps(_q(2))
    api = orjson.dumps({"entities": {"Q1": _q(1), "Q2": _q(2)}})
    assert not looks_line_per_entity([api.decode()])
    assert _read_as_staged(api) == ["Q1", "Q2"]
    pretty_array = orjson.dumps([_q(1), _q(2)], option=orjson.OPT_INDENT_2)
    assert not looks_line_per_entity(pretty_array.decode().splitlines()[:5])
    assert _read_as_staged(pretty_array) == ["Q1", "Q2"]
    assert _read_as_staged(b"\xef\xbb\xbf" + pretty_array) == ["Q1", "Q2"]  # a byte order mark first
    for dump in (b"[" + one + b",\n" + two + b"]\n",                      # brackets on the entities' lines
                 b"[\n" + one + b",\n" + two + b"\n]\n",                  # the dump's own shape
                 b"\xef\xbb\xbf[\n  " + one + b",\n  " + two + b"\n]",   # BOM, indented entity lines
                 b"[" + one + b"]\n"):                                    # one entity on the array's line
        assert looks_line_per_entity(dump.decode().splitlines()[:5]), dump
        assert _read_as_staged(dump) == (["Q1", "Q2"] if two in dump else ["Q1"]), dump
    assert strip_dump_line(b"[" + one + b",") == one and strip_dump_line(two + b"]") == two
    assert strip_dump_line("\ufeff[") is None and strip_dump_line(b" ], ") is None
