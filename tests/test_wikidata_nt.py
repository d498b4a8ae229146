"""Truthy N-Triples reader: rdflib and the fast path agree; the rows equal the JSON reader's."""

from __future__ import annotations

import pytest

from kgcurate.wikidata.json_entity import parse_lines
from kgcurate.wikidata.ntriples import Term, assemble, fast_object, parse_nt_lines

WD = "<http://www.wikidata.org/entity/{}>"
WDT = "<http://www.wikidata.org/prop/direct/{}>"


@pytest.fixture(scope="module")
def nt_lines(fixtures):
    return (fixtures / "wikidata" / "sample-truthy.nt").read_text(encoding="utf-8").splitlines()


def test_fast_path_equals_rdflib(nt_lines):
    fast = parse_nt_lines(nt_lines, ["en", "de"], mode="auto")
    slow = parse_nt_lines(nt_lines, ["en", "de"], mode="rdflib")
    assert fast.facts == slow.facts and fast.skipped == slow.skipped == 2
    assert slow.fast == 0 and fast.slow == 2  # the two lines with escapes took the rdflib path
    assert fast.records == slow.records == len(nt_lines) and not fast.bad


@pytest.mark.parametrize("langs", [["en"], ["de", "en"], ["fr"]])
def test_same_rows_as_json(nt_lines, fixtures, langs):
    """The truthy dump of the fixture entities gives exactly the JSON reader's rows."""
    json_rows = {r["qid"]: r for r in parse_lines((fixtures / "wikidata" / "sample.json").read_text().splitlines(),
                                                  langs).rows}
    nt_rows = assemble(parse_nt_lines(nt_lines, langs).facts)
    assert sorted(nt_rows) == ["Q144", "Q146", "Q18099", "Q31", "Q42", "Q729", "Q7377", "Q756"]
    for qid, row in nt_rows.items():
        assert row == json_rows[qid], qid
    assert nt_rows["Q144"]["sitelinks"] == 10 and nt_rows["Q7377"]["has_image"] is False
    assert "puss \"kitty\"" in nt_rows["Q146"]["aliases"] or langs != ["en"]


def test_fast_object_shapes():
    assert fast_object('"dog"@en') == Term("literal", "dog", lang="en")
    assert fast_object('"Canis lupus"') == Term("literal", "Canis lupus")
    assert fast_object('"7"^^<http://www.w3.org/2001/XMLSchema#integer>') == Term(
        "literal", "7", datatype="http://www.w3.org/2001/XMLSchema#integer")
    assert fast_object("<http://www.wikidata.org/entity/Q5>") == Term("iri", "http://www.wikidata.org/entity/Q5")
    assert fast_object("_:b0") == Term("blank", "b0")
    assert fast_object('"dog"@') is None and fast_object('"dog" junk') is None


def test_escapes_datatypes_and_skips():
    lines = [
        f'{WD.format("Q1")} <http://www.w3.org/2000/01/rdf-schema#label> "tab\\there \\"q\\" \\u00E9"@en .',
        f"{WD.format('Q1')} {WDT.format('P279')} _:somevalue1 .",  # somevalue (old dumps): no value
        f"{WD.format('Q1')} {WDT.format('P279')} <http://www.wikidata.org/.well-known/genid/abc> .",
        f"{WD.format('Q1')} {WDT.format('P279')} {WD.format('Q2')} .",
        f"{WD.format('Q1')} {WDT.format('P18')} <http://www.wikidata.org/.well-known/genid/def> .",
        f'{WD.format("Q1")} {WDT.format("P1843")} "Hund"@de .',
        f'{WD.format("P31")} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://wikiba.se/ontology#Property> .',
        f'{WD.format("P31")} <http://www.w3.org/2000/01/rdf-schema#label> "instance of"@en .',
        f'{WD.format("Q1")} {WDT.format("P2067")} "+5"^^<http://www.w3.org/2001/XMLSchema#decimal> .',
        "# a comment",
        "",
        f'{WD.format("Q1")} <http://www.w3.org/2000/01/rdf-schema#label> "unterminated@en .',
        "<not an iri> <http://x> <http://y> .",
    ]
    res = parse_nt_lines(lines, ["en"])
    rows = assemble(res.facts)
    assert rows["Q1"]["label"] == 'tab\there "q" é'
    assert rows["Q1"]["subclass_of"] == ["Q2"] and rows["Q1"]["has_image"] is False
    assert rows["Q1"]["common_names"] == []  # de not configured
    assert res.skipped == 1 and res.records == 11  # the property: once, on its type, not per triple about it
    assert [i for i, _, _ in res.bad] == [11, 12]
    assert all(reason.startswith("invalid N-Triples line") for _, reason, _ in res.bad)


def test_sitelinks_joined_through_about():
    node = "<https://www.wikidata.org/wiki/Special:EntityData/Q3>"
    lines = [
        f"<https://en.wikipedia.org/wiki/Three> <http://schema.org/about> {WD.format('Q3')} .",
        f'{node} <http://wikiba.se/ontology#sitelinks> "12"^^<http://www.w3.org/2001/XMLSchema#integer> .',
        f"{node} <http://schema.org/about> {WD.format('Q3')} .",
    ]
    rows = assemble(parse_nt_lines(lines, "en").facts)
    assert rows["Q3"]["sitelinks"] == 12 and rows["Q3"]["label"] is None


@pytest.mark.parametrize(("configured", "nt_tag", "json_key"), [
    ("zh-cn", "zh-Hans-CN", "zh-cn"),  # the RDF dump writes BCP 47, the JSON dump MediaWiki's code
    ("zh-Hans-CN", "zh-Hans-CN", "zh-cn"),  # either spelling in the config
    ("sr-el", "sr-Latn", "sr-el"),
    ("simple", "en-simple", "simple"),
    ("en-GB", "en-GB", "en-gb"),  # case: JSON keys are lower case, configs often are not
    ("DE", "de", "de"),
    # Wikibase's own canonicalLanguageCodes come first in the RDF dump (these labels were lost)
    ("crh", "crh-Latn", "crh"),
    ("cbk-zam", "cbk-x-zam", "cbk-zam"),
    ("nrm", "fr-x-nrm", "nrm"),
    ("fr-x-nrm", "fr-x-nrm", "nrm"),
    ("roa-tara", "it-x-tara", "roa-tara"),
    ("simple", "en-x-simple", "simple"),  # older Wikibase releases
])
def test_language_codes_agree_between_dump_formats_and_the_config(configured, nt_tag, json_key):
    import json

    label = "\u72d7" if configured.lower().startswith("zh") else "label in " + json_key
    nt = [f'{WD.format("Q144")} <http://www.w3.org/2000/01/rdf-schema#label> "{label}"@{nt_tag} .',
          f'{WD.format("Q144")} <http://www.w3.org/2000/01/rdf-schema#label> "dog"@fr .']
    nt_row = assemble(parse_nt_lines(nt, [configured]).facts)["Q144"]
    record = {"type": "item", "id": "Q144", "labels": {json_key: {"language": json_key, "value": label},
                                                       "fr": {"language": "fr", "value": "dog"}}}
    [json_row] = parse_lines([json.dumps(record).encode()], [configured]).rows
    assert nt_row["label"] == json_row["label"] == label


def test_a_dump_without_sitelinks_counts_says_unknown_not_zero():
    """latest-truthy.nt has no wikibase:sitelinks lines (only latest-all.nt does): null, not 0."""
    lines = [f'{WD.format("Q5")} <http://www.w3.org/2000/01/rdf-schema#label> "human"@en .']
    assert assemble(parse_nt_lines(lines, "en").facts)["Q5"]["sitelinks"] is None


def test_crh_latn_tag_is_crh_and_a_configured_crh_latn_stays_crh_latn():
    """Wikibase writes crh-Latn for both crh and crh-latn: the RDF tag is read as crh; the config's crh-latn
    is not rewritten, so the JSON path keeps its crh-latn labels."""
    from kgcurate.wikidata import language_order, rdf_language

    assert rdf_language("crh-Latn") == "crh" and rdf_language("sr-Latn") == "sr-el"
    assert language_order(["crh-latn"]) == ("crh-latn", "mul")
    [row] = parse_lines(['{"type":"item","id":"Q1","labels":{"crh-latn":{"value":"x"}}}'], ["crh-latn"]).rows
    assert row["label"] == "x"


def test_non_items_are_counted_once_each_as_the_json_reader_counts_them():
    """Every kept triple about a property (labels in every language, aliases) counted as one skipped
    non-item: a full dump reported millions for ~12k properties, and disagreed with the JSON reader."""
    import json

    p = WD.format("P31")
    nt = [f"{p} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://wikiba.se/ontology#Property> ."]
    nt += [f'{p} <http://www.w3.org/2000/01/rdf-schema#label> "instance of {lang}"@{lang} .' for lang in ("en", "de")]
    nt += [f'{p} <http://www.w3.org/2004/02/skos/core#altLabel> "is a {lang}"@{lang} .' for lang in ("en", "fr")]
    record = {"type": "property", "id": "P31", "labels": {"en": {"language": "en", "value": "instance of"}}}
    assert parse_nt_lines(nt, ["en"]).skipped == parse_lines([json.dumps(record).encode()], ["en"]).skipped == 1


def test_egl_is_emilian_in_a_config_and_the_egl_tag_is_read_as_eml():
    """egl (Emilian) and eml (Emiliano-Romagnolo) are two Wikibase term languages; Wikibase writes the tag egl for
    both. A configured egl was read as eml: no way to get Emilian labels."""
    from kgcurate.wikidata import language_order, rdf_language

    assert language_order(["egl"]) == ("egl", "mul") and language_order(["eml"]) == ("eml", "mul")
    assert rdf_language("egl") == "eml"
    both = '{"type":"item","id":"Q1","labels":{"eml":{"value":"romagnolo"},"egl":{"value":"emiliano"}}}'
    assert parse_lines([both], ["egl"]).rows[0]["label"] == "emiliano"
    assert parse_lines([both], ["eml"]).rows[0]["label"] == "romagnolo"


def test_a_language_yaml_read_as_a_boolean_is_one_line_not_dropped():
    """`languages: [nb, no, en]` loads Norwegian's `no` as False: it was dropped without a word, and `[no]` alone
    said no language was configured."""
    import yaml

    from kgcurate.errors import UserError
    from kgcurate.wikidata import language_order

    for text in ("[nb, no, en]", "[no]"):
        with pytest.raises(UserError, match=r"wikidata.languages: False is not a language code: quote .*'no'"):
            language_order(yaml.safe_load(text))
    assert language_order(yaml.safe_load("[nb, 'no', en]")) == ("nb", "no", "en", "mul")


def test_an_item_with_no_kept_fact_gets_the_json_readers_empty_row():
    """`wd:Q a wikibase:Item` (written for every item, truthy and full dumps alike) makes the row: an item
    labelled only in other languages was missing from `entities`, while the JSON reader gives it an empty
    row. The type triples of statements and values make none and count as nothing skipped; a property's
    counts as one skipped non-item, as the JSON reader counts one per property record."""
    import json

    rdf_type = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
    lines = [
        f"{WD.format('Q7')} {rdf_type} <http://wikiba.se/ontology#Item> .",
        f'{WD.format("Q7")} <http://www.w3.org/2000/01/rdf-schema#label> "chien"@fr .',
        f"{WD.format('P31')} {rdf_type} <http://wikiba.se/ontology#Property> .",
        f"<http://www.wikidata.org/entity/statement/Q7-abc> {rdf_type} <http://wikiba.se/ontology#Statement> .",
        f"{WD.format('Q8')} {rdf_type} <http://www.wikidata.org/prop/novalue/P171> .",
        f"{WD.format('L9')} {rdf_type} <http://wikiba.se/ontology#Item> .",  # not an item id
    ]
    for mode in ("auto", "rdflib"):
        res = parse_nt_lines(lines, ["en"], mode=mode)
        assert res.skipped == 1 and not res.bad and res.records == 6
        rows = assemble(res.facts)
        assert sorted(rows) == ["Q7"], mode
        record = {"type": "item", "id": "Q7", "labels": {"fr": {"language": "fr", "value": "chien"}}}
        [json_row] = parse_lines([json.dumps(record).encode()], ["en"]).rows
        assert rows["Q7"] == {**json_row, "sitelinks": None}  # this dump has no count: unknown, not 0
