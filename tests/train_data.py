"""Generated training input for the train tests and bench: webdataset shards written by the download
stage's own writer (kgcurate.download.shards, pure) and the download_runs / downloads rows that list them,
written with deltalake in the tables' declared schemas (no Spark)."""

from __future__ import annotations

import io
import os
import random
from datetime import datetime, timezone

import pyarrow as pa
from PIL import Image

from kgcurate import tables
from kgcurate.download.shards import TarSample, shard_name, write_shard, write_sizes
from kgcurate.train.lake_input import table_uri

# Classes a tiny CLIP can tell apart in a few dozen steps: a colour and where a square sits.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}
PLACES = {"left": (2, 10), "right": (18, 10), "top": (10, 2), "bottom": (10, 18)}


def jpeg(colour: tuple[int, int, int], place: tuple[int, int], rng: random.Random, size: int = 32) -> bytes:
    noise = bytes(rng.randrange(60, 120) for _ in range(size * size * 3))
    img = Image.frombytes("RGB", (size, size), noise)
    img.paste(colour, (*place, place[0] + 12, place[1] + 12))
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


def write_shards(out: str, n: int, per_shard: int, seed: int = 0, kg_every: int = 2) -> dict[int, int]:
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
            TarSample(key, jpeg(COLOURS[colour], PLACES[place], rng), texts[0]["text"], meta))
    for shard, samples in by_shard.items():
        write_shard(out, shard, samples)
    counts = {s: len(v) for s, v in by_shard.items()}
    write_sizes(out, {shard_name(s): c for s, c in counts.items()})
    return counts


def record_download(lake: str, out: str, counts: dict[int, int], run_id: str = "download-1",
                    curated_run_id: str = "balance-abc") -> None:
    """The download_runs row listing the shards and the downloads rows of their images (deltalake)."""
    from deltalake import write_deltalake

    now = datetime.now(timezone.utc)
    run = {"run_id": run_id, "curated_run_id": curated_run_id, "curated_version": 3, "out": out,
           "params": [("shard_size", str(max(counts.values())))],
           "shards": [{"shard": s, "file": shard_name(s), "samples": c, "urls": c} for s, c in sorted(counts.items())],
           "urls": sum(counts.values()), "succeeded": sum(counts.values()), "success_rate": 1.0,
           "bytes": 0, "started_at": now, "finished_at": now}
    write_deltalake(table_uri(lake, tables.DOWNLOAD_RUNS),
                    pa.Table.from_pylist([run], schema=tables.arrow_schema(tables.DOWNLOAD_RUNS)), mode="append")
    rows = [{"curated_run_id": curated_run_id, "image_url": f"http://img.test/{s}-{i}.jpg", "shard": s,
             "key": f"{s:05d}{i:04d}", "status": "success", "attempts": 1, "download_run_id": run_id}
            for s, c in counts.items() for i in range(c)]
    write_deltalake(table_uri(lake, tables.DOWNLOADS),
                    pa.Table.from_pylist(rows, schema=tables.arrow_schema(tables.DOWNLOADS)), mode="append")


def make_input(root: str, n: int = 256, per_shard: int = 64, seed: int = 0) -> tuple[str, str]:
    """A lake and a shard folder under ``root`` holding one download of ``n`` generated samples."""
    lake, out = os.path.join(root, "lake"), os.path.join(root, "shards")
    record_download(lake, out, write_shards(out, n, per_shard, seed))
    return lake, out
