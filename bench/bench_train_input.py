"""Training input speed per core: the loader ``kgcurate train`` feeds (open_clip's webdataset pipeline with
our text draw hooked in: decode + augment + a text drawn from ``KEY.json``) against open_clip's own
pipeline on the same shards (``get_wds_dataset`` with its default ``txt`` handling).

Both run ``open_clip_train.data.get_wds_dataset`` in this process (``workers=0``, one torch thread: one
core) with the same ViT-B-32 train transform (RandomResizedCrop to 224, normalise) and tokenizer over
generated 256 px shards (the download stage's default size), in interleaved rounds; the figure is the
median of the rounds' samples per CPU second and the ratio of the medians (issue 13: at least 0.9x).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_train_input.py                 # 2,000 samples, 5 rounds
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_train_input.py --samples 4000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from open_clip import get_tokenizer
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import image_transform
from open_clip_train import data as oc_data

from kgcurate.train.launch import DrawTexts, installed
from kgcurate.train.sample import write_shards


def one_pass(files: str, n: int, preprocess, tokenizer, batch: int) -> tuple[int, float]:
    """(samples, CPU seconds of this process) of one epoch of open_clip's training loader over ``files``.
    CPU time, not wall time: per core is what is asked, and on a shared machine wall time measures the
    neighbours (one thread, no workers: this process's CPU time is the loader's)."""
    args = argparse.Namespace(train_data=files, val_data=None, dataset_resampled=False, train_num_samples=n,
                              train_data_upsampling_factors=None, seed=0, workers=0, world_size=1, batch_size=batch)
    info = oc_data.get_wds_dataset(args, preprocess, is_train=True, tokenizer=tokenizer)
    t0 = time.process_time()
    seen = 0
    for images, texts in info.dataloader:
        assert images.shape[0] == texts.shape[0]
        seen += images.shape[0]
    return seen, time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--per-shard", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--kg-text-share", type=float, default=0.5)
    ap.add_argument("--dir", help="shard folder (default: a temp folder)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.dir:
        return measure(a, a.dir)
    with tempfile.TemporaryDirectory(prefix="kgcurate-bench-train-") as out:  # removed after
        return measure(a, out)


def measure(a: argparse.Namespace, out: str) -> int:
    counts = write_shards(out, a.samples, a.per_shard, kg_every=2, size=a.image_size)
    files = os.path.join(out, f"{{00000..{max(counts):05d}}}.tar")
    preprocess = image_transform(224, is_train=True, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    tokenizer = get_tokenizer("ViT-B-32")
    one_pass(files, a.samples, preprocess, tokenizer, a.batch)  # warm the page cache and imports
    rates: dict[str, list[float]] = {"open_clip": [], "ours": []}
    for r in range(a.rounds):
        for name in (("open_clip", "ours") if r % 2 == 0 else ("ours", "open_clip")):
            if name == "ours":
                with installed(DrawTexts(a.kg_text_share, seed=0, start_pass=r)):
                    seen, secs = one_pass(files, a.samples, preprocess, tokenizer, a.batch)
            else:
                seen, secs = one_pass(files, a.samples, preprocess, tokenizer, a.batch)
            rates[name].append(seen / secs)
    peer, ours = statistics.median(rates["open_clip"]), statistics.median(rates["ours"])
    per_round = [o / p for o, p in zip(rates["ours"], rates["open_clip"], strict=True)]
    print(f"training input, 1 core, {a.samples} samples of {a.image_size} px in {len(counts)} shards, "
          f"{a.rounds} interleaved rounds: open_clip's pipeline {peer:.1f} samples/s per core, ours (with the "
          f"text draw, kg share {a.kg_text_share}) {ours:.1f}: {ours / peer:.2f}x (rounds {min(per_round):.2f}-"
          f"{max(per_round):.2f}x; goal >= 0.9x)")
    print(json.dumps({"open_clip": rates["open_clip"], "ours": rates["ours"], "ratio": ours / peer}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
