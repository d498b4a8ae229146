"""WatParser after damage to the container (issue #15), parser alone: every intact record is read,
every damaged span is a bad record, nothing goes missing; the resync path equals the fast path."""

from __future__ import annotations

import gzip
import io
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from kgcurate.wat.parse import WHOLE_FILE_GZIP, Batch, FileStats, WatParser, _Source, _Tap
from kgcurate.wat.sample import write_sample
from wat_damage import GZ_KINDS, PLAIN_KINDS, Damaged, damage, mixed_plan, plan_for, split_records


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Undamaged generated files (no deliberate corruptions) split into records, gzip and plain."""
    m = write_sample(tmp_path_factory.mktemp("clean"), files=2, records=40, seed=3, corrupt=False)
    out = []
    for path in m.files:
        data = Path(path).read_bytes()
        out.append((data, split_records(data, gz=True), m.pairs_by_file[path.rsplit("/", 1)[-1]]))
    return out


def parse(data: bytes, batch_size: int = 65536) -> tuple[list, list, FileStats]:
    parser = WatParser(batch_size=batch_size)
    pairs, bad = [], []
    for b in parser.parse(io.BytesIO(data)):
        pairs.extend(zip(b.image_url, b.text, b.text_source, b.page_url, strict=True))
        bad.extend(b.bad)
    return pairs, bad, parser.stats


def check(d: Damaged) -> FileStats:
    """The issue's contract for one damaged file."""
    pairs, bad, stats = parse(d.data)
    assert Counter(pairs) == d.expected_pairs  # every intact record's pairs, and no others
    assert stats.records - stats.bad_records == len(d.intact)  # intact records all read, as good ones
    assert stats.bad_records == len(bad) and stats.bytes == len(d.data)
    spans = d.merged_spans()
    for offset, reason, _sample in bad:  # every bad record lies in a damaged span ...
        assert any(a <= offset < b for a, b in spans), (offset, reason, spans)
    for a, b in spans:  # ... and every damaged span has one
        assert any(a <= offset < b for offset, _, _ in bad), ((a, b), bad, d.spans)
    assert stats.status == "partial" and stats.error and stats.damaged >= 1, stats
    return stats


def test_records_split_from_a_clean_file_give_the_generator_s_pairs(clean):
    """The manifest's expectations (each record's own pairs) agree with the generator's model."""
    for data, records, expected in clean:
        d = Damaged(data, True, records, list(range(len(records))))
        assert d.expected_pairs == Counter(map(tuple, expected))
        assert Counter(parse(data)[0]) == d.expected_pairs


@pytest.mark.parametrize("kind,gz", [(k, True) for k in GZ_KINDS] + [(k, False) for k in PLAIN_KINDS],
                         ids=[f"{k}-gzip" for k in GZ_KINDS] + [f"{k}-plain" for k in PLAIN_KINDS])
def test_each_kind_of_damage_at_several_positions(clean, kind, gz):
    for k, (_data, records, _) in enumerate(clean):
        d = damage(records, plan_for(kind, len(records), k), gz, seed=k)
        stats = check(d)
        assert stats.damaged >= len(d.spans) - 1 or kind == "nul"


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("seed", range(4))
def test_every_kind_in_one_file_and_a_cut_end(clean, gz, seed):
    _data, records, _ = clean[seed % 2]
    d = damage(records, mixed_plan(GZ_KINDS if gz else PLAIN_KINDS, len(records), random.Random(seed)), gz, seed)
    check(d)
    # batches split anywhere give the same (the resync path fills batches too)
    assert Counter(parse(d.data, batch_size=1)[0]) == d.expected_pairs


def test_empty_gzip_member_no_longer_ends_the_file_silently(clean):
    _data, records, _ = clean[0]
    d = damage(records, [("empty_member", 5)], True, seed=0)
    pairs, bad, stats = parse(d.data)
    assert stats.records == len(records) + 1 and stats.bad_records == 1  # the empty member is noted
    assert bad[0][1].startswith("empty gzip member") and Counter(pairs) == d.expected_pairs


def test_content_length_swallowing_the_next_record(clean):
    _data, records, _ = clean[0]
    for gz in (True, False):
        d = damage(records, [("swallow", 6)], gz, seed=0)
        pairs, bad, stats = parse(d.data)
        assert Counter(pairs) == d.expected_pairs and stats.records == len(records)
        assert len(bad) == 1 and bad[0][0] == d.spans[0][0] and "Content-Length" in bad[0][1]


def test_skipped_length_and_resume_offset_are_in_the_reason(clean):
    _data, records, _ = clean[0]
    d = damage(records, [("garbage", 4)], True, seed=1)
    _, bad, stats = parse(d.data)
    (start, end, _kind), = d.spans
    assert bad[0][0] == start
    assert bad[0][1] == f"bytes that are not a gzip member (skipped {end - start} bytes, resumed at offset {end})"
    assert stats.error == f"bytes that are not a gzip member at offset {start} (skipped {end - start} bytes, " \
        f"resumed at offset {end})"


@pytest.mark.parametrize("where", [0.1, 0.8])
def test_damage_in_a_whole_file_gzip_cannot_be_resynchronised(clean, where):
    records = [r for _data, recs, _ in clean for r in recs] * 3
    whole = bytearray(gzip.compress(b"".join(records), mtime=0))
    whole[int(len(whole) * where)] ^= 0x04
    pairs, bad, stats = parse(bytes(whole))
    assert stats.status == "failed" and stats.fatal and WHOLE_FILE_GZIP in stats.error
    assert len(bad) == 1 and stats.records - stats.bad_records < len(records)
    if where > 0.5:  # what came before the damage is kept
        assert stats.records - stats.bad_records > len(records) // 2 and pairs


def test_unseekable_stream_with_damage(clean):
    class NoTell(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._b = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self._b.read(n)

    _data, records, _ = clean[1]
    d = damage(records, [("flip_bit", 3), ("nul", 9)], True, seed=2)
    parser = WatParser()
    pairs = [p for b in parser.parse(NoTell(d.data))
             for p in zip(b.image_url, b.text, b.text_source, b.page_url, strict=True)]
    assert Counter(pairs) == d.expected_pairs and parser.stats.bad_records == 2


def _resync_only(data: bytes, gz: bool) -> tuple[list, list, FileStats]:
    """Drive the resync path over a whole file (as if damage were found before the first record)."""
    parser = WatParser()
    parser.stats = FileStats()
    tap = _Tap(io.BytesIO(data))
    gen = parser._resync(_Source(tap, 0), gz, Batch())
    batches = []
    try:
        while True:
            batches.append(next(gen))
    except StopIteration as stop:
        batches.append(stop.value)
    parser.stats.rows_out += len(batches[-1].image_url)
    parser.stats.bytes = tap.pos
    pairs = [p for b in batches for p in zip(b.image_url, b.text, b.text_source, b.page_url, strict=True)]
    return pairs, [x for b in batches for x in b.bad], parser.stats


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_resync_path_equals_fast_path_on_whole_files(clean, gz):
    """The resync path's record step is the fast loop's, restated: same pairs, counts and bad records."""
    from test_wat_parse import WARCINFO, _page_records, img, warc_record

    odd = [WARCINFO] + _page_records("http://a.example/p", [img("/1.jpg", alt="one"), img("x.jpg", title="two")])
    odd += [warc_record(b'{"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response"}, "IMG@/src"'),
            warc_record(b"{oops}"), warc_record(b"not json"),
            warc_record(b'{"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response"}, "Payload-Metadata": '
                        b'{"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": [1, "IMG@/src"]}}}}}')]
    for _data, records, _ in clean:
        recs = records + odd
        data = b"".join(gzip.compress(r, mtime=0) for r in recs) if gz else b"".join(recs)
        fast = parse(data)
        slow = _resync_only(data, gz)
        assert fast[0] == slow[0] and fast[1] == slow[1] and fast[2] == slow[2]
        assert fast[2].bad_records == 3 and fast[2].status == "ok"


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_runs_longer_than_the_read_buffer(clean, gz):
    """A NUL run and a garbage run of 1.5 MB each (the resync path drops what it has read past)."""
    _data, records, _ = clean[0]
    recs = [gzip.compress(r, mtime=0) for r in records] if gz else list(records)
    nul, junk = b"\x00" * 1_500_000, b"#" + bytes(i % 31 + 33 for i in range(1_500_000))
    data = b"".join(recs[:5]) + nul + b"".join(recs[5:9]) + junk + b"".join(recs[9:])
    pairs, bad, stats = parse(data)
    d = Damaged(data, gz, records, list(range(len(records))))
    assert Counter(pairs) == d.expected_pairs and stats.status == "partial"
    start = len(b"".join(recs[:5]))
    assert [(o, r.split(" (skipped ")[1]) for o, r, _ in bad] == [
        (start, f"{len(nul)} bytes, resumed at offset {start + len(nul)})"),
        (start + len(nul) + len(b"".join(recs[5:9])),
         f"{len(junk)} bytes, resumed at offset {start + len(nul) + len(b''.join(recs[5:9])) + len(junk)})")]


@pytest.mark.parametrize("name,gz", [("CC-MAIN-2014-35-excerpt.warc.wat", False), ("whirlwind.warc.wat.gz", True)])
def test_resync_path_reads_real_commoncrawl_files_like_the_fast_path(shared_data, name, gz):
    data = (shared_data / "commoncrawl" / name).read_bytes()
    fast, slow = parse(data), _resync_only(data, gz)
    assert fast[0] == slow[0] and fast[1] == slow[1] == [] and fast[2] == slow[2]
    assert fast[2].records > 0 and fast[2].status == "ok"


def _reframe(record: bytes, kind: str) -> bytes:
    """One record with framing that fastwarc reads but the WARC spec does not quite allow."""
    head, _, rest = record.partition(b"\r\n\r\n")
    block = rest[:-4]
    return {
        "end CRLF": head + b"\r\n\r\n" + block + b"\r\n",
        "end LF LF": head + b"\r\n\r\n" + block + b"\n\n",
        "no end": head + b"\r\n\r\n" + block,
        "end CRLF x3": head + b"\r\n\r\n" + block + b"\r\n\r\n\r\n",
        "header line without a colon": head + b"\r\nnot a header line\r\n\r\n" + block + b"\r\n\r\n",
        "WARC/0.18": head.replace(b"WARC/1.0", b"WARC/0.18", 1) + b"\r\n\r\n" + block + b"\r\n\r\n",
    }[kind]


LENIENT_KINDS = ["end CRLF", "end LF LF", "no end", "end CRLF x3", "header line without a colon", "WARC/0.18"]


@pytest.mark.parametrize("kind", LENIENT_KINDS)
def test_a_gzip_member_framed_loosely_is_read_as_fastwarc_reads_it(clean, kind):
    """Records whose closing CRLF CRLF is another run of line ends (or missing at the member's end),
    whose header holds a line that is not a field, or an old WARC version: fastwarc reads their pairs,
    and so does the member path (the native path's fallback and the resync path), not damage."""
    data, records, expected = clean[0]
    loose = [_reframe(r, kind) if b"IMG@/src" in r else r for r in records]
    assert sum(b"IMG@/src" in r for r in records) >= 5
    gz = b"".join(gzip.compress(r, mtime=0) for r in loose)
    want = Counter(map(tuple, expected))
    fast, slow = parse(gz), _resync_only(gz, True)
    assert Counter(fast[0]) == Counter(slow[0]) == want
    assert fast[1] == slow[1] == [] and fast[2].status == slow[2].status == "ok"
    assert fast[2].records == slow[2].records == len(records)


def test_a_member_whose_block_runs_on_past_its_content_length_is_still_damage(clean):
    """Leniency about the line ends after a record does not hide a Content-Length that is too short."""
    _data, records, _ = clean[0]
    i = next(k for k, r in enumerate(records) if b"IMG@/src" in r)
    head, _, rest = records[i].partition(b"\r\n\r\n")
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    short = head.replace(b"Content-Length: %d" % n, b"Content-Length: %d" % (n - 10)) + b"\r\n\r\n" + rest
    gz = b"".join(gzip.compress(r, mtime=0) for r in records[:i] + [short] + records[i + 1:])
    for _pairs, bad, stats in (parse(gz), _resync_only(gz, True)):
        assert [(o, r.split(" (")[0]) for o, r, _ in bad] == [
            (len(b"".join(gzip.compress(r, mtime=0) for r in records[:i])),
             "invalid WARC record in a gzip member: record does not end where its Content-Length says")]
        assert stats.status == "partial"


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_a_header_with_lf_line_ends_is_a_bad_record_not_skipped(clean, gz):
    """fastwarc takes a header with LF line ends for one field (an unknown WARC-Type) and hands out an
    empty record; it was counted as a record of another type and its pairs vanished without a trace."""
    _data, records, _ = clean[0]
    i = next(k for k, r in enumerate(records) if b"IMG@/src" in r)
    head, _, rest = records[i].partition(b"\r\n\r\n")
    lf = head.replace(b"\r\n", b"\n") + b"\n\n" + rest
    recs = records[:i] + [lf] + records[i + 1:]
    data = b"".join(gzip.compress(r, mtime=0) for r in recs) if gz else b"".join(recs)
    pairs, bad, stats = parse(data)
    offset = len(b"".join(gzip.compress(r, mtime=0) for r in records[:i]) if gz else b"".join(records[:i]))
    assert [o for o, _, _ in bad] == [offset] and stats.status == "partial"
    assert "LF" in bad[0][1]
    others = Damaged(data, gz, records, [k for k in range(len(records)) if k != i])
    assert Counter(pairs) == others.expected_pairs


def test_a_header_with_lf_line_ends_in_a_whole_file_gzip_is_a_bad_record(clean):
    _data, records, _ = clean[0]
    i = next(k for k, r in enumerate(records) if b"IMG@/src" in r)
    head, _, rest = records[i].partition(b"\r\n\r\n")
    lf = head.replace(b"\r\n", b"\n") + b"\n\n" + rest
    data = gzip.compress(b"".join(records[:i] + [lf] + records[i + 1:]), mtime=0)
    pairs, bad, stats = parse(data)
    assert len(bad) == 1 and "unreadable WARC header" in bad[0][1] and stats.bad_records == 1


NO_LENGTH = b"WARC/1.0\r\nWARC-Type: metadata\r\nWARC-Target-URI: http://h.example/x\r\n\r\n"


def test_a_record_without_content_length_is_damage_not_an_empty_record(clean):
    """fastwarc hands out a header without Content-Length as an empty record (a bad record `not a JSON
    object` with no sample, at the wrong place); the member path reports the member itself."""
    _data, records, _ = clean[0]
    recs = records[:3] + [NO_LENGTH] + records[3:]
    data = b"".join(gzip.compress(r, mtime=0) for r in recs)
    pairs, bad, stats = parse(data)
    at = len(b"".join(gzip.compress(r, mtime=0) for r in recs[:3]))
    assert [(o, r.split(" (")[0]) for o, r, _ in bad] == [
        (at, "invalid WARC record in a gzip member: no valid Content-Length")]
    assert Counter(pairs) == Damaged(data, True, records, list(range(len(records)))).expected_pairs
    assert stats.status == "partial" and stats.records == len(recs)


def test_headers_without_content_length_end_a_whole_file_gzip(clean):
    """Inside one deflate stream, headers without a length (what a flipped bit inflates to) cannot be
    framed: the file ends there, one bad record, not one empty bad record per garbled header."""
    _data, records, _ = clean[0]
    data = gzip.compress(b"".join(records[:4] + [NO_LENGTH] * 3 + records[4:]), mtime=0)
    pairs, bad, stats = parse(data)
    assert len(bad) == 1 and bad[0][1].startswith("invalid WARC record: no Content-Length; " + WHOLE_FILE_GZIP)
    assert stats.status == "failed" and stats.records == 5 and stats.bad_records == 1
    assert Counter(pairs) == Damaged(data, True, records, [0, 1, 2, 3]).expected_pairs


def test_after_newlines_finds_the_end_of_a_run_of_line_ends() -> None:
    from kgcurate.wat.parse import _after_newlines

    assert [_after_newlines(b"ab\r\n\n\rWARC", i) for i in (0, 2, 3, 6, 7, 12)] == [0, 6, 6, 6, 7, 12]
    assert _after_newlines(b"x\r\n", 1) == 3 and _after_newlines(b"x", 5) == 5  # past the end: as given
