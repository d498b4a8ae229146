"""Which text a training sample shows each time it is drawn.

A sample's ``KEY.json`` lists its texts (``texts``: text, text_source, qid, pair_id, language): the curated
alt/title texts of its pairs and the knowledge-graph names and descriptions of the entities they matched.
With ``kg_text_share`` P a draw shows a KG text with probability P when the sample has one, else one of its
curated texts (EntityNet mixed the two 50/50, which beat either alone; MetaCLIP draws one of an image's
texts each epoch). Within the chosen kind the text is uniform.

The draw is a pure function of (seed, pass, key, visit): a rerun shows the same texts, another pass over
the shards shows others. It hashes instead of keeping a random generator, so dataloader workers need no
shared state and their order does not matter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

CURATED_SOURCES = frozenset({"alt", "title"})
KG_PREFIX = "kg_"
_SCALE = float(2**64)


def is_kg(text_source: str | None) -> bool:
    return bool(text_source) and str(text_source).startswith(KG_PREFIX)


def _uniforms(seed: int, pass_index: int, key: str, visit: int) -> tuple[float, int]:
    """A uniform float in [0, 1) and a 64-bit integer, both fixed by the arguments."""
    digest = hashlib.blake2b(f"{seed}/{pass_index}/{key}/{visit}".encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little") / _SCALE, int.from_bytes(digest[8:], "little")


def split_texts(texts: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(curated texts, KG texts) of a ``texts`` list; empty or non-string texts are left out.

    Each kind lists a text once: ``texts`` has a row per (pair, text), so an entity two pairs of one image
    matched is listed twice, and "Dog" beside "dog" is one text to the tokenizer (it lower-cases and
    collapses spaces); counted twice, it would be drawn twice as often as the image's other names."""
    pools: tuple[list[str], list[str]] = ([], [])
    seen: tuple[set[str], set[str]] = (set(), set())
    for t in texts:
        text = t.get("text") if isinstance(t, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            continue
        kind = int(is_kg(t.get("text_source")))
        folded = " ".join(text.lower().split())
        if folded not in seen[kind]:
            seen[kind].add(folded)
            pools[kind].append(text)
    return pools


def draw_text(texts: Sequence[Mapping[str, Any]], primary: str, kg_text_share: float, seed: int, pass_index: int,
              key: str, visit: int = 0) -> str:
    """The text shown for sample ``key`` at this draw: a KG text with probability ``kg_text_share`` when the
    sample has one (and always when it has nothing else), else a curated one; ``primary`` (``KEY.txt``)
    when ``texts`` holds neither."""
    curated, kg = split_texts(texts)
    if not kg and not curated:
        return primary
    u, n = _uniforms(seed, pass_index, key, visit)
    pool = kg if kg and (not curated or u < kg_text_share) else curated
    return pool[n % len(pool)]


def text_of_json(raw: bytes | str | None, primary: str, kg_text_share: float, seed: int, pass_index: int, key: str,
                 visit: int = 0) -> tuple[str, bool]:
    """:func:`draw_text` over a sample's raw ``KEY.json``; (text, ok). Unreadable JSON is not fatal: the
    sample shows ``primary`` and ``ok`` is False, for the caller to count."""
    if raw is None:
        return primary, False
    try:
        meta = json.loads(raw)
        texts = meta.get("texts") or []
        if not isinstance(texts, list):
            return primary, False
    except (ValueError, AttributeError):
        return primary, False
    return draw_text(texts, primary, kg_text_share, seed, pass_index, key, visit), True
