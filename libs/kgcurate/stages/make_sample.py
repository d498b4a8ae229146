"""``kgcurate make-sample``: realistic generated CommonCrawl WAT files for demos, tests and benchmarks.

Writes ``<out>/wat/CC-MAIN-2099-01-sample-NNNNN.warc.wat.gz``, a ``wat.paths.gz`` listing and a
``manifest.json`` of the pairs the parser must find (``conf/demo.yaml`` reads
``samples/wat/wat.paths.gz``). With ``--image-base-url URL`` the image links point at ``URL/<file>`` and
the files are written to ``--images`` (default ``<out>/images/``), so the curated pairs can be
downloaded from a plain HTTP server (the docker-compose demo). Needs no Spark: ``run`` never starts a
session.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgcurate.context import Context, Summary
from kgcurate.errors import UserError

DEFAULTS: dict[str, Any] = {"out": "samples", "files": 4, "records": 400, "seed": 0, "corrupt": True,
                            "gzip": True, "size_mb": None, "image_base_url": None, "images": None}


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
    images: str | None = None  # with --image-base-url: the image folder, and what is in it
    image_files: int = 0
    images_missing: int = 0
    images_broken: int = 0


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    s = {**DEFAULTS, **{k: v for k, v in (cfg.get("sample") or {}).items() if v is not None}}
    if int(s["files"]) < 1:
        raise UserError(f"--files must be at least 1 (got {s['files']})")
    if int(s["records"]) < 4:
        raise UserError(f"--records must be at least 4 (a warcinfo record and one page; got {s['records']})")
    if s["size_mb"] is not None and not 0 < float(s["size_mb"]) < math.inf:
        raise UserError(f"--size-mb must be a positive finite number (got {s['size_mb']})")
    base = s["image_base_url"]
    if base is not None and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", str(base)):
        raise UserError(f"--image-base-url must be an http(s) URL like http://images:8000 (got {base!r})")
    if s["images"] is not None and base is None:
        raise UserError("--images names where the --image-base-url files go: pass --image-base-url too")
    return s


def execute(ctx: Context, cfg: dict[str, Any]) -> MakeSampleSummary:
    """Write the sample (plain Python: the context's Spark session is never started)."""
    from kgcurate.wat.sample import write_sample

    s = _settings(cfg)
    out = Path(s["out"]) / "wat"
    images = (s["images"] or Path(s["out"]) / "images") if s["image_base_url"] else None
    try:
        m = write_sample(out, files=int(s["files"]), records=int(s["records"]), seed=int(s["seed"]),
                         corrupt=bool(s["corrupt"]), gzip=bool(s["gzip"]),
                         size_mb=float(s["size_mb"]) if s["size_mb"] is not None else None,
                         image_base_url=s["image_base_url"], images_dir=images)
    except OSError as exc:
        where = exc.filename or out
        raise UserError(f"cannot write the sample to {where}: {exc.strerror or exc} (check the path and "
                        "permissions)") from exc
    im = m.images
    return MakeSampleSummary(
        out=str(out), listing=str(m.listing), files=len(m.files), records=m.records,
        pairs=sum(len(v) for v in m.pairs_by_file.values()), distinct_pairs=len(m.pairs),
        bad_records=m.bad_records, truncated_file=m.truncated_file, bytes=sum(m.bytes_by_file.values()),
        images=im.folder if im else None, image_files=im.images if im else 0,
        images_missing=im.missing if im else 0, images_broken=im.broken if im else 0)


def report(s: MakeSampleSummary, args: argparse.Namespace) -> int:
    print(f"make-sample: {s.files} WAT files in {s.out} ({s.bytes / 1e6:.1f} MB, {s.records:,} records, "
          f"{s.pairs:,} expected pairs, {s.bad_records} deliberate bad records); listing {s.listing}")
    if s.images:
        print(f"make-sample: {s.image_files:,} images in {s.images} for the image links, {s.images_missing} "
              f"left missing (404) and {s.images_broken} not images, deliberately")
    return 0
