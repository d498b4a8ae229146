"""Seeded container damage for WAT files (tests only): every kind issue #15 names, at chosen
record positions, with a manifest of which records stay intact and which byte spans are damaged.

The expected output comes from the undamaged records themselves (each record's pairs via
``extract_pairs`` on its own payload, checked against the sample generator's model by the tests),
so a test can say exactly what an ingest of the damaged file must give: every intact record's
pairs, one or more bad records in every damaged span, and nothing else.
"""

from __future__ import annotations

import gzip
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field

from kgcurate.wat.parse import extract_pairs

Pair = tuple[str, str, str, str]  # (image_url, text, text_source, page_url)

# Damage between records (an inserted blob) or to one record; "truncate" cuts the file's last record.
GZ_KINDS = ("empty_member", "swallow", "flip_bit", "garbage", "nul", "junk_member", "broken_header", "truncate")
PLAIN_KINDS = ("swallow", "garbage", "nul", "broken_header", "truncate")
INSERTED = ("empty_member", "garbage", "nul", "junk_member")


@dataclass
class Damaged:
    data: bytes
    gz: bool
    records: list[bytes]  # the undamaged records (uncompressed WARC bytes)
    intact: list[int]  # indexes of records left whole
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # damaged [start, end) in data, kind

    @property
    def expected_pairs(self) -> Counter:
        """The pairs an ingest must give: those of the intact records, duplicates kept."""
        return Counter(p for i in self.intact for p in record_pairs(self.records[i]))

    def merged_spans(self) -> list[tuple[int, int]]:
        """Damaged spans, touching ones merged (resync may skip two adjacent damages as one)."""
        out: list[list[int]] = []
        for start, end, _ in sorted(self.spans):
            if out and start <= out[-1][1]:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([start, end])
        return [(a, b) for a, b in out]


def split_records(data: bytes, gz: bool) -> list[bytes]:
    """The records of an undamaged file: one per gzip member, or framed by Content-Length."""
    out = []
    if gz:
        while data:
            d = zlib.decompressobj(wbits=31)
            out.append(d.decompress(data))
            data = d.unused_data
        return out
    i = 0
    while i < len(data):
        end = data.index(b"\r\n\r\n", i)
        cl = int(re.search(rb"\r\nContent-Length: *(\d+)", data[i:end + 2], re.I).group(1))
        out.append(data[i:end + 4 + cl + 4])
        i = end + 4 + cl + 4
    return out


def record_pairs(raw: bytes) -> list[Pair]:
    """The pairs one undamaged record gives (only ``metadata`` records give any)."""
    end = raw.index(b"\r\n\r\n")
    head = raw[:end].decode()
    if not re.search(r"\r\nWARC-Type: *metadata\r?$", head, re.M | re.I):
        return []
    uri = re.search(r"\r\nWARC-Target-URI: *(\S+)", head, re.I)
    cl = int(re.search(r"\r\nContent-Length: *(\d+)", head, re.I).group(1))
    got = extract_pairs(raw[end + 4:end + 4 + cl], uri.group(1) if uri else None)
    return [(u, t, s, got.page_url) for u, t, s in got.pairs]


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _set_length(raw: bytes, length: int) -> bytes:
    return re.sub(rb"(\r\nContent-Length: *)\d+", b"\\g<1>%d" % length, raw, count=1, flags=re.I)


def _broken_header(raw: bytes, rng: random.Random) -> bytes:
    variant = rng.choice(("version", "length", "separator"))
    if variant == "version":
        return b"WARX/1.0" + raw[8:]
    if variant == "length":
        return re.sub(rb"(\r\nContent-Length: *)(\d+)", b"\\g<1>\\2x", raw, count=1, flags=re.I)
    return raw.replace(b"\r\n\r\n", b"\r\n", 1)  # the blank line ending the header is gone


def _flip_bit(member: bytes, raw: bytes, rng: random.Random) -> bytes:
    """One flipped bit in the member's deflate data that zlib notices (a flip in a final block's
    padding bits changes nothing, and then the record is not damaged at all)."""
    while True:
        b = bytearray(member)
        i = rng.randrange(10, len(b) - 8)
        b[i] ^= 1 << rng.randrange(8)
        try:
            if zlib.decompress(bytes(b), wbits=31) != raw:
                return bytes(b)
        except zlib.error:
            return bytes(b)


def _blob(kind: str, rng: random.Random) -> bytes:
    if kind == "empty_member":
        return _gz(b"")
    if kind == "nul":
        return b"\x00" * rng.randint(1, 600)
    if kind == "junk_member":
        words = ["lorem", "ipsum", "junk", "not", "a", "warc", "record", "\r\n"]
        return _gz(" ".join(rng.choice(words) for _ in range(rng.randint(5, 200))).encode())
    # garbage: random bytes that hold no gzip header and no WARC record start, and are not padding
    junk = bytes(b for b in rng.randbytes(rng.randint(1, 700)) if b not in (0x1F, 0x57)) or b"?"
    return b"#" + junk


def damage(records: list[bytes], plan: list[tuple[str, int]], gz: bool, seed: int) -> Damaged:
    """Write ``records`` (one gzip member each, or uncompressed) with each ``(kind, index)`` of
    ``plan`` applied: inserted kinds go just before record ``index``, ``swallow`` makes record
    ``index``'s Content-Length cover record ``index + 1`` too, ``truncate`` cuts the last record."""
    rng = random.Random(seed)
    before: dict[int, list[str]] = {}
    hit: dict[int, str] = {}
    for kind, i in plan:
        if kind in INSERTED:
            before.setdefault(i, []).append(kind)
        else:
            assert i not in hit, f"two damages to record {i}"
            hit[i] = kind
    out = bytearray()
    spans: list[tuple[int, int, str]] = []
    last_start = 0
    for i, raw in enumerate(records):
        for kind in before.get(i, []):
            start = len(out)
            out += _blob(kind, rng)
            spans.append((start, len(out), kind))
        kind = hit.get(i)
        body = raw
        if kind == "swallow":
            end = raw.index(b"\r\n\r\n") + 4
            body = _set_length(raw, len(raw) - end - 4 + len(records[i + 1]))
        elif kind == "broken_header":
            body = _broken_header(raw, rng)
        blob = _gz(body) if gz else body
        if kind == "flip_bit":
            blob = _flip_bit(blob, raw, rng)
        last_start = len(out)
        out += blob
        if kind not in (None, "truncate"):
            spans.append((last_start, len(out), kind))
    if "truncate" in hit.values():
        cut = rng.randrange(1, len(out) - last_start)
        del out[last_start + cut:]
        spans.append((last_start, len(out), "truncate"))
    intact = [i for i in range(len(records)) if i not in hit]
    return Damaged(bytes(out), gz, records, intact, spans)


def plan_for(kind: str, n: int, k: int) -> list[tuple[str, int]]:
    """``kind`` at three positions of an ``n``-record file: near the start (the first record when
    ``k`` is even), the middle, near the end; ``truncate`` only at the end."""
    if kind == "truncate":
        return [(kind, n - 1)]
    return [(kind, k % 2), (kind, n // 2), (kind, n - 3)]


def mixed_plan(kinds: tuple[str, ...], n: int, rng: random.Random, times: int = 1) -> list[tuple[str, int]]:
    """Every kind ``times`` times at random positions at least 3 records apart, and the last record cut."""
    others = [k for k in kinds if k != "truncate"] * times
    slots = sorted(rng.sample(range(0, n - 3, 3), len(others)))
    rng.shuffle(others)
    return list(zip(others, slots, strict=True)) + [("truncate", n - 1)]
