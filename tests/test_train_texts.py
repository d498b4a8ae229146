"""The text draw: the observed KG share matches --kg-text-share, draws are reproducible, bad JSON is not fatal."""

from __future__ import annotations

import json
import math

import pytest

from kgcurate.train.texts import draw_text, split_texts, text_of_json

ALT = [{"text": "a red square", "text_source": "alt"}, {"text": "red block photo", "text_source": "title"}]
KG = [{"text": "red", "text_source": "kg_label", "qid": "Q1"}, {"text": "scarlet", "text_source": "kg_alias"}]


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_the_kg_share_over_many_draws_matches_p(share: float) -> None:
    n = 20_000
    kg_texts = {t["text"] for t in KG}
    hits = sum(draw_text(ALT + KG, "a red square", share, 7, pass_index=i % 5, key=f"{i:09d}") in kg_texts
               for i in range(n))
    bound = 4 * math.sqrt(n * share * (1 - share)) + 1  # 4 sigma of a binomial; exact at 0 and 1
    assert abs(hits - n * share) <= bound, (hits, n * share)


def test_within_a_kind_every_text_is_drawn_evenly() -> None:
    n = 8_000
    seen = [draw_text(ALT + KG, "x", 0.5, 0, 0, f"k{i}") for i in range(n)]
    for t in ALT + KG:  # each text is 1/4 of the draws
        assert abs(seen.count(t["text"]) - n / 4) <= 4 * math.sqrt(n * 0.25 * 0.75)


def test_a_name_two_pairs_of_the_image_matched_is_drawn_as_often_as_the_others() -> None:
    """`texts` has a row per (pair, text): "dog" reached through two pairs of one image came twice (and "Dog"
    beside it is the same text to the lower-casing tokenizer), so it was drawn twice as often as "cat"."""
    texts = [{"text": "a dog on grass", "text_source": "alt", "pair_id": 1},
             {"text": "dog", "text_source": "kg_label", "qid": "Q144", "pair_id": 1},
             {"text": "my dog and cat", "text_source": "alt", "pair_id": 2},
             {"text": "dog", "text_source": "kg_label", "qid": "Q144", "pair_id": 2},
             {"text": "Dog ", "text_source": "kg_alias", "qid": "Q144", "pair_id": 2},
             {"text": "cat", "text_source": "kg_label", "qid": "Q146", "pair_id": 2}]
    assert split_texts(texts) == (["a dog on grass", "my dog and cat"], ["dog", "cat"])
    n = 8_000
    seen = [draw_text(texts, "x", 1.0, 0, 0, f"k{i}") for i in range(n)]
    assert abs(seen.count("dog") - n / 2) <= 4 * math.sqrt(n / 4) and seen.count("Dog ") == 0


def test_a_draw_is_a_function_of_seed_pass_key_and_visit() -> None:
    args = (ALT + KG, "x", 0.5)
    one = [draw_text(*args, 3, 1, f"k{i}") for i in range(200)]
    assert one == [draw_text(*args, 3, 1, f"k{i}") for i in range(200)]
    for other in ([draw_text(*args, 4, 1, f"k{i}") for i in range(200)],  # seed
                  [draw_text(*args, 3, 2, f"k{i}") for i in range(200)],  # pass
                  [draw_text(*args, 3, 1, f"k{i}", visit=1) for i in range(200)]):  # second visit in a pass
        assert sum(a != b for a, b in zip(one, other, strict=True)) > 50


def test_samples_with_one_kind_of_text_show_that_kind() -> None:
    assert {draw_text(ALT, "p", 1.0, 0, 0, f"k{i}") for i in range(50)} <= {t["text"] for t in ALT}
    assert {draw_text(KG, "p", 0.0, 0, 0, f"k{i}") for i in range(50)} <= {t["text"] for t in KG}
    assert draw_text([], "primary", 0.5, 0, 0, "k") == "primary"
    assert draw_text([{"text": " ", "text_source": "alt"}, {"text_source": "kg_label"}], "p", 0.5, 0, 0, "k") == "p"


def test_split_texts_sorts_by_source() -> None:
    assert split_texts(ALT + KG + [{"text": "d", "text_source": "kg_description"}]) == (
        ["a red square", "red block photo"], ["red", "scarlet", "d"])


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"texts": "a string"}', None])
def test_unreadable_json_shows_the_primary_text_and_says_so(raw) -> None:
    assert text_of_json(raw, "primary", 0.5, 0, 0, "k") == ("primary", False)


def test_json_texts_are_drawn_from() -> None:
    raw = json.dumps({"key": "k", "texts": KG}).encode()
    text, ok = text_of_json(raw, "primary", 1.0, 0, 0, "k")
    assert ok and text in {"red", "scarlet"}
