"""WordNet and MetaCLIP parsing (pure Python, no Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgcurate.errors import UserError
from kgcurate.metadata import metaclip, normalize, wordnet

REAL_WORDNET = Path("/usr/share/wordnet")


# ------------------------------------------------------------------ WordNet

def test_fixture_excerpt_gives_exact_lemmas(fixtures):
    got = wordnet.read_dir(str(fixtures / "wordnet"))
    assert got.bad == []
    assert got.synsets == 20  # license headers (29 lines per file) are not synsets
    assert got.per_file[str(fixtures / "wordnet" / "data.noun")] == 11
    # 02084071 dog: three lemmas, underscores to spaces, case kept
    assert {"dog", "domestic dog", "Canis familiaris"} <= set(got.entries)
    # 07697537 and 10187710 both hold hotdog/hot_dog: entries are distinct
    assert got.entries.count("hot dog") == 1 and "hotdog" in got.entries and "red hot" in got.entries
    # adjective markers (ip) (p) (a) are not part of the lemma
    assert {"galore", "ready to hand", "outback", "dead-on"} <= set(got.entries)
    assert not any("(" in e or "_" in e for e in got.entries)
    # w_cnt is hexadecimal: 00185778 has 0d = 13 lemmas, the last one is "abdominal_delivery"
    assert "abdominal delivery" in got.entries and "C-section" in got.entries
    # verbs and adverbs too
    assert {"bark", "unravel", "run", "chop-chop", "very"} <= set(got.entries)
    assert got.entries == sorted(got.entries)
    assert len(got.entries) == 67


def test_metaclip_mode_takes_each_synset_s_nltk_name(fixtures):
    """MetaCLIP's build_metadata.py: ``ss.name()[:first '.'].replace('_', ' ')``, NLTK naming a synset by
    its first lemma lowercased: one string per synset, lowercase, markers off."""
    got = wordnet.read_dir(str(fixtures / "wordnet"), mode="metaclip")
    assert got.bad == [] and got.synsets == 20
    assert "dog" in got.entries and "domestic dog" not in got.entries and "Canis familiaris" not in got.entries
    assert all(e == e.lower() and "(" not in e and "_" not in e for e in got.entries)
    assert len(got.entries) <= got.synsets
    assert wordnet.synset_name_entry(["Canis_familiaris", "dog"]) == "canis familiaris"
    assert wordnet.synset_name_entry(["St._Louis", "Saint_Louis"]) == "st"  # the name is cut at its first "."
    assert wordnet.synset_name_entry(["galore(ip)"]) == "galore"
    with pytest.raises(UserError, match="wordnet_entries"):
        wordnet.parse_files([], mode="nltk")


def test_parse_line_fields():
    line = "02128925 05 n 04 jaguar 0 panther 3 Panthera_onca 0 Felis_onca 0 002 @ 02127808 n 0000 | a big cat  "
    assert wordnet.parse_data_line(line) == ["jaguar", "panther", "Panthera_onca", "Felis_onca"]
    assert wordnet.lemma_to_entry("ready_to_hand(p)") == "ready to hand"
    assert wordnet.lemma_to_entry("galore(ip)") == "galore"
    assert wordnet.lemma_to_entry("Old_World_robin") == "Old World robin"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("02128925 05 n", "too few fields"),
        ("0212892x 05 n 01 jaguar 0 000 | g", "8-digit"),
        ("02128925 05 q 01 jaguar 0 000 | g", "ss_type"),
        ("02128925 05 n zz jaguar 0 000 | g", "hexadecimal"),
        ("02128925 05 n 09 jaguar 0 000 | g", "does not fit"),
        ("02128925 05 n 02 jaguar 0 panther Z 000 | g", "malformed"),
    ],
)
def test_bad_lines_are_reported_with_byte_offset(line, reason):
    header = b"  1 license line  \n  2 more license  \n"
    good = b"02084071 05 n 01 dog 0 000 | a dog  \n"
    data = header + good + line.encode() + b"\n" + good
    got = wordnet.parse_files([("x/data.noun", data)])
    assert got.synsets == 2 and got.entries == ["dog"]
    assert len(got.bad) == 1
    bad = got.bad[0]
    assert bad.offset == len(header) + len(good) and reason in bad.reason and bad.source_file == "x/data.noun"
    assert bad.sample == line


def test_non_utf8_line_is_a_bad_record():
    got = wordnet.parse_files([("d", b"02084071 05 n 01 caf\xe9 0 000 | x\n")])
    assert got.entries == [] and got.bad[0].reason == "not UTF-8" and got.bad[0].offset == 0


def test_missing_directory_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as err:
        wordnet.read_dir(str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "\n" not in msg and "wordnet-base" in msg and "--wordnet-dir" in msg and "--no-wordnet" in msg
    assert "metadata.wordnet_dir" in msg and "metadata.wordnet: false" in msg  # `kgcurate run` has no such flags


def test_directory_without_a_data_file_is_user_error(tmp_path, fixtures):
    for name in ("data.noun", "data.verb", "data.adj"):
        (tmp_path / name).write_bytes((fixtures / "wordnet" / name).read_bytes())
    with pytest.raises(UserError, match="not found in"):
        wordnet.read_dir(str(tmp_path))
    assert wordnet.read_dir(str(tmp_path), pos=("noun",)).synsets == 11


def test_default_directory_lookup(monkeypatch, fixtures, tmp_path):
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    monkeypatch.setattr(wordnet, "DEFAULT_DIRS", (str(tmp_path), str(fixtures / "wordnet")))
    assert wordnet.find_dir(None) == str(fixtures / "wordnet")
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))  # no data.noun there: falls through
    assert wordnet.find_dir(None) == str(fixtures / "wordnet")
    monkeypatch.setattr(wordnet, "DEFAULT_DIRS", ())
    with pytest.raises(UserError, match="looked in"):
        wordnet.read_dir(None)


@pytest.mark.skipif(not (REAL_WORDNET / "data.noun").is_file(), reason="wordnet-base not installed")
def test_real_wordnet_30():
    got = wordnet.read_dir(str(REAL_WORDNET))
    assert got.bad == []
    assert got.synsets == 117_659  # WordNet 3.0: 82,115 noun + 13,767 verb + 18,156 adj + 3,621 adv
    assert sorted(got.per_file.values()) == [3_621, 13_767, 18_156, 82_115]
    entries = set(got.entries)
    assert {"dog", "hot dog", "Canis familiaris", "Abraham Lincoln", "New York City", "galore"} <= entries
    assert not any("_" in e or e.endswith(("(a)", "(p)", "(ip)")) for e in entries)
    assert 140_000 < len(entries) < 160_000
    metaclip = set(wordnet.read_dir(str(REAL_WORDNET), mode="metaclip").entries)
    assert len(metaclip) == 86_554  # as NLTK's all_synsets() names them, deduplicated
    assert {"dog", "einstein", "new york"} <= metaclip and not {"Einstein", "domestic dog"} & metaclip


# ------------------------------------------------------------------ MetaCLIP

def test_metaclip_fixture(fixtures):
    got = metaclip.read_file(str(fixtures / "metaclip" / "metadata.json"))
    assert got.items == 80 and len(got.entries) == 80 and got.bad == [] and got.duplicates == 0
    assert got.entries[:3] == ["dog", "cat", "horse"]
    assert {"Crème brûlée", "猫", "New York City"} <= set(got.entries)


def test_metaclip_items_normalized_deduplicated_and_bad_ones_reported():
    data = json.dumps(["dog", "  hot\t dog ", "hot dog", 7, None, ["x"], "\u00a0\n", "cat"]).encode()
    got = metaclip.parse_bytes(data, "m.json")
    assert got.entries == ["dog", "hot dog", "cat"]
    assert got.items == 8 and got.duplicates == 1
    assert [(b.offset, b.reason) for b in got.bad] == [
        (3, "item is a JSON int, not a string"),
        (4, "item is a JSON NoneType, not a string"),
        (5, "item is a JSON list, not a string"),
        (6, "empty entry after whitespace normalization"),
    ]
    assert got.bad[2].sample == '["x"]' and all(b.source_file == "m.json" for b in got.bad)


@pytest.mark.parametrize(
    ("content", "words"),
    [(b'["dog", "cat",\n "fox"', "not valid JSON"), (b"", "not valid JSON"), (b'{"dog": 1}', "not a list")],
)
def test_metaclip_unusable_file_is_one_line_user_error(tmp_path, content, words):
    path = tmp_path / "metadata.json"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        metaclip.read_file(str(path))
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_an_unreadable_wordnet_file_is_one_line_naming_it(tmp_path, fixtures, monkeypatch):
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_bytes((fixtures / "wordnet" / name).read_bytes())
    real = type(tmp_path).read_bytes

    def failing(self):
        if self.name == "data.verb":
            raise OSError(5, "Input/output error")
        return real(self)

    monkeypatch.setattr(type(tmp_path), "read_bytes", failing)
    with pytest.raises(UserError) as err:
        wordnet.read_dir(str(tmp_path))
    assert str(err.value).startswith(f"cannot read WordNet file {tmp_path / 'data.verb'}: Input/output error")


def test_a_byte_order_mark_is_not_part_of_the_list(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_bytes('\ufeff["dog", "red fox"]'.encode())
    assert metaclip.read_file(str(path)).entries == ["dog", "red fox"]


def test_metaclip_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        metaclip.read_file(str(tmp_path / "absent.json"))


def test_normalize_all_whitespace_kinds():
    assert normalize(" a\u00a0\u3000b\r\n\tc\u2009 ") == "a b c"
    assert normalize("\u200b") == "\u200b"  # zero-width space is not whitespace: kept as is


def test_the_whitespace_class_is_pythons_isspace_set():
    """Captions collapse str.isspace characters; entries must collapse the same set, \\x1c-\\x1f included
    (an entry of only those passed as a string while the matcher dropped it as whitespace-only)."""
    import re

    from kgcurate.metadata import WS_PATTERN

    pattern = re.compile(WS_PATTERN)
    for code in range(0x110000):
        assert bool(pattern.fullmatch(chr(code))) == chr(code).isspace(), hex(code)
    assert normalize("\x1c dog\x1fhouse ") == "dog house"
    parsed = metaclip.parse_bytes(b'["\\u001f", "\\u001c \\u001d", "ok"]', "m.json")
    assert parsed.entries == ["ok"] and [b.offset for b in parsed.bad] == [0, 1]
