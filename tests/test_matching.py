"""MetaCLIP substring matching: the automaton agrees exactly with a plain per-entry loop."""

from __future__ import annotations

import contextlib
import random
import string

import numpy as np
import pytest

from kgcurate import matching

# --- an independent reference, written the way MetaCLIP writes it -------------------------------


def ref_spacing(text: str) -> str:
    spaced = f" {text} "
    for p in [",", ".", ";", ":", "?", "!", "`"]:
        spaced = spaced.replace(p, f" {p} ")
    for c in ["\t", "\n", "\r"]:
        spaced = spaced.replace(c, " ")
    return spaced


def ref_no_space(ch: str) -> bool:
    cp = ord(ch)
    cjk = (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2EE5F
           or 0xF900 <= cp <= 0xFAFF or 0x2E80 <= cp <= 0x2FFF or 0x2F800 <= cp <= 0x2FA1F
           or 0x30000 <= cp <= 0x323AF)
    sea = 0x0E00 <= cp <= 0x0EFF or 0x1000 <= cp <= 0x109F or 0x1780 <= cp <= 0x17FF or 0x0F00 <= cp <= 0x0FFF
    return cjk or sea or ch in string.punctuation or ch in "，。、；：？！“”‘’（）【】《》〈〉「」『』～—"


def ref_wrap(entry: str) -> str:
    if not ref_no_space(entry[0]):
        entry = " " + entry
    if not ref_no_space(entry[-1]):
        entry = entry + " "
    return entry


def ref_match(text: str, entries: list[tuple[int, str]], lowercase: bool = False) -> set[int]:
    spaced = ref_spacing(text.lower() if lowercase else text)
    return {eid for eid, e in entries if ref_wrap(e.lower() if lowercase else e) in spaced}


# --- realistic generated data ---------------------------------------------------------------------

ENTRY_WORDS = [
    "dog", "hot dog", "hot", "Dog", "New York", "York", "New York City", "city", "cat", "black cat",
    "C++", "U.S.", "Mr.", "e-mail", "rock 'n' roll", "狗", "小狗", "热狗", "猫", "北京", "北京大学",
    "แมว", "Tokyo", "東京", "東京タワー", "red", "red car", "car", "sports car", "the", "a", "A",
    "ice cream", "cream", "ice", "naïve", "café", "Zürich", "T-shirt", "shirt", "St. Louis", "Louis",
    "!", "?!", "x", "100%", "50 cent", "New", "（注）", "《红楼梦》", "Harry Potter", "Potter",
]


def make_entries(rng: random.Random, extra: int = 250) -> list[tuple[int, str]]:
    words = list(ENTRY_WORDS)
    letters = string.ascii_lowercase
    for _ in range(extra):
        n = rng.choice([1, 1, 1, 2, 3])
        words.append(" ".join("".join(rng.choices(letters[:8], k=rng.randint(2, 5))) for _ in range(n)))
    entries = [(i * 7919 - 50_000, w) for i, w in enumerate(words)]
    # the same string under two ids (a lemma and a KG name of another qid) must give both ids
    entries += [(10**12 + 1, "dog"), (10**12 + 2, "狗"), (10**12 + 3, "hot dog")]
    return entries


def corpus_of(seed: int, n_entries: int, n_captions: int) -> tuple[list[tuple[int, str]], list[str]]:
    """(the first ``n_entries`` entries, ``n_captions`` captions naming them), from one seeded generator."""
    rng = random.Random(seed)
    entries = make_entries(rng)[:n_entries]
    return entries, make_captions(rng, entries, n_captions)


def make_captions(rng: random.Random, entries: list[tuple[int, str]], n: int) -> list[str]:
    names = [e for _, e in entries]
    fillers = ["photo", "of", "my", "a", "the", "image", "in", "with", "and", "at", "on", "very", "big",
               "stock", "picture", "DSC_0042.JPG", "dogs", "hotdog", "york", "NEW", "cats,", "Cat"]
    puncts = [",", ".", ";", ":", "?", "!", "`", "\t", "\n", "\r", " - ", "'", '"', "(", ")", "…", "，", "。"]
    out = []
    for _ in range(n):
        parts: list[str] = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(names))
            elif r < 0.7:
                parts.append(rng.choice(fillers))
            elif r < 0.85:
                parts.append(rng.choice(puncts))
            else:  # unspaced CJK run glued to neighbours
                parts.append("".join(rng.choices("狗小热猫北京大学東京タワーの写真我的和", k=rng.randint(1, 6))))
        sep = rng.choice([" ", " ", " ", "", "  "])
        caption = sep.join(parts)
        if rng.random() < 0.1:
            caption = caption.upper()
        out.append(caption)
    out += ["", " ", "dog", "hot dog dog", "a hot dog, hot dog.", "狗", "我的小狗", "C++!", "U.S.A."]
    return out


@pytest.fixture(scope="module")
def data() -> tuple[list[tuple[int, str]], list[str]]:
    rng = random.Random(1234)
    entries = make_entries(rng)
    return entries, make_captions(rng, entries, 10_000)


# --- unit behaviour --------------------------------------------------------------------------------


def test_spacing_matches_metaclip_chain() -> None:
    assert matching.spacing("a,b.c") == " a , b . c "
    assert matching.spacing("x\ty\nz\r") == " x y z  "
    for text in ["", "hello world", "end.", "`quoted`", "a;b:c?d!e", "tab\there", "ünï,cödé"]:
        assert matching.spacing(text) == ref_spacing(text)


def test_batch_spacing_agrees_with_spacing_for_every_special_char() -> None:
    """match_batch inlines spacing(): each wrapped/blanked character must behave the same there."""
    specials = matching.PUNCTS_TO_WRAP + matching.CHARS_TO_SPACE
    entries = ["dog", "hot dog", "dog,", ", dog", "dog ,", "a"] + [f"dog {c}" for c in specials]
    m = matching.Matcher.build(np.arange(len(entries)), entries)
    texts = [f"dog{c}hot{c}dog{c}a" for c in specials] + [f"{c}dog{c}" for c in specials] + ["x,y.z;w:v?u!t`s\tr\nq\rp"]
    rows, ids = m.match_batch(texts)
    got: list[set[int]] = [set() for _ in texts]
    for r, e in zip(rows.tolist(), ids.tolist(), strict=True):
        got[r].add(e)
    for text, found in zip(texts, got, strict=True):
        want = {i for i, e in enumerate(entries) if matching.wrap_entry(e) in matching.spacing(text)}
        assert found == want == m.match(text), text


@pytest.mark.parametrize(
    ("entry", "wrapped"),
    [("dog", " dog "), ("狗", "狗"), ("小狗 dog", "小狗 dog "), ("C++", " C++"), ("(x)", "(x)"),
     ("《红楼梦》", "《红楼梦》"), ("แมว", "แมว"), ("Zürich", " Zürich "),
     ("\U00030EDE\U00030EDE面", "\U00030EDE\U00030EDE面"),  # extension G (biangbiang noodles)
     ("\U0002F80F", "\U0002F80F"), ("\U0002EBF0x", "\U0002EBF0x ")],  # compatibility supplement, extension I
)
def test_wrap_entry(entry: str, wrapped: str) -> None:
    assert matching.wrap_entry(entry) == wrapped


def test_word_boundaries_and_overlaps() -> None:
    m = matching.Matcher.build([1, 2, 3, 4, 5], ["hot dog", "dog", "hot", "狗", "Dog"])
    assert m.match("a hot dog") == {1, 2, 3}
    assert m.match("hotdog") == set()
    assert m.match("dogs") == set()
    assert m.match("dog.") == {2}  # punctuation is spaced off
    assert m.match("我的小狗很好") == {4}  # CJK entries match without spaces
    g = matching.Matcher.build([1], ["\U00030EDE\U00030EDE面"])
    assert g.match("我爱吃\U00030EDE\U00030EDE面") == {1}  # so do those of the newer extensions
    assert m.match("DOG") == set()  # case-sensitive by default
    lower = matching.Matcher.build([1, 2, 5], ["hot dog", "dog", "Dog"], lowercase=True)
    assert lower.match("HOT DOG") == {1, 2, 5}


def test_same_string_maps_to_all_its_ids() -> None:
    m = matching.Matcher.build([10, 11, 12], ["dog", "dog", "cat"])
    assert not m.single
    assert m.match("dog and cat") == {10, 11, 12}
    rows, ids = m.match_batch(["dog", "none", "cat dog"])
    got = {(int(r), int(e)) for r, e in zip(rows, ids, strict=True)}
    assert got == {(0, 10), (0, 11), (2, 10), (2, 11), (2, 12)}


def test_empty_entries_are_skipped_and_reported() -> None:
    m = matching.Matcher.build([1, 2, 3], ["", "  ", "dog"])
    assert m.skipped == [(1, "empty or whitespace-only entry"), (2, "empty or whitespace-only entry")]
    assert m.match("any dog") == {3}


def test_laid_out_automaton_holds_the_same_words(tmp_path, monkeypatch, caplog) -> None:
    """Saved and loaded again (for locality) or, when no temporary file can be written, as built."""
    keys = [" dog ", " hot dog ", "狗", " cat "]
    text = " a hot dog 狗 cat "
    expected = sorted((text.index(k) + len(k) - 1, i) for i, k in enumerate(keys))
    laid_out = matching.build_automaton(keys)
    assert dict(laid_out.items()) == {k: i for i, k in enumerate(keys)}
    assert sorted(laid_out.iter(text)) == expected
    monkeypatch.setattr(matching.tempfile, "TemporaryDirectory",
                        lambda prefix: contextlib.nullcontext(str(tmp_path / "missing")))
    as_built = matching.build_automaton(keys)
    assert sorted(as_built.iter(text)) == expected
    assert "used as built" in caplog.text and "FileNotFoundError" in caplog.text
    assert len(matching.build_automaton([])) == 0


def test_empty_metadata_matches_nothing() -> None:
    m = matching.Matcher.build([], [])
    rows, ids = m.match_batch(["dog"])
    assert len(rows) == len(ids) == 0
    assert m.match("dog") == set()


# --- agreement with the reference on 10k generated captions ----------------------------------------


@pytest.mark.parametrize("lowercase", [False, True])
def test_automaton_agrees_with_reference(data, lowercase: bool) -> None:
    entries, captions = data
    m = matching.Matcher.build([e for e, _ in entries], [w for _, w in entries], lowercase=lowercase)
    rows, ids = m.match_batch(captions)
    got: list[set[int]] = [set() for _ in captions]
    for r, e in zip(rows.tolist(), ids.tolist(), strict=True):
        got[r].add(e)
    assert len(rows) == sum(len(s) for s in got), "a caption's matches must be a set (no duplicates)"
    total = 0
    for i, caption in enumerate(captions):
        want = ref_match(caption, entries, lowercase)
        assert got[i] == want, caption
        assert matching.reference_match(caption, entries, lowercase) == want
        total += len(want)
    # the data is realistic enough to exercise the interesting cases
    assert total > 10_000
    ids_of = {}
    for eid, w in entries:
        ids_of.setdefault(w, []).append(eid)
    hit = set(ids.tolist())
    for w in ["hot dog", "小狗", "C++", "東京タワー", "《红楼梦》"]:
        assert set(ids_of[w]) <= hit, w


def test_entry_counts_from_batch(data) -> None:
    entries, captions = data
    m = matching.Matcher.build([e for e, _ in entries], [w for _, w in entries])
    _, ids = m.match_batch(captions)
    uniq, cnt = np.unique(ids, return_counts=True)
    got = dict(zip(uniq.tolist(), cnt.tolist(), strict=True))
    want: dict[int, int] = {}
    for caption in captions:
        for e in ref_match(caption, entries):
            want[e] = want.get(e, 0) + 1
    assert got == want
