"""Image-text retrieval on held-out webdataset shards (``KEY.jpg`` + ``KEY.txt``, as ``kgcurate
download`` writes them): every image against every text of the set, recall@K both ways.

Shards are read with webdataset; a sample whose image does not decode or that lacks its text, and a
tar that cannot be read, are listed with their key or file, never a crash, and each is also a
:class:`~kgcurate.bad_input.BadInput` (shard, the sample's position in it, reason) for ``bad_records``.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kgcurate.bad_input import SAMPLE_CHARS, SHARD_DAMAGED, BadInput, shard_error
from kgcurate.errors import UserError
from kgcurate.evaluate import metrics
from kgcurate.evaluate.folders import open_image
from kgcurate.evaluate.model import LoadedModel


@dataclass(frozen=True)
class RetrievalResult:
    recall: dict[str, float]  # "image_to_text_R@1" ... "text_to_image_R@10"
    samples: int
    unreadable: list[tuple[str, str]]  # (key or shard, why)
    bad: list[BadInput] = field(default_factory=list)  # the same, as bad_records rows


def shard_files(spec: str) -> list[str]:
    """The ``.tar`` files of a folder, a glob or one file, sorted; none is one clear line."""
    files = sorted(glob.glob(os.path.join(spec, "*.tar") if os.path.isdir(spec) else spec))
    if not files:
        raise UserError(f"evaluate: no webdataset shards (*.tar) at {spec}: pass the folder `kgcurate download "
                        "--out` wrote, or a glob of its tars")
    return files


# bad_records.reason of what retrieval cannot use (the detail goes to its sample column)
NO_MEMBER = "sample lacks its jpg or txt member"
NO_IMAGE = "image does not decode"
BAD_SHARD = SHARD_DAMAGED


def iter_pairs(files: Sequence[str], unreadable: list[tuple[str, str]],
               limit: int | None = None, bad: list[BadInput] | None = None) -> Iterator[tuple[str, Any, str]]:
    """(key, RGB image, text) of the first ``limit`` good samples, in shard order, one at a time (5,000
    decoded images would not fit memory at once); what cannot be used is appended to ``unreadable``
    and, as :class:`BadInput` (the shard; the sample's position in it, or for a damaged tar how many
    samples were read before the damage), to ``bad``."""
    import io

    import webdataset as wds

    bad = [] if bad is None else bad
    seen: dict[str, int] = {}  # shard -> samples read from it so far

    def handler(exc: Exception) -> bool:
        where, why = shard_error(exc)
        if where not in {w for w, _ in unreadable}:  # a shard's error is listed once
            unreadable.append((where, why))
            bad.append(BadInput(where, seen.get(where, 0), BAD_SHARD, why))
        return True  # go on with the next shard or sample

    good = 0
    for sample in wds.WebDataset(list(files), shardshuffle=False, handler=handler):
        key = sample.get("__key__", "?")
        url = str(sample.get("__url__", "?"))
        position = seen.get(url, 0)
        seen[url] = position + 1
        if "jpg" not in sample or "txt" not in sample:
            unreadable.append((key, NO_MEMBER))
            bad.append(BadInput(url, position, NO_MEMBER, key))
            continue
        image, error = open_image(io.BytesIO(sample["jpg"]))
        if image is None:
            unreadable.append((key, error))
            bad.append(BadInput(url, position, NO_IMAGE, f"{key}.jpg: {error}"[:SAMPLE_CHARS]))
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
    bad: list[BadInput] = []
    image_emb, text_emb = [], []
    captions: list[tuple] = []  # the token ids per caption: what the model sees, so equal ids are one answer
    pixels: list[tuple] = []  # (size, digest) per image: identical images are one answer
    pairs = iter_pairs(shard_files(spec), unreadable, limit, bad)
    with torch.no_grad():
        while chunk := list(itertools.islice(pairs, batch_size)):
            images = torch.stack([m.preprocess(image) for _, image, _ in chunk]).to(m.device)
            image_emb.append(m.model.encode_image(images, normalize=True).float().cpu())
            tokens = m.tokenizer([text for _, _, text in chunk])
            text_emb.append(m.model.encode_text(tokens.to(m.device), normalize=True).float().cpu())
            captions += [tuple(row) for row in tokens.tolist()]
            pixels += [(image.size, hashlib.sha1(image.tobytes()).digest()) for _, image, _ in chunk]
    if not image_emb:  # nothing usable: every metric undefined (null rows replace older ones)
        return RetrievalResult(metrics.retrieval_recall(torch.empty(0, 1), torch.empty(0, 1), ks), 0, unreadable, bad)
    images_all, texts_all = torch.cat(image_emb), torch.cat(text_emb)
    recall = metrics.retrieval_recall(images_all, texts_all, ks, texts=captions, images=pixels)
    return RetrievalResult(recall, len(images_all), unreadable, bad)
