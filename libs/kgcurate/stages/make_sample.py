"""``kgcurate make-sample``: realistic generated CommonCrawl WAT files for demos, tests and benchmarks.

Writes ``<out>/wat/CC-MAIN-2099-01-sample-NNNNN.warc.wat.gz``, a ``wat.paths.gz`` listing and a
``manifest.json`` of the pairs the parser must find (``conf/demo.yaml`` reads
``samples/wat/wat.paths.gz``). Needs no Spark: ``run`` never starts a session.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgcurate.context import Context, Summary
from kgcurate.errors import UserError

DEFAULTS: dict[str, Any] = {"out": "samples", "files": 4, "records": 400, "seed": 0, "corrupt": True,
                            "gzip": True, "size_mb": None}


@dataclass
class MakeSampleSummary(Summary):
    """The sample written: where, its listing, files, records, the pairs a parse must find, the bad
    records planted and the file left truncated."""

    out: str
    listing: str
    files: int
    records: int
    pairs: int
    distinct_pairs: int
    bad_records: int
    truncated_file: str | None
    bytes: int


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    s = {**DEFAULTS, **{k: v for k, v in (cfg.get("sample") or {}).items() if v is not None}}
    if int(s["files"]) < 1:
        raise UserError(f"--files must be at least 1 (got {s['files']})")
    if int(s["records"]) < 4:
        raise UserError(f"--records must be at least 4 (a warcinfo record and one page; got {s['records']})")
    if s["size_mb"] is not None and float(s["size_mb"]) <= 0:
        raise UserError(f"--size-mb must be positive (got {s['size_mb']})")
    return s


def execute(ctx: Context, cfg: dict[str, Any]) -> MakeSampleSummary:
    """Write the sample (plain Python: the context's Spark session is never started)."""
    from kgcurate.wat.sample import write_sample

    s = _settings(cfg)
    out = Path(s["out"]) / "wat"
    try:
        m = write_sample(out, files=int(s["files"]), records=int(s["records"]), seed=int(s["seed"]),
                         corrupt=bool(s["corrupt"]), gzip=bool(s["gzip"]),
                         size_mb=float(s["size_mb"]) if s["size_mb"] is not None else None)
    except OSError as exc:
        raise UserError(f"cannot write the sample to {out}: {exc.strerror or exc} (check the path and permissions)") \
            from exc
    return MakeSampleSummary(
        out=str(out), listing=str(m.listing), files=len(m.files), records=m.records,
        pairs=sum(len(v) for v in m.pairs_by_file.values()), distinct_pairs=len(m.pairs),
        bad_records=m.bad_records, truncated_file=m.truncated_file, bytes=sum(m.bytes_by_file.values()))


def report(s: MakeSampleSummary, args: argparse.Namespace) -> int:
    print(f"make-sample: {s.files} WAT files in {s.out} ({s.bytes / 1e6:.1f} MB, {s.records:,} records, "
          f"{s.pairs:,} expected pairs, {s.bad_records} deliberate bad records); listing {s.listing}")
    return 0
