"""WatParser / extract_pairs on hand-built records, corrupt inputs and real CommonCrawl excerpts."""

from __future__ import annotations

import gzip
import io
import random
from collections import Counter
from urllib.parse import urljoin, urlsplit

import orjson
import pytest

from kgcurate.wat.parse import (
    DEFAULT_OPTIONS,
    WHOLE_FILE_GZIP,
    BadRecord,
    Batch,
    FileStats,
    ParseOptions,
    Resolver,
    WatParser,
    crawl_from_path,
    extract_pairs,
    unescape_attr,
)

PAGE = "https://www.example.org/animals/dogs/index.html?id=3"


# -- building blocks -------------------------------------------------------------------------------
def envelope(links: list[dict], page: str = PAGE, warc_type: str = "response", base: str | None = None,
             html: bool = True) -> dict:
    http: dict = {"Response-Message": {"Status": "200"}, "Headers": {"Set-Cookie": ["a=1", "b=2"]}}
    if html:
        head: dict = {"Title": "Dogs"}
        if base is not None:
            head["Base"] = base
        http["HTML-Metadata"] = {"Head": head, "Links": links}
    return {"Container": {"Offset": "0"}, "Envelope": {
        "WARC-Header-Metadata": {"WARC-Type": warc_type, "WARC-Target-URI": page},
        "Payload-Metadata": {"HTTP-Response-Metadata": http}}}


def img(url: str, alt: str | None = None, title: str | None = None) -> dict:
    link = {"path": "IMG@/src", "url": url}
    if alt is not None:
        link["alt"] = alt
    if title is not None:
        link["title"] = title
    return link


def warc_record(payload: bytes, warc_type: str = "metadata", uri: str = PAGE) -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {warc_type}\r\nWARC-Target-URI: {uri}\r\nWARC-Date: 2024-05-18T01:58:10Z\r\n"
            f"WARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000000>\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload + b"\r\n\r\n"


WARCINFO = (b"WARC/1.0\r\nWARC-Type: warcinfo\r\nWARC-Date: 2024-05-31T01:16:45Z\r\n"
            b"WARC-Record-ID: <urn:uuid:b4fe2291-40c2-4492-b4ab-7a7776be6c73>\r\n"
            b"Content-Type: application/warc-fields\r\nContent-Length: 16\r\n\r\nformat: WARC 1.0\r\n\r\n")


def wat(records: list[bytes], gz: bool = True) -> bytes:
    return b"".join(gzip.compress(r, mtime=0) for r in records) if gz else b"".join(records)


def parse_bytes(data: bytes, opts: ParseOptions = DEFAULT_OPTIONS, batch_size: int = 65536):
    parser = WatParser(opts, batch_size=batch_size)
    pairs, bad = [], []
    for b in parser.parse(io.BytesIO(data)):
        assert isinstance(b, Batch)
        assert len(b.image_url) == len(b.text) == len(b.text_source) == len(b.page_url)
        pairs.extend(zip(b.image_url, b.text, b.text_source, b.page_url, strict=True))
        bad.extend(b.bad)
    return pairs, bad, parser.stats


def pairs_of(links: list[dict], **kw) -> list[tuple[str, str, str]]:
    opts = kw.pop("opts", ParseOptions())
    return extract_pairs(orjson.dumps(envelope(links, **kw)), opts=opts).pairs


# -- extract_pairs semantics -----------------------------------------------------------------------
def test_alt_and_title_give_pairs_missing_and_empty_alt_do_not():
    links = [
        img("https://cdn.example.org/a.jpg", alt="A brown dog"),
        img("https://cdn.example.org/b.jpg"),  # no alt
        img("https://cdn.example.org/c.jpg", alt=""),  # empty alt
        img("https://cdn.example.org/d.jpg", alt="   \n\t "),  # whitespace only
        img("https://cdn.example.org/e.jpg", alt="Red fox", title="Vulpes vulpes"),
        img("https://cdn.example.org/f.jpg", title="Only a title"),
        {"path": "A@/href", "url": "/x.html", "text": "a link", "title": "not an image", "alt": "nope"},
        {"path": "LINK@/href", "rel": "icon", "url": "/favicon.ico"},
        {"path": "SCRIPT@/src", "url": "/app.js"},
    ]
    assert pairs_of(links) == [
        ("https://cdn.example.org/a.jpg", "A brown dog", "alt"),
        ("https://cdn.example.org/e.jpg", "Red fox", "alt"),
        ("https://cdn.example.org/e.jpg", "Vulpes vulpes", "title"),
        ("https://cdn.example.org/f.jpg", "Only a title", "title"),
    ]
    assert pairs_of(links, opts=ParseOptions(text_sources=("alt",))) == [
        ("https://cdn.example.org/a.jpg", "A brown dog", "alt"),
        ("https://cdn.example.org/e.jpg", "Red fox", "alt"),
    ]


def test_relative_protocol_relative_and_base_href():
    links = [img("photos/dog.jpg", alt="dog"), img("/static/cat.png", alt="cat"),
             img("../up.jpg", alt="up"), img("./here.jpg", alt="here"), img("//img.example.net/x.jpg", alt="x")]
    got = [u for u, _, _ in pairs_of(links)]
    assert got == ["https://www.example.org/animals/dogs/photos/dog.jpg", "https://www.example.org/static/cat.png",
                   "https://www.example.org/animals/up.jpg", "https://www.example.org/animals/dogs/here.jpg",
                   "https://img.example.net/x.jpg"]
    # <base href> absolute, and relative to the page
    got = [u for u, _, _ in pairs_of(links, base="http://cdn.example.com/assets/v2/")]
    assert got == ["http://cdn.example.com/assets/v2/photos/dog.jpg", "http://cdn.example.com/static/cat.png",
                   "http://cdn.example.com/assets/up.jpg", "http://cdn.example.com/assets/v2/here.jpg",
                   "http://img.example.net/x.jpg"]
    got = [u for u, _, _ in pairs_of(links, base="/media/")]
    assert got[0] == "https://www.example.org/media/photos/dog.jpg"
    assert got[2] == "https://www.example.org/up.jpg"


def test_a_base_href_that_is_not_a_url_is_ignored():
    """HTML ignores a <base href> that fails to parse: the page's relative images resolve against the
    page instead of being lost (urljoin raises on the base's malformed host)."""
    links = [img("a.jpg", alt="rel"), img("/b.jpg", alt="root"), img("http://x.com/c.jpg", alt="abs")]
    for base in ("http://[oops/", "//[cdn/img/"):
        assert [u for u, _, _ in pairs_of(links, base=base)] == [
            "https://www.example.org/animals/dogs/a.jpg", "https://www.example.org/b.jpg", "http://x.com/c.jpg"]


@pytest.mark.parametrize("page", ["http://www.example.org/p/", "https://www.example.org/p/"])
def test_whitespace_in_a_src_is_cleaned_the_same_on_http_and_https_pages(page):
    """As a browser reads a src (WHATWG URL parsing): spaces and controls at the ends go, tabs and newlines
    inside go. urljoin does that only for a URL whose scheme is the page's, so before this a leading space
    lost the image on one scheme of page and a newline stayed in the URL on the other."""
    links = [img(" https://x.com/lead.jpg", alt="a"), img("\thttp://x.com/a\n.jpg", alt="b"),
             img("http://x.com/t.jpg ", alt="c"), img(" rel.jpg \r\n", alt="d"), img(" ", alt="e"),
             img("#", alt="f"), img(" #top", alt="g")]
    doc = envelope(links, page=page)
    assert [u for u, _, _ in extract_pairs(orjson.dumps(doc)).pairs] == [
        "https://x.com/lead.jpg", "http://x.com/a.jpg", "http://x.com/t.jpg", page + "rel.jpg"]


def test_data_and_non_http_urls_are_dropped():
    links = [img("data:image/gif;base64,R0lGODlhAQABAAAAACw=", alt="pixel"), img("javascript:void(0)", alt="js"),
             img("ftp://files.example.org/a.jpg", alt="ftp"), img("mailto:x@example.org", alt="mail"),
             img("", alt="no url"), {"path": "IMG@/src", "alt": "url missing"},
             img("HTTP://Example.org/UP.jpg", alt="upper-case scheme")]
    # a scheme is lower-cased (urljoin did that only for the base's own scheme)
    assert pairs_of(links) == [("http://Example.org/UP.jpg", "upper-case scheme", "alt")]


def test_whitespace_collapsing_unicode_and_length_filters():
    links = [img("https://e.org/1.jpg", alt="  A  dog\n\ton\r\nthe\u00a0beach  "),
             img("https://e.org/2.jpg", alt="一只狗在草地上"), img("https://e.org/3.jpg", alt="🐶 Café crème"),
             img("https://e.org/4.jpg", alt="x" * 2000), img("https://e.org/5.jpg", alt="y" * 2001),
             img("https://e.org/6.jpg", alt="ab")]
    res = extract_pairs(orjson.dumps(envelope(links)))
    assert [t for _, t, _ in res.pairs] == ["A dog on the beach", "一只狗在草地上", "🐶 Café crème", "x" * 2000, "ab"]
    assert res.filtered == 1
    res = extract_pairs(orjson.dumps(envelope(links)), opts=ParseOptions(min_text_length=3, max_text_length=100))
    assert [t for _, t, _ in res.pairs] == ["A dog on the beach", "一只狗在草地上", "🐶 Café crème"]
    assert res.filtered == 3  # 2000 x, 2001 y, "ab"


def test_only_response_records_with_html_metadata_give_pairs():
    links = [img("https://e.org/a.jpg", alt="dog")]
    assert extract_pairs(orjson.dumps(envelope(links, warc_type="request"))).pairs == []
    assert extract_pairs(orjson.dumps(envelope(links, html=False))).pairs == []
    assert extract_pairs(orjson.dumps(envelope([]))).pairs == []


def test_list_valued_headers_and_attributes_since_2024_51():
    doc = envelope([img("https://e.org/a.jpg", alt="dog"), {"path": "IMG@/src", "url": ["/b.jpg"], "alt": ["cat"]}],
                   base="/m/")
    doc["Envelope"]["WARC-Header-Metadata"]["WARC-Target-URI"] = [PAGE, PAGE]
    doc["Envelope"]["WARC-Header-Metadata"]["WARC-Type"] = ["response"]
    res = extract_pairs(orjson.dumps(doc))
    assert res.page_url == PAGE
    assert res.pairs == [("https://e.org/a.jpg", "dog", "alt"), ("https://www.example.org/b.jpg", "cat", "alt")]


def test_img_path_variants_and_page_url_fallback():
    doc = envelope([{"path": "IMG@/src", "url": "a.jpg", "alt": "one"}, {"path": "IMG@/srcx", "url": "b.jpg",
                                                                            "alt": "two"}])
    del doc["Envelope"]["WARC-Header-Metadata"]["WARC-Target-URI"]
    res = extract_pairs(orjson.dumps(doc), page_url="http://fallback.example/p/")
    assert res.page_url == "http://fallback.example/p/"
    assert res.pairs == [("http://fallback.example/p/a.jpg", "one", "alt"), ("http://fallback.example/p/b.jpg", "two",
                                                                              "alt")]


@pytest.mark.parametrize("payload", [b'{"Envelope": {', b"not json at all", b'{"Envelope": [1, 2]}',
                                     b'{"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response"}, '
                                     b'"Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": '
                                     b'{"Links": ["IMG@/src"]}}}}}'])
def test_malformed_payloads_raise_bad_record(payload):
    with pytest.raises(BadRecord) as info:
        extract_pairs(payload)
    assert info.value.reason.startswith(("malformed JSON", "unexpected WAT JSON structure"))


def test_crawl_from_path():
    assert crawl_from_path("s3://commoncrawl/crawl-data/CC-MAIN-2024-22/segments/1/wat/x.warc.wat.gz") == \
        "CC-MAIN-2024-22"
    assert crawl_from_path("/data/CC-MAIN-2099-01-sample-00000.warc.wat.gz") == "CC-MAIN-2099-01"
    assert crawl_from_path("/data/whirlwind.warc.wat.gz") is None


def host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def test_placeholders_without_a_host_or_naming_the_page_give_no_pair():
    page = "https://www.h.org/dir/page.html?id=3"
    links = [img(u, alt=f"placeholder {u}") for u in ("//:0", "//", "?", "https://", "http://:80/x.jpg", "#")]
    links += [img("//cdn.h.org/a.jpg", alt="protocol-relative"), img("https://@h.org/b.jpg", alt="empty userinfo"),
              img("./", alt="the folder")]
    assert pairs_of(links, page=page) == [("https://cdn.h.org/a.jpg", "protocol-relative", "alt"),
                                          ("https://@h.org/b.jpg", "empty userinfo", "alt"),
                                          ("https://www.h.org/dir/", "the folder", "alt")]


def test_resolver_equals_urljoin_on_random_urls():
    """The fast joins must give exactly urljoin's result on the cleaned URL (absolute http(s) URLs: kept as
    written once cleaned, the scheme lower-cased; an empty URL or a fragment alone: nothing)."""
    rng = random.Random(11)
    parts = ["../", "./", "a", "b", ".", "..", "", "x.jpg", "%20", "é", "?", "#", ";", ":", "//", "/", "q=1",
             " ", "\t", "h.com", "data:", "javascript:", "[", "@", "ftp:", "mailto:", "ht\ttp:", "Https:", "a+b:",
             "1a:"]
    bases = ["http://a.com/b/c/d.html", "https://a.com", "http://a.com/b//c/./d", "http://a.com/b/c/?q=1#f",
             "https://u:p@a.com:8080/x/y", "http://a.com/b;p?q", "ftp://a.com/x", "https://a.com/b/c/..",
             "http://a.com/é/ü.html", "http://[::1]/x/"]
    for _ in range(20000):
        base = rng.choice(bases)
        url = "".join(rng.choice(parts) for _ in range(rng.randint(0, 6)))
        url = rng.choice(["", "/", "//", " "]) + url
        clean = url.strip("".join(map(chr, range(0x21)))).replace("\t", "").replace("\n", "").replace("\r", "")
        if clean[:8].lower().startswith(("http://", "https://")):  # a browser's lower-case scheme
            clean = clean[:4].lower() + clean[4:]
        try:
            want = urljoin(base, clean)
        except ValueError:
            want = None
        if want is not None and (not want.lower().startswith(("http://", "https://")) or want == base):
            want = None  # the page itself ("?", "//"): a placeholder, no pair
        if clean.startswith(("http://", "https://")):
            want = clean
        if clean.startswith(("data:", "#")) or not clean or (want is not None and not host_of(want)):
            want = None
        assert Resolver(base).resolve(url) == want, (base, url)


# -- WatParser on streams --------------------------------------------------------------------------
def _page_records(page: str, links: list[dict]) -> list[bytes]:
    req = envelope([], page=page, warc_type="request", html=False)
    return [warc_record(orjson.dumps(req), uri=page), warc_record(orjson.dumps(envelope(links, page=page)), uri=page)]


@pytest.mark.parametrize("gz", [True, False])
def test_parser_counts_every_record(gz):
    records = [WARCINFO]
    records += _page_records("http://a.example/p1", [img("/1.jpg", alt="one"), img("2.jpg", title="two")])
    records += _page_records("http://a.example/p2", [img("//b.example/3.jpg", alt="three")])
    records.append(warc_record(b'{"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response"}, "IMG@/src"'))
    records.append(warc_record(b"{oops}"))  # no image mark: shape check passes, not decoded
    records.append(warc_record(b"truncated json without braces"))
    pairs, bad, stats = parse_bytes(wat(records, gz))
    assert pairs == [("http://a.example/1.jpg", "one", "alt", "http://a.example/p1"),
                     ("http://a.example/2.jpg", "two", "title", "http://a.example/p1"),
                     ("http://b.example/3.jpg", "three", "alt", "http://a.example/p2")]
    assert stats.records == 8 and stats.bad_records == 2 and stats.error is None
    assert stats.rows_out == 3
    assert stats.bytes == len(wat(records, gz))
    assert [r for _, r, _ in bad][0].startswith("malformed JSON payload")
    assert bad[1][1] == "malformed JSON payload: not a JSON object"
    assert bad[1][2].startswith("truncated json")
    # decode_all also rejects the payload that only looks like an object
    _, bad_all, stats_all = parse_bytes(wat(records, gz), ParseOptions(decode_all=True))
    assert stats_all.bad_records == 3 and len(bad_all) == 3


def test_batches_are_split_by_batch_size():
    records = [WARCINFO] + _page_records("http://a.example/p", [img(f"/{i}.jpg", alt=f"dog {i}") for i in range(25)])
    parser = WatParser(batch_size=10)
    sizes = [len(b) for b in parser.parse(io.BytesIO(wat(records)))]
    assert sum(sizes) == 25 and max(sizes) >= 10 and len(sizes) == 1  # one record's pairs stay in one batch
    records += _page_records("http://a.example/q", [img("/z.jpg", alt="z")])
    sizes = [len(b) for b in parser.parse(io.BytesIO(wat(records)))]
    assert sizes == [25, 1] and parser.stats.rows_out == 26


def _good_file() -> tuple[bytes, list[bytes]]:
    records = [WARCINFO]
    for i in range(4):
        records += _page_records(f"http://a.example/p{i}", [img(f"/{i}.jpg", alt=f"cat {i}")])
    return wat(records), [gzip.compress(r, mtime=0) for r in records]


def _offsets(members: list[bytes]) -> list[int]:
    out, pos = [], 0
    for m in members:
        out.append(pos)
        pos += len(m)
    return out


@pytest.mark.parametrize("cut", [10, 40, "half", -8, -3])
def test_truncated_last_gzip_member_is_one_bad_record(cut):
    _, members = _good_file()
    last = members[-1]
    n = len(last) // 2 if cut == "half" else cut
    data = b"".join(members[:-1]) + last[:n]
    pairs, bad, stats = parse_bytes(data)
    off = _offsets(members)[-1]
    skipped = f"(skipped {len(last[:n])} bytes, to the end of the file)"
    assert stats.error == f"truncated gzip member at offset {off} {skipped}"
    assert [b[:2] for b in bad] == [(off, f"truncated gzip member {skipped}")]
    assert stats.records == 9 and stats.bad_records == 1  # 8 whole records + the cut one
    # a member without its CRC footer is not trusted, even when its record's bytes are all there
    assert [p[1] for p in pairs] == [f"cat {i}" for i in range(3)]
    assert stats.status == "partial" and not stats.fatal


def test_corrupt_gzip_member_in_the_middle_is_skipped_and_reading_resumes():
    _, members = _good_file()
    broken = bytearray(members[4])
    for i in range(20, len(broken) - 10, 7):
        broken[i] ^= 0x5A
    data = b"".join(members[:4]) + bytes(broken) + b"".join(members[5:])
    pairs, bad, stats = parse_bytes(data)
    off = _offsets(members)
    assert stats.error is not None and stats.error.startswith("corrupt gzip data")
    assert f"at offset {off[4]} (skipped {len(broken)} bytes, resumed at offset {off[5]})" in stats.error
    assert stats.records == 9 and stats.bad_records == 1 and len(bad) == 1 and bad[0][0] == off[4]
    assert [p[1] for p in pairs] == ["cat 0", "cat 2", "cat 3"]
    assert stats.status == "partial"


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file (0 bytes)"),
    (b"\x00" * 70_000, "no WARC record: the file holds only padding"),  # a preallocated, never-written download
    (b"\r\n" * 1000, "no WARC record: the file holds only padding"),
    (b"\x00\x01garbage bytes that are not WARC" * 20, "invalid WARC record"),
    (gzip.compress(b"hello, not a warc file\n" * 50), "invalid WARC record"),
])
def test_not_a_wat_file(data, reason):
    pairs, bad, stats = parse_bytes(data)
    assert pairs == []
    assert stats.error is not None and stats.error.startswith(reason)
    assert stats.records == 1 and stats.bad_records == 1 and bad[0][0] == 0
    assert stats.status == "failed"  # not one record: the file could not be read at all


def test_whole_file_gzip_with_a_large_last_record():
    """Not CommonCrawl's layout, but valid: offsets are then uncompressed ones; no false alarm."""
    big = [img(f"/{i}.jpg", alt=f"a red fox number {i} " + "x" * (i % 50)) for i in range(3000)]
    records = [WARCINFO] + _page_records("http://a.example/big", big)
    data = gzip.compress(wat(records, gz=False), mtime=0)
    pairs, bad, stats = parse_bytes(data)
    assert len(pairs) == 3000 and bad == [] and stats.error is None and stats.records == 3
    pairs, bad, stats = parse_bytes(data[: len(data) // 2])
    assert stats.error is not None and stats.error.startswith("truncated gzip member") and len(bad) == 1
    assert WHOLE_FILE_GZIP in stats.error and stats.status == "failed"  # no resync inside one deflate stream


def test_garbage_after_last_record():
    data, members = _good_file()
    _, bad, stats = parse_bytes(data + b"\r\nJUNK JUNK JUNK")
    assert stats.error is not None and bad[0][0] == len(data)
    assert stats.records == 10 and stats.bad_records == 1 and stats.status == "partial"


def test_truncated_uncompressed_file():
    records = [WARCINFO] + _page_records("http://a.example/p", [img("/1.jpg", alt="one")])
    data = wat(records, gz=False)
    pairs, bad, stats = parse_bytes(data[:-200])
    off = len(WARCINFO) + len(records[1])
    assert pairs == [] and stats.error == f"truncated record at offset {off} (skipped {len(records[2]) - 200} " \
        "bytes, to the end of the file)"
    assert stats.records == 3 and stats.bad_records == 1 and stats.status == "partial"


def test_stream_without_tell_is_fine():
    class NoTell(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._b = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._b.read(n)

        def tell(self) -> int:
            raise io.UnsupportedOperation("tell")

    data, _ = _good_file()
    parser = WatParser()
    n = sum(len(b) for b in parser.parse(NoTell(data)))
    assert n == 4 and parser.stats == FileStats(records=9, rows_out=4, bytes=len(data))


def test_read_error_mid_file_is_reported_not_raised():
    data, members = _good_file()

    class Flaky(io.RawIOBase):
        def __init__(self) -> None:
            self._b = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            if self._b.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return self._b.read(min(n, len(data) // 2) if n and n > 0 else len(data) // 2)

    _, bad, stats = parse_bytes_stream(Flaky())
    assert stats.error is not None and stats.error.startswith("read error")
    assert "ConnectionResetError" in stats.error and len(bad) == 1 and stats.bad_records == 1
    assert stats.status == "failed"  # the rest of the stream is unknown: a re-run retries it


def test_an_http_body_cut_short_is_a_read_error_not_a_partial_file():
    """http.client ends read(n) with b"" when a server closes early: without the Content-Length check the
    file looked cut short (partial, counted as done, the rest never read); it must fail and be retried."""
    import http.server
    import threading

    from kgcurate.wat.inputs import open_input

    data, _ = _good_file()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if self.path == "/whole.wat.gz" else data[: len(data) // 2])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with open_input(f"{base}/whole.wat.gz") as stream:
            pairs, _, stats = parse_bytes_stream(stream)
        assert stats.status == "ok" and len(pairs) == 4
        with open_input(f"{base}/cut.wat.gz") as stream:
            _, _, stats = parse_bytes_stream(stream)
        assert stats.status == "failed" and "IncompleteRead" in stats.error
    finally:
        server.shutdown()
        server.server_close()


def parse_bytes_stream(stream):
    parser = WatParser()
    pairs, bad = [], []
    for b in parser.parse(stream):
        pairs.extend(zip(b.image_url, b.text, b.text_source, b.page_url, strict=True))
        bad.extend(b.bad)
    return pairs, bad, parser.stats


# -- real CommonCrawl excerpts ---------------------------------------------------------------------
def test_real_2014_excerpt_uncompressed(shared_data):
    path = shared_data / "commoncrawl" / "CC-MAIN-2014-35-excerpt.warc.wat"
    pairs, bad, stats = parse_bytes(path.read_bytes())
    page = "http://0pointer.de/photos/?gallery=Australia&photo=496"
    assert pairs == [
        ("http://0pointer.de/photos/galleries/Australia/lq/img-496.jpg", "496", "alt", page),
        ("http://0pointer.de/photos/galleries/Australia/thumbs/img-495.jpg", "Previous", "alt", page),
        ("http://0pointer.de/photos/galleries/Australia/thumbs/img-497.jpg", "Next", "alt", page),
        ("http://creativecommons.org/images/public/somerights20.png", "Creative Commons License", "alt", page),
    ]
    assert stats == FileStats(records=9, bad_records=0, rows_out=4, filtered=0, bytes=path.stat().st_size)
    assert bad == []
    # the same file, one gzip member per record as CommonCrawl ships it
    from fastwarc.warc import ArchiveIterator

    raw = path.read_bytes()
    starts = [r.stream_pos for r in ArchiveIterator(io.BytesIO(raw), parse_http=False)] + [len(raw)]
    regz = b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in zip(starts, starts[1:], strict=False))
    assert parse_bytes(regz)[0] == pairs


def test_real_whirlwind_wat_gives_no_pairs(shared_data):
    path = shared_data / "commoncrawl" / "whirlwind.warc.wat.gz"
    pairs, bad, stats = parse_bytes(path.read_bytes())
    assert pairs == [] and bad == []
    assert stats.records == 2 and stats.bad_records == 0 and stats.error is None
    assert crawl_from_path(str(path)) is None


def test_same_pairs_in_any_batch_size():
    data, _ = _good_file()
    assert Counter(parse_bytes(data, batch_size=1)[0]) == Counter(parse_bytes(data)[0])


# -- character references in attribute values -----------------------------------------------------
@pytest.mark.parametrize("raw,want", [
    ("a?x=1&amp;y=2", "a?x=1&y=2"), ("Tom &amp; Jerry", "Tom & Jerry"), ("&quot;dog&quot;", '"dog"'),
    ("&lt;b&gt", "<b>"), ("&#39;s &#x27;t", "'s 't"), ("R&D", "R&D"), ("&copy 2020", "\u00a9 2020"),
    # HTML's rule for attributes: a reference without ";" followed by "=" or a letter or digit stays
    ("a?x=1&copy=2", "a?x=1&copy=2"), ("&ampz", "&ampz"), ("&amp=", "&amp="), ("&notit;", "&notit;"),
    ("&ampé", "&\u00e9"), ("&#1;", ""), ("no reference", "no reference"),
])
def test_unescape_attr_decodes_as_a_browser_reads_an_attribute(raw, want):
    assert unescape_attr(raw) == want


def test_character_references_in_src_alt_title_and_base_are_decoded():
    """CommonCrawl keeps attribute values as the HTML wrote them (`&amp;` in a src: a real 2014 WAT
    has 11 in 101 lines); a browser requests the decoded URL, so a kept `&amp;` was a broken URL."""
    links = [
        img("https://cdn.example.org/a.jpg?w=1&amp;h=2", alt="Tom &amp; Jerry", title="&quot;Cat&quot;&nbsp;nap"),
        img("/b.jpg?id=1&copy=2", alt="&lt;none&gt;"),
        img("&#1;", alt="an empty URL once decoded"),
        img("https://cdn.example.org/c.jpg", alt="&#1;"),  # a text empty once decoded
        img("c.jpg", alt="relative"),
    ]
    assert pairs_of(links, base="/v&amp;2/") == [
        ("https://cdn.example.org/a.jpg?w=1&h=2", "Tom & Jerry", "alt"),
        ("https://cdn.example.org/a.jpg?w=1&h=2", '"Cat" nap', "title"),
        ("https://www.example.org/b.jpg?id=1&copy=2", "<none>", "alt"),
        ("https://www.example.org/v&2/c.jpg", "relative", "alt"),
    ]


def test_the_text_length_limits_apply_to_the_decoded_text():
    opts = ParseOptions(min_text_length=2, max_text_length=5)
    links = [img("https://h.example/a.jpg", alt="&amp;&amp;"), img("https://h.example/b.jpg", alt="a&amp;b&amp;c"),
             img("https://h.example/c.jpg", alt="&amp;amp;&amp;")]  # decoded "&amp;&": 6 > 5
    assert pairs_of(links, opts=opts) == [("https://h.example/a.jpg", "&&", "alt"),
                                          ("https://h.example/b.jpg", "a&b&c", "alt")]


@pytest.mark.parametrize("native", ["0", "1"])
@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_a_metadata_record_fastwarc_does_not_type_is_read(native, gz, monkeypatch):
    """``warc-type: metadata`` (a lowercase header name) and ``WARC-Type: METADATA``: fastwarc gives them no
    type, and its path skipped them as records of another type while the member path and the compiled
    parser read their pairs. A record with no WARC-Type at all is damage on every path, not skipped."""
    monkeypatch.setenv("KGCURATE_NATIVE", native)
    payload = orjson.dumps(envelope([img("http://ex.com/i.jpg", alt="a dog on grass")]))
    lower = warc_record(payload).replace(b"WARC-Type: metadata", b"warc-type: metadata")
    upper = warc_record(payload, warc_type="METADATA")
    pairs, bad, stats = parse_bytes(wat([WARCINFO, lower, upper, warc_record(payload)], gz=gz))
    assert len(pairs) == 3 and bad == [] and stats.status == "ok" and stats.records == 4
    untyped = warc_record(payload).replace(b"WARC-Type: metadata\r\n", b"")
    pairs, bad, stats = parse_bytes(wat([WARCINFO, untyped, warc_record(payload)], gz=gz))
    assert len(pairs) == 1 and [r.split(" (")[0] for _, r, _ in bad] == [
        "invalid WARC record in a gzip member: no WARC-Type" if gz else "invalid WARC record: no WARC-Type"]


@pytest.mark.parametrize("native", ["0", "1"])
def test_control_characters_and_zero_width_spaces_separate_words(native, monkeypatch):
    """An alt of only NUL or U+200B was a caption, and NUL, BEL or DEL inside one were stored and reached
    the tokenizer; both parsers now read controls (C0, DEL, C1), U+200B and U+FEFF as whitespace (joiners,
    which Persian words and emoji need, stay)."""
    monkeypatch.setenv("KGCURATE_NATIVE", native)
    links = [img("http://ex.com/1.jpg", alt="a\x00b\x07c"), img("http://ex.com/2.jpg", alt="\x00"),
             img("http://ex.com/3.jpg", alt="\u200b"), img("http://ex.com/4.jpg", alt="c\x00at\x7f\ufeff"),
             img("http://ex.com/5.jpg", alt="\x85big\x9fdog"), img("http://ex.com/6.jpg", alt="\u0645\u200c\u0627")]
    pairs, bad, _ = parse_bytes(wat([WARCINFO, warc_record(orjson.dumps(envelope(links)))]))
    assert bad == [] and [(u[-5:], t) for u, t, _s, _p in pairs] == [
        ("1.jpg", "a b c"), ("4.jpg", "c at"), ("5.jpg", "big dog"), ("6.jpg", "\u0645\u200c\u0627")]


@pytest.mark.parametrize("native", ["0", "1"])
@pytest.mark.parametrize("page", ["http://ex.com/d/p.html", "https://ex.com/d/p.html"])
def test_backslashes_and_an_upper_case_scheme_read_as_a_browser_reads_them(page, native, monkeypatch):
    """`images\\logo.gif` kept its backslash (a browser fetches images/logo.gif), `http:\\\\x.com\\a.jpg` took
    the page's host, and `HTTP://X.COM/a.jpg` was `http://` on an http page but `HTTP://` on an https one:
    two pair_ids for one image. A backslash in the query stays, as a browser keeps it."""
    monkeypatch.setenv("KGCURATE_NATIVE", native)
    links = [img("HTTP://X.COM/a.jpg", alt="a"), img("images\\logo.gif", alt="b"),
             img("http:\\\\x.com\\a.jpg", alt="c"), img("https://x.com/p\\q.jpg?s=t\\u", alt="d"),
             img("Https://x.com/e.jpg", alt="e")]
    pairs, bad, _ = parse_bytes(wat([WARCINFO, warc_record(orjson.dumps(envelope(links, page=page)), uri=page)]))
    folder = page.rsplit("/", 1)[0]
    assert bad == [] and [u for u, _t, _s, _p in pairs] == [
        "http://X.COM/a.jpg", f"{folder}/images/logo.gif", "http://x.com/a.jpg", "https://x.com/p/q.jpg?s=t\\u",
        "https://x.com/e.jpg"]
