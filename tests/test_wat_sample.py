"""The sample generator: real WAT structure, and the parser finds exactly the manifest's pairs."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections import Counter
from pathlib import Path

import orjson
import pytest
from fastwarc.warc import ArchiveIterator

from kgcurate import cli
from kgcurate.wat.parse import WatParser, crawl_from_path
from kgcurate.wat.sample import CRAWL, load_manifest, write_sample


def parse_file(path: str):
    parser = WatParser()
    pairs = []
    bad = []
    with open(path, "rb") as f:
        for b in parser.parse(f):
            pairs.extend(zip(b.image_url, b.text, b.text_source, b.page_url, strict=True))
            bad.extend(b.bad)
    return pairs, bad, parser.stats


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("wat"), files=3, records=160, seed=7)


def test_parser_finds_exactly_the_expected_pairs(sample):
    assert len(sample.files) == 3
    for path in sample.files:
        name = Path(path).name
        pairs, bad, stats = parse_file(path)
        assert Counter(pairs) == Counter(sample.pairs_by_file[name]), name
        assert stats.records == sample.records_by_file[name]
        assert stats.bad_records == sample.bad_by_file[name] == len(bad)
        assert stats.filtered == sample.filtered_by_file[name]
        assert stats.bytes == sample.bytes_by_file[name] == Path(path).stat().st_size
        assert (stats.error is not None) == (name == sample.truncated_file)
    assert sample.truncated_file == Path(sample.files[-1]).name
    assert sample.bad_records == 3  # malformed response, malformed request, truncated member


def test_sample_covers_the_hard_cases(sample):
    pairs = [p for v in sample.pairs_by_file.values() for p in v]
    urls = {p[0] for p in pairs}
    texts = {p[1] for p in pairs}
    assert {p[2] for p in pairs} == {"alt", "title"}
    assert any("一只狗在草地上" in t for t in texts) or any(any(ord(c) > 0x3000 for c in t) for t in texts)
    assert any("Canis lupus" in t or "Felis catus" in t or "Panthera" in t or "Vulpes" in t for t in texts)
    assert all(u.startswith(("http://", "https://")) for u in urls)
    assert any("/assets/v2/" in u for u in urls)  # under an absolute <base href>
    assert any("/assets/pics/" in u for u in urls)  # ../ under an absolute <base href>
    assert any("/static/uploads/" in u for u in urls)  # under <base href="/static/">
    # duplicate (image_url, text) across files: the host logos at least
    per_file = [{(p[0], p[1]) for p in v} for v in sample.pairs_by_file.values()]
    assert per_file[0] & per_file[1]
    # the raw files really hold what the parser must drop or fix
    raw = b"".join(gzip.decompress(Path(f).read_bytes()[: sample.bytes_by_file[Path(f).name]])
                   for f in sample.files[:1])
    for needle in (b'"IMG@/src","url":"data:', b'"url":"//images.', b'"url":"../', b'"url":"./', b'"alt":""',
                   b'"A@/href"', b'"SCRIPT@/src"', b'"LINK@/href"', b'"Set-Cookie":[', b"\\n", b'"Base":'):
        assert needle in raw, needle


def test_real_commoncrawl_structure(sample):
    with open(sample.files[0], "rb") as f:
        records = list(_records(f))
    assert records[0][0] == "warcinfo"
    inner = [orjson.loads(p)["Envelope"]["WARC-Header-Metadata"]["WARC-Type"] for t, h, p in records[1:12]
             if p.startswith(b"{") and p.endswith(b"}")]
    assert inner[:3] == ["request", "response", "metadata"]
    t, headers, payload = records[2]
    assert t == "metadata"
    assert headers["Content-Type"] == "application/json"
    for key in ("WARC-Target-URI", "WARC-Date", "WARC-Record-ID", "WARC-Refers-To"):
        assert headers[key]
    doc = orjson.loads(payload)
    html = doc["Envelope"]["Payload-Metadata"]["HTTP-Response-Metadata"]
    assert set(doc) == {"Container", "Envelope"}
    assert doc["Envelope"]["WARC-Header-Metadata"]["WARC-Target-URI"] == headers["WARC-Target-URI"]
    if "HTML-Metadata" in html:
        assert {"Head", "Links"} <= set(html["HTML-Metadata"])


def _records(f):
    for r in ArchiveIterator(f, parse_http=False):
        yield str(r.record_type), dict(r.headers.items()), r.reader.read()


def test_names_listing_and_manifest(sample):
    for path in sample.files:
        assert crawl_from_path(path) == CRAWL == "CC-MAIN-2099-01"
        assert Path(path).name.startswith("CC-MAIN-2099-01-sample-") and path.endswith(".warc.wat.gz")
    listing = gzip.decompress(Path(sample.listing).read_bytes()).decode().split()
    assert listing == [Path(p).name for p in sample.files]
    again = load_manifest(Path(sample.files[0]).parent)
    assert again.pairs == sample.pairs and again.records_by_file == sample.records_by_file


def test_deterministic_and_seeded(tmp_path):
    a = write_sample(tmp_path / "a", files=2, records=40, seed=3)
    b = write_sample(tmp_path / "b", files=2, records=40, seed=3)
    c = write_sample(tmp_path / "c", files=2, records=40, seed=4)

    def digest(m):
        return [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in m.files]

    assert digest(a) == digest(b) != digest(c)
    assert a.pairs == b.pairs != c.pairs


@pytest.mark.parametrize("records", [7, 10, 13])
def test_a_small_single_file_keeps_all_three_corruptions(tmp_path, records):
    """One file of at most 4 pages: the cut request landed on the cut response's page and replaced it (2
    deliberate bad records, not the 3 promised); the parser still agrees with the manifest."""
    m = write_sample(tmp_path, files=1, records=records, seed=0)
    (path,) = m.files
    pairs, bad, stats = parse_file(path)
    assert m.bad_records == stats.bad_records == len(bad) == 3
    assert Counter(pairs) == Counter(m.pairs_by_file[Path(path).name])


def test_uncompressed_and_clean(tmp_path):
    m = write_sample(tmp_path, files=1, records=61, seed=1, corrupt=False, gzip=False)
    path = m.files[0]
    assert path.endswith(".warc.wat") and Path(path).read_bytes()[:8] == b"WARC/1.0"
    pairs, bad, stats = parse_file(path)
    assert Counter(pairs) == Counter(m.pairs_by_file[Path(path).name]) and pairs
    assert stats.records == 61 and stats.bad_records == 0 and stats.error is None and bad == []


def test_size_mb_and_stale_files(tmp_path):
    write_sample(tmp_path, files=3, records=10, corrupt=False)
    m = write_sample(tmp_path, files=1, size_mb=0.3, corrupt=False)
    assert sorted(p.name for p in tmp_path.glob("*.warc.wat.gz")) == [Path(m.files[0]).name]
    assert 0.3e6 <= Path(m.files[0]).stat().st_size < 0.4e6


def test_make_sample_cli(tmp_path, capsys, monkeypatch):
    import kgcurate.session

    monkeypatch.setattr(kgcurate.session, "get_spark", lambda *a, **k: pytest.fail("make-sample started Spark"))
    rc = cli.main(["make-sample", "--out", str(tmp_path), "--files", "2", "--records", "31", "--seed", "5",
                   "--no-corrupt", "--uncompressed"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 WAT files" in out
    files = sorted((tmp_path / "wat").glob("*.warc.wat"))
    assert [f.name for f in files] == ["CC-MAIN-2099-01-sample-00000.warc.wat", "CC-MAIN-2099-01-sample-00001.warc.wat"]
    m = load_manifest(tmp_path / "wat")
    assert m.bad_records == 0 and m.records == 62
    assert (tmp_path / "wat" / "wat.paths.gz").exists()
    assert cli.main(["make-sample", "--out", str(tmp_path), "--files", "0"]) == 2
    assert "files must be at least 1" in capsys.readouterr().err


def test_parser_reads_sample_from_a_stream(sample):
    data = Path(sample.files[1]).read_bytes()
    parser = WatParser(batch_size=50)
    n = sum(len(b) for b in parser.parse(io.BytesIO(data)))
    assert n == len(sample.pairs_by_file[Path(sample.files[1]).name]) == parser.stats.rows_out
