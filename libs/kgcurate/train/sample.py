"""Generated webdataset shards in the download stage's layout (``KEY.jpg``, ``KEY.txt``, ``KEY.json`` with
curated and KG texts, ``sizes.json``), written by its own writer: the input of the train tests, the CPU
smoke run and ``bench/bench_train_input.py`` (as :mod:`kgcurate.wat.sample` is for WAT files).

The images are learnable by a tiny CLIP in a few dozen steps: a coloured square on noise, where colour and
place are what the texts name."""

from __future__ import annotations

import io
import random

from PIL import Image

from kgcurate.download.shards import TarSample, shard_name, write_shard, write_sizes

# Classes a tiny CLIP can tell apart in a few dozen steps: a colour and where a square sits.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}
PLACES = {"left": (2, 10), "right": (18, 10), "top": (10, 2), "bottom": (10, 18)}


def jpeg(colour: tuple[int, int, int], place: tuple[int, int], rng: random.Random, size: int = 32) -> bytes:
    """A ``size`` px JPEG: noise with a square of ``colour`` at ``place`` (given for 32 px, scaled)."""
    img = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3)).point(lambda v: 60 + v * 60 // 255)
    x, y, side = place[0] * size // 32, place[1] * size // 32, 12 * size // 32
    img.paste(colour, (x, y, x + side, y + side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def texts_of(colour: str, place: str, i: int, kg: bool = True) -> list[dict]:
    """Curated alt texts (two phrasings) and, with ``kg``, KG names of the sample's entity."""
    out = [{"text": f"a {colour} square on the {place}", "text_source": "alt", "qid": None, "pair_id": 2 * i,
            "language": None},
           {"text": f"{place} {colour} block photo", "text_source": "title", "qid": None, "pair_id": 2 * i + 1,
            "language": None}]
    if kg:
        out += [{"text": f"{colour} {place}", "text_source": "kg_label", "qid": f"Q{i % 16}", "pair_id": 2 * i,
                 "language": "en"},
                {"text": f"{colour} thing at {place}", "text_source": "kg_alias", "qid": f"Q{i % 16}",
                 "pair_id": 2 * i, "language": "en"}]
    return out


def write_shards(out: str, n: int, per_shard: int, seed: int = 0, kg_every: int = 2, size: int = 32) -> dict[int, int]:
    """``n`` samples in shards of ``per_shard``; every ``kg_every``-th sample has KG texts. Shard -> samples."""
    rng = random.Random(seed)
    by_shard: dict[int, list[TarSample]] = {}
    for i in range(n):
        shard, index = divmod(i, per_shard)
        colour, place = rng.choice(list(COLOURS)), rng.choice(list(PLACES))
        texts = texts_of(colour, place, i, kg=i % kg_every == 0)
        key = f"{shard:05d}{index:04d}"
        meta = {"key": key, "shard": shard, "url": f"http://img.test/{i}.jpg", "text": texts[0]["text"],
                "texts": texts}
        by_shard.setdefault(shard, []).append(
            TarSample(key, jpeg(COLOURS[colour], PLACES[place], rng, size), texts[0]["text"], meta))
    for shard, samples in by_shard.items():
        write_shard(out, shard, samples)
    counts = {s: len(v) for s, v in by_shard.items()}
    write_sizes(out, {shard_name(s): c for s, c in counts.items()})
    return counts
