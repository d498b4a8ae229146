"""What training could not fully use, from the dataloader workers to ``bad_records``.

The samples are read in open_clip's dataloader workers (other processes, on every torchrun rank), where
our text draw (:class:`kgcurate.train.launch.DrawTexts`) sees a sample whose ``KEY.json`` does not parse
(it trains on its ``KEY.txt``) and a shard webdataset cannot read on (cut off: the rest is skipped).
Each worker appends such an item once as a JSON line to its own file in the experiment folder
(``bad_input/<host>-<pid>.jsonl``: no two writers share a file, a line is one small append); when the
trainer has finished, rank 0 reads them all and records them in ``bad_records`` (job ``train``, the
train run id), where a rerun or resume adds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict

from kgcurate.bad_input import SAMPLE_CHARS, BadInput

log = logging.getLogger("kgcurate.train")
FOLDER = "bad_input"  # in the experiment folder
JSON_UNREADABLE = "sample json unreadable (trained on its txt)"


def folder_of(experiment_dir: str) -> str:
    return os.path.join(experiment_dir, FOLDER)


def spill(folder: str, bad: BadInput) -> None:
    """Append ``bad`` to this process's file in ``folder`` (made when missing)."""
    os.makedirs(folder, exist_ok=True)
    line = json.dumps(asdict(BadInput(bad.source_file, bad.offset, bad.reason,
                                      bad.sample[:SAMPLE_CHARS] if bad.sample else bad.sample)))
    with open(os.path.join(folder, f"{socket.gethostname()}-{os.getpid()}.jsonl"), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_spilled(folder: str) -> list[BadInput]:
    """Every item the workers spilled into ``folder``, once per (source_file, offset, reason); a torn
    last line (a worker killed mid-write) is skipped with a warning."""
    if not os.path.isdir(folder):
        return []
    seen: dict[tuple, BadInput] = {}
    torn = 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    b = BadInput(**json.loads(line))
                except (ValueError, TypeError):
                    torn += 1
                    continue
                seen.setdefault((b.source_file, b.offset, b.reason), b)
    if torn:
        log.warning("%s: %d unreadable lines (a worker killed while writing) skipped", folder, torn)
    return list(seen.values())
