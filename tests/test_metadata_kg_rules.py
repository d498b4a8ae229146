"""KG alias guards as pure rules (the spec the Spark code is checked against in test_metadata_spark)."""

from __future__ import annotations

import pytest

from kgcurate.errors import UserError
from kgcurate.metadata import kg

# (qid, label, aliases, common_names, taxon_name, sitelinks): shaped like Wikidata's own entries.
ENTITIES = [
    ("Q144", "dog", ["domestic dog", "Canis familiaris", "doggy", "  "], ["dog", "domestic  dog"],
     "Canis lupus familiaris", 250),
    ("Q146", "house cat", ["cat", "domestic cat", "猫", "The"], ["cat"], "Felis catus", 240),
    ("Q228283", "Felis", ["cat", "cats"], None, "Felis", 60),
    ("Q35255", "cougar", ["puma", "mountain lion", "mountain\u00a0lion\u3000", "Puma concolor"], None,
     "Puma concolor", 120),
    ("Q190000", "Puma", None, None, "Puma", 40),
    ("Q830", "cattle", ["ox", "cow", "Bos taurus"], ["cow"], None, None),
]


def run(**cfg):
    return kg.build_entries(ENTITIES, kg.Guards.from_config(cfg))


def test_keep_most_sitelinks():
    kept, dropped = run()
    reasons = {(e, q): r for e, q, r in dropped}
    assert reasons == {
        ("", "Q144"): "empty",
        ("The", "Q146"): "stop_word",
        ("ox", "Q830"): "too_short",
        ("cat", "Q228283"): "shared_alias",  # both have it as alias: the cat with more sitelinks keeps it
        ("puma", "Q35255"): "shared_alias",  # "Puma" is the genus' label: a label beats an alias
    }
    assert ("cat", "Q146") in kept and ("Puma", "Q190000") in kept and ("猫", "Q146") in kept
    # whitespace-normalized and deduplicated per (entry, qid): "domestic  dog" == "domestic dog"
    assert ("domestic dog", "Q144") in kept and ("dog", "Q144") in kept
    assert sum(1 for e, q in kept if q == "Q144") == 5  # dog, domestic dog, Canis familiaris, doggy, taxon
    assert ("Felis", "Q228283") in kept  # label and taxon name are the same string: one entry
    assert ("cow", "Q830") in kept and ("Bos taurus", "Q830") in kept
    assert len(kept) == 19  # 5 dog + 5 house cat + 2 Felis + 3 cougar + 1 Puma + 3 cattle


def test_drop_mode_keeps_only_a_sole_label_holder():
    kept, dropped = run(shared_alias="drop")
    shared = sorted((e, q) for e, q, r in dropped if r == "shared_alias")
    assert shared == [("cat", "Q146"), ("cat", "Q228283"), ("puma", "Q35255")]
    assert ("Puma", "Q190000") in kept


def test_min_qids_threshold_and_min_length():
    kept, dropped = run(shared_alias_min_qids=3, min_length=2)
    assert {"cat", "ox"} <= {e for e, _ in kept}
    assert [r for _, _, r in dropped].count("shared_alias") == 0
    assert ("cat", "Q146") in kept and ("cat", "Q228283") in kept


def test_two_labels_keep_mode_picks_most_sitelinks_and_qid_breaks_ties():
    ents = [("Q2", "Mercury", None, None, None, 10), ("Q1", "Mercury", None, None, None, 10),
            ("Q3", "mercury", None, None, None, 99), ("Q4", "x", ["Mercury"], None, None, 500)]
    guards = kg.Guards()
    kept, dropped = kg.build_entries(ents, guards)
    assert ("mercury", "Q3") in kept and ("Mercury", "Q4") not in kept
    assert {q for _, q, r in dropped if r == "shared_alias"} == {"Q1", "Q2", "Q4"}
    assert kg.shared_keepers([("Q2", 0, 10), ("Q1", 0, 10)], guards) == {"Q1"}
    assert kg.shared_keepers([("Q2", 0, 10), ("Q1", 0, 10)], kg.Guards(shared_alias="drop")) == set()


def test_row_reason_rules():
    g = kg.Guards()
    assert kg.row_reason("", g) == "empty"
    assert kg.row_reason("ox", g) == "too_short"
    assert kg.row_reason("猫", g) is None  # one CJK character can be a whole word
    assert kg.row_reason("The", g) == "stop_word" and kg.row_reason("WHICH", g) == "stop_word"
    assert kg.row_reason("eel", g) is None and kg.row_reason("Theria", g) is None
    assert kg.row_reason("北京", kg.Guards(min_length_cjk=3)) == "too_short"
    assert kg.is_cjk("猫の写真") and kg.is_cjk("한국") and not kg.is_cjk("Crème brûlée")
    # CJK extension B and beyond: one character is a word there too, as the matcher treats it unspaced
    for char in ("\U00020000", "\U00029E3D", "\U0002A700", "\U0002F800", "\U00030000"):
        assert kg.is_cjk(char) and kg.row_reason(char, g) is None, hex(ord(char))
    assert not kg.is_cjk("\U0001F600") and kg.row_reason("\U0001F600", g) == "too_short"  # an emoji is not
    no_stop = kg.Guards.from_config({"stop_words": False, "extra_stop_words": ["Photo"]})
    assert kg.row_reason("The", no_stop) is None and kg.row_reason("photo", no_stop) == "stop_word"


@pytest.mark.parametrize(
    "section",
    [{"shared_alias": "keep_first"}, {"min_length": -1}, {"min_length": "3"}, {"shared_alias_min_qids": 1},
     {"extra_stop_words": "the"}, {"min_length_cjk": True}],
)
def test_bad_guard_config_is_user_error(section):
    with pytest.raises(UserError, match="metadata."):
        kg.Guards.from_config(section)
