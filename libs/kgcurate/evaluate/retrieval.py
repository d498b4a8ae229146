"""Image-text retrieval on held-out webdataset shards (``KEY.jpg`` + ``KEY.txt``, as ``kgcurate
download`` writes them): every image against every text of the set, recall@K both ways.

Shards are read with webdataset; a sample whose image does not decode or that lacks its text, and a
tar that cannot be read, are listed with their key or file, never a crash.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kgcurate.errors import UserError
from kgcurate.evaluate import metrics
from kgcurate.evaluate.model import LoadedModel


@dataclass(frozen=True)
class RetrievalResult:
    recall: dict[str, float]  # "image_to_text_R@1" ... "text_to_image_R@10"
    samples: int
    unreadable: list[tuple[str, str]]  # (key or shard, why)


def shard_files(spec: str) -> list[str]:
    """The ``.tar`` files of a folder, a glob or one file, sorted; none is one clear line."""
    files = sorted(glob.glob(os.path.join(spec, "*.tar") if os.path.isdir(spec) else spec))
    if not files:
        raise UserError(f"evaluate: no webdataset shards (*.tar) at {spec}: pass the folder `kgcurate download "
                        "--out` wrote, or a glob of its tars")
    return files


def iter_pairs(files: Sequence[str], unreadable: list[tuple[str, str]],
               limit: int | None = None) -> Iterator[tuple[str, Any, str]]:
    """(key, RGB image, text) of the first ``limit`` good samples, in shard order, one at a time (5,000
    decoded images would not fit memory at once); what cannot be used is appended to ``unreadable``."""
    import io

    import webdataset as wds
    from PIL import Image

    def handler(exc: Exception) -> bool:
        # webdataset adds the shard's URL to the exception's args; a shard's error is listed once
        named = re.search(r"name='([^']+)'", str(exc))
        where = next((a for a in exc.args[1:] if isinstance(a, str)), named.group(1) if named else "a shard")
        if where not in {w for w, _ in unreadable}:
            why = re.sub(r" @ <.*", "", str(exc.args[0] if exc.args else exc))
            unreadable.append((where, f"{type(exc).__name__}: {why[:200]}"))
        return True  # go on with the next shard or sample

    good = 0
    for sample in wds.WebDataset(list(files), shardshuffle=False, handler=handler):
        key = sample.get("__key__", "?")
        if "jpg" not in sample or "txt" not in sample:
            unreadable.append((key, "sample lacks its jpg or txt member"))
            continue
        try:
            with Image.open(io.BytesIO(sample["jpg"])) as im:
                image = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            unreadable.append((key, f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        yield key, image, sample["txt"].decode("utf-8", "replace")
        good += 1
        if limit is not None and good >= limit:
            return


def read_pairs(files: Sequence[str], limit: int | None = None) -> tuple[list[tuple[str, Any, str]], list]:
    """:func:`iter_pairs` as a list, with the unreadable list."""
    unreadable: list[tuple[str, str]] = []
    return list(iter_pairs(files, unreadable, limit)), unreadable


def evaluate(m: LoadedModel, spec: str, ks: Sequence[int] = (1, 5, 10), batch_size: int = 64,
             limit: int | None = 5000) -> RetrievalResult:
    """Recall@K of ``m`` on the shards at ``spec`` (the first ``limit`` samples), embedded a batch at a
    time; only the embeddings are kept."""
    unreadable: list[tuple[str, str]] = []
    image_emb, text_emb = [], []
    pairs = iter_pairs(shard_files(spec), unreadable, limit)
    with torch.no_grad():
        while chunk := list(itertools.islice(pairs, batch_size)):
            images = torch.stack([m.preprocess(image) for _, image, _ in chunk]).to(m.device)
            image_emb.append(m.model.encode_image(images, normalize=True).float().cpu())
            texts = m.tokenizer([text for _, _, text in chunk]).to(m.device)
            text_emb.append(m.model.encode_text(texts, normalize=True).float().cpu())
    if not image_emb:  # nothing usable: every metric undefined (null rows replace older ones)
        return RetrievalResult(metrics.retrieval_recall(torch.empty(0, 1), torch.empty(0, 1), ks), 0, unreadable)
    images_all, texts_all = torch.cat(image_emb), torch.cat(text_emb)
    return RetrievalResult(metrics.retrieval_recall(images_all, texts_all, ks), len(images_all), unreadable)
