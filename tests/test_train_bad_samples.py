"""The trainer's bad input on its way to bad_records: spilled by workers, one line each, read back once."""

from __future__ import annotations

import json
import os

from kgcurate.bad_input import BadInput
from kgcurate.train import bad_samples


def test_spilled_items_are_read_back_once_and_a_torn_line_is_skipped(tmp_path) -> None:
    folder = str(tmp_path / bad_samples.FOLDER)
    first = BadInput("/s/00001.tar", 4, bad_samples.JSON_UNREADABLE, "000010004.json")
    bad_samples.spill(folder, first)
    bad_samples.spill(folder, BadInput("/s/00002.tar", 0, "shard unreadable", "x" * 500))
    [mine] = os.listdir(folder)
    with open(os.path.join(folder, "other-host-7.jsonl"), "w", encoding="utf-8") as f:  # another worker's
        f.write(json.dumps({"source_file": "/s/00001.tar", "offset": 4, "reason": bad_samples.JSON_UNREADABLE,
                            "sample": "again"}) + "\n")
        f.write('{"source_file": "/s/00003.tar", "off')  # killed mid-write
    got = bad_samples.read_spilled(folder)
    assert mine.endswith(f"-{os.getpid()}.jsonl")
    assert sorted((b.source_file, b.offset) for b in got) == [("/s/00001.tar", 4), ("/s/00002.tar", 0)]
    assert {b.sample for b in got} & {first.sample, "again"}  # one of the two notes of that sample kept
    assert max(len(b.sample or "") for b in got) == 200  # samples cut as bad_records keeps them
    assert bad_samples.read_spilled(str(tmp_path / "none")) == []
