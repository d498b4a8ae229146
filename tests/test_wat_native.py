"""The compiled WAT path (``kgcurate_native``, native/) against the pure-Python parser: the same
batches (pairs, pages, page rows, bad records, batch boundaries) and the same FileStats, on every
fixture the parser tests use, generated samples (clean, corrupt, damaged) and hostile records.

Skips when the module is not built, unless ``KGCURATE_REQUIRE_NATIVE=1`` (``make test`` sets it),
where its absence fails: the parity tests can never pass without the native path running.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
from pathlib import Path

import orjson
import pytest

from kgcurate.wat import parse as P
from kgcurate.wat.parse import DEFAULT_OPTIONS, ParseOptions, WatParser
from kgcurate.wat.sample import write_sample
from test_wat_parse import WARCINFO, envelope, img, warc_record, wat
from wat_damage import GZ_KINDS, damage, mixed_plan, plan_for, split_records


@pytest.fixture(scope="module")
def native():
    try:
        import kgcurate_native
    except ImportError as exc:
        if os.environ.get("KGCURATE_REQUIRE_NATIVE") == "1":
            pytest.fail(f"KGCURATE_REQUIRE_NATIVE=1 but kgcurate_native is not importable ({exc}): "
                        "`make setup` builds it from native/")
        pytest.skip("kgcurate_native not built (pip install ./native)")
    return kgcurate_native


def test_native_module_importable_when_required():
    if os.environ.get("KGCURATE_REQUIRE_NATIVE") != "1":
        pytest.skip("KGCURATE_REQUIRE_NATIVE is not 1")
    import kgcurate_native  # noqa: F401 - fails the suite where the build did not install it

    assert P.native_module() is not None


def run(data: bytes, native: bool, opts: ParseOptions = DEFAULT_OPTIONS, batch_size: int = 65536,
        counts: dict | None = None):
    """(batches as tuples of every column, stats) with the native path on or off."""
    old = os.environ.get("KGCURATE_NATIVE")
    os.environ["KGCURATE_NATIVE"] = "1" if native else "0"
    member = P.WatParser._member
    calls = [0]

    def counting(self, *a):
        calls[0] += 1
        return member(self, *a)

    try:
        P.WatParser._member = counting
        parser = WatParser(opts, batch_size=batch_size)
        batches = [(b.image_url, b.text, b.text_source, b.pages, b.page_rows, b.bad)
                   for b in parser.parse(io.BytesIO(data))]
    finally:
        P.WatParser._member = member
        if old is None:
            os.environ.pop("KGCURATE_NATIVE", None)
        else:
            os.environ["KGCURATE_NATIVE"] = old
    if counts is not None:
        counts["member"] = calls[0]
    return batches, parser.stats


def _flat(batches: list) -> list:
    return [sum((list(b[k]) for b in batches), []) for k in range(6)]


def same(data: bytes, opts: ParseOptions = DEFAULT_OPTIONS, batch_size: int = 65536, boundaries: bool = True) -> dict:
    """Native and pure-Python give the same stats and batches. ``boundaries=False``: the same rows in
    the same order, batches cut elsewhere (a gzip member holding several records, not CommonCrawl's
    layout, is read whole by the native path and by ``_member``, while fastwarc may hand out a full
    batch between its records)."""
    counts: dict = {}
    got = run(data, True, opts, batch_size, counts)
    want = run(data, False, opts, batch_size)
    assert got[1] == want[1]
    if boundaries:
        assert got[0] == want[0]
    else:
        assert _flat(got[0]) == _flat(want[0])
    return counts


def test_whitespace_is_python_s(native):
    assert native.py_space_chars() == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    rng = random.Random(5)
    alphabet = (" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u200b\u2028\u3000\u180e\ufeff"
                "ab\u00e9\U0001f600")
    alphabet += "\x00\x07\x7f\x80\x9f\u200c\u200d"
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert native.collapse_whitespace(s) == P.collapse_whitespace(s), repr(s)
    # Every code point between two words: the collapse decodes only the lead bytes a separator can start
    # with (0xC2, 0xE1-0xE3, 0xEF), so a character it skips decoding must not be one.
    every = "".join(f"a{chr(c)}b" for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert native.collapse_whitespace(every) == P.collapse_whitespace(every)
    # controls separate words, U+200B and U+FEFF go (a Thai word break shows no space); joiners stay
    for s, want in (("a\x00b\x07c", "a b c"), ("\x00", ""), ("\u200b", ""), ("\ufeffcat\x7f", "cat"),
                    ("x\x85\x9fy", "x y"), ("\u0645\u200c\u0627", "\u0645\u200c\u0627"), ("Kit\u200bchen", "Kitchen"),
                    ("a \u200b b", "a b"), ("\u0e41\u0e21\u0e27\u200b\u0e14\u0e33", "\u0e41\u0e21\u0e27\u0e14\u0e33"),
                    ("\u200b\ufeff a\u200b", "a")):
        assert native.collapse_whitespace(s) == P.collapse_whitespace(s) == want, repr(s)


def test_clean_sample_is_all_native(native, tmp_path):
    m = write_sample(tmp_path, files=1, records=300, seed=4, corrupt=False)
    data = Path(m.files[0]).read_bytes()
    counts = same(data)
    assert counts["member"] == 0  # every member read by the native path
    for batch_size in (1, 7, 500):
        same(data, batch_size=batch_size)


@pytest.mark.parametrize("corrupt", [False, True])
def test_generated_samples(native, tmp_path, corrupt):
    m = write_sample(tmp_path, files=3, records=200, seed=7, corrupt=corrupt)
    for path in m.files:
        same(Path(path).read_bytes())
        same(Path(path).read_bytes(), batch_size=50)
    m2 = write_sample(tmp_path / "plain", files=1, records=60, seed=7, corrupt=corrupt, gzip=False)
    same(Path(m2.files[0]).read_bytes())


def test_damaged_files(native, tmp_path):
    m = write_sample(tmp_path, files=1, records=60, seed=3, corrupt=False)
    records = split_records(Path(m.files[0]).read_bytes(), gz=True)
    for kind in GZ_KINDS:
        for seed, plan in enumerate([plan_for(kind, len(records), 0), plan_for(kind, len(records), 1)]):
            same(damage(records, plan, True, seed=seed).data)
    rng = random.Random(1)
    for seed in range(3):
        same(damage(records, mixed_plan(GZ_KINDS, len(records), rng), True, seed=seed).data, batch_size=20)


def test_parser_fixtures(native):
    links = [img("/a.jpg", "A dog"), img("b.png", " two\tdogs ", "t"), img("https://x.org/c.jpg", "c"),
             img("data:image/gif;base64,AAAA", "d"), img("//cdn.x.org/e.jpg", title="e")]
    recs = [WARCINFO, warc_record(json.dumps(envelope(links)).encode()),
            warc_record(json.dumps(envelope(links, base="/static/")).encode()),
            warc_record(json.dumps(envelope(links, base="https://cdn.example.net/v2/")).encode()),
            warc_record(json.dumps(envelope(links, warc_type="request")).encode()),
            warc_record(b'{"Envelope": 5, "IMG@/src": 1}'), warc_record(b"not json"),
            warc_record(b"{}", warc_type="response")]
    for gz in (True, False):
        data = wat(recs, gz=gz)
        same(data)
        same(data, batch_size=1)
        same(data[:-37])
        same(data + b"\x00\r\n  ")


def test_shared_data(native, shared_data):
    files = sorted((shared_data / "commoncrawl").glob("*"))
    assert files
    for path in files:
        raw = path.read_bytes()
        same(raw)
        if path.name.endswith(".warc.wat"):  # one gzip member per record, as CommonCrawl ships it
            from fastwarc.warc import ArchiveIterator

            starts = [r.stream_pos for r in ArchiveIterator(io.BytesIO(raw), parse_http=False)] + [len(raw)]
            same(b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in zip(starts, starts[1:], strict=False)))


# -- hostile records ------------------------------------------------------------------------------
_CHARS = ("a", "B", "z", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85",
          "\xa0", "\u1680", "\u2000", "\u200b", "\u2028", "\u3000", "\u180e", "\ufeff", "\u00e9", "\U0001f600",
          "\x00", "\x7f", "\\", '"', "/", "?", "#", ":", ";", "[", "]", "..", ".",
          "&amp;", "&", "&#1;", "&copy=", "&lt", "&nbsp;", "&#x1F600;", "&quot;", "&#0;", "&notit;")
_URLS = ["http://h.org/a.jpg", "https://h.org/b?x=1", "http://h.org/a\nb.jpg", "https://h.org/\tx", "HTTPS://H.org/y",
         "HTTP://h.org", "http:relative.jpg", "//cdn.h.org/c.jpg", "//", "///x", "//?q", "//\u00e9.org/x", "/a.jpg",
         "/a/../b.jpg", "/./a", "/a/./b", "/\u00e9.png", "a.jpg", "a/b/c.png", "./a.jpg", "./../a", "../a.jpg",
         "../../../../../a.jpg", "..", "../", "./", ".", "?q", "?", "a?", "a??", "a?b?", "#f", "a#f", "a b.jpg",
         " a.jpg", "a.jpg ", "a//b.jpg", "a/.b", ";p", "a;p", "\\x.jpg", "a:b", "x:y/z", "data:image/png;base64,AA",
         "javascript:void(0)", "mailto:a@h.org", "ftp://h.org/f.jpg", "[::1]/x", "http://[::1/x", "//[::1/x",
         "\u00e9t\u00e9.jpg", "%20a.jpg", "a\x00b", "a\x1fb", "", " https://h.org/lead.jpg", "http://h.org/t.jpg ",
         "\thttp://h.org/tab.jpg\n", "http://h.org/x.jpg\x00", "  ", "#", " #top",
         "a.jpg?x=1&amp;y=2", "https://h.org/q?a=1&amp;b=2", "&#1;", "https&#58;//h.org/e.jpg", "i.jpg?a=1&copy=2",
         "q?h=1&w=2&amp;x=3&#38;y", "q?a&b=1&",
         "&#x2F;&#x2F;cdn.h.org/x.jpg", "&amp;", "http://h.org/&#10;n.jpg"]
_PAGES = ["https://www.h.org/animals/dogs/index.html?id=3", "http://h.org", "http://h.org/", "https://h.org/a//b/c.html",
          "https://h.org/a/./b.html", "https://h.org/a/b/", "http://\u00e9.org/x/y", "http://[::1/x", "ftp://h.org/x/",
          "HTTP://h.org/x/y", "https://h.org/p?q#f", "https://h.org#f", "https://h.org/x y/z", "https://h.org/%7Ea/b"]
_HOSTILE = [True]  # False: odd values are rare, so most records stay on the native path
_BASES = [None, None, None, "", "/static/", "https://cdn.h.org/v2/", "../up/", "//other.org/", "http://[::1",
          "HTTP://X.org/", "?q", 5, ["https://list.org/"], None, "https://cdn.h.org/v&amp;3/",
          "&#47;s&#47;"]


def _jstr(rng: random.Random, s: str) -> str:
    return json.dumps(s, ensure_ascii=rng.random() < 0.3)


def _text(rng: random.Random, lo_hi: tuple[int, int]) -> str:
    lo, hi = lo_hi
    r = rng.random()
    if r < 0.15:  # at and around the length limits
        n = rng.choice([lo - 1, lo, lo + 1, hi - 1, hi, hi + 1])
        return "x" * max(n, 0)
    if r < 0.2:  # a long run of spaces collapsing to within the limit
        return "a" + " \t\u3000" * hi + "b"
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 14)))


def _value(rng: random.Random, kind: str, lo_hi: tuple[int, int]) -> str:
    r = rng.random()
    if r < (0.75 if _HOSTILE[0] else 0.995):
        return _jstr(rng, _text(rng, lo_hi) if kind == "text" else rng.choice(_URLS))
    return rng.choice(['null', '5', '0', 'true', 'false', '""', '[]', '{}', '["x y", 1]', '[1, "s"]', '{"a": "b"}',
                       '123456789012345678901234567890', '1.5', '1e5', '-0', '"\\ud800"', '"\\udc00x"',
                       '"\\ud83d\\ude00 ok"', '"\\u0041\\u00e9\\u2028"'])


def _link(rng: random.Random, lo_hi: tuple[int, int]) -> str:
    items = []
    r = rng.random()
    path = '"IMG@/src"' if r < 0.7 else rng.choice(['"IMG@/srcset"', '"A@/href"', '5', 'null', '["IMG@/src"]',
                                                    '"IMG@\\/src"'])
    if rng.random() < 0.97:
        items.append(f'"path": {path}')
    if rng.random() < 0.03:  # a second path: orjson keeps the last
        items.append(f'"path": "{rng.choice(["IMG@/src", "A@/href"])}"')
    if rng.random() < 0.95:
        items.append(f'"url": {_value(rng, "url", lo_hi)}')
    for src in ("alt", "title"):
        if rng.random() < 0.7:
            items.append(f'"{src}": {_value(rng, "text", lo_hi)}')
    if rng.random() < 0.03:  # duplicate keys
        items.append(f'"alt": {_value(rng, "text", lo_hi)}')
    if rng.random() < 0.03:
        items.append('"url": "/dup.jpg"')
    rng.shuffle(items)
    if rng.random() < 0.02:
        return rng.choice(['"a string link"', '5', 'null', '["IMG@/src"]'])
    return "{" + ", ".join(items) + "}"


def _payload(rng: random.Random, lo_hi: tuple[int, int]) -> bytes:
    links = ", ".join(_link(rng, lo_hi) for _ in range(rng.randint(0, 12)))
    base = rng.choice(_BASES)
    head = '{"Title": "t"' + (f', "Base": {json.dumps(base)}' if base is not None else "") + "}"
    if rng.random() < 0.03:
        head = rng.choice(['"head"', 'null', '[]', '{}'])
    links_json = f"[{links}]"
    if rng.random() < 0.03:
        links_json = rng.choice(['{"a": 1}', '"IMG@/src"', 'null', '[]', '5'])
    html = f'{{"Head": {head}, "Links": {links_json}}}'
    if rng.random() < 0.03:
        html = rng.choice(['null', '{}', '[]', '"x"', '0'])
    http = f'{{"Headers": {{"X": ["a", "b"]}}, "HTML-Metadata": {html}}}'
    pm = f'{{"HTTP-Response-Metadata": {http}, "Actual-Content-Length": 12345678901234567890123}}'
    if rng.random() < 0.03:
        pm = rng.choice(['null', '{}', '[]', '"x"', '{"HTTP-Response-Metadata": null}',
                         '{"HTTP-Response-Metadata": 5}'])
    page = rng.choice(_PAGES)
    wtype = '"response"' if rng.random() < 0.9 else rng.choice(['"request"', '["response"]', 'null', '5'])
    uri = json.dumps(page) if rng.random() < 0.95 else rng.choice(['null', '""', '["https://l.org/x"]', '5'])
    whm = f'{{"WARC-Type": {wtype}, "WARC-Target-URI": {uri}}}'
    if rng.random() < 0.02:
        whm = rng.choice(['[]', '"x"', 'null'])
    env = f'{{"WARC-Header-Metadata": {whm}, "Payload-Metadata": {pm}}}'
    doc = f'{{"Container": {{"Offset": "0", "n": 1.25}}, "Envelope": {env}}}'
    if rng.random() < 0.03:
        doc = doc.replace('"Envelope"', '"Envelope2"')
    if rng.random() < 0.02:
        doc = f'{{"Envelope": 1, {doc[1:]}'  # a duplicate top-level key
    if rng.random() < 0.02:
        doc = " \n" + doc + "\t "
    raw = doc.encode("utf-8", "surrogatepass")
    r = rng.random()
    if r < 0.02:
        raw = raw.replace(b"IMG@/src", b"IMG@/src\xff", 1)  # invalid UTF-8
    elif r < 0.04:
        raw = raw[: rng.randint(1, len(raw))]  # cut JSON
    elif r < 0.05:
        raw = raw + b" x"
    elif r < 0.06:
        raw = b"[" * 600 + b"IMG@/src" + b"]" * 600
    return raw


def _hostile_file(seed: int, lo_hi: tuple[int, int]) -> bytes:
    rng = random.Random(seed)
    members = [gzip.compress(WARCINFO, mtime=0)]
    for i in range(120):
        page = rng.choice(_PAGES)
        rec = warc_record(_payload(rng, lo_hi), uri=page.replace("\n", "")) if rng.random() < 0.9 else \
            warc_record(b'{"Envelope": {}}', warc_type=rng.choice(["request", "response", "METADATA"]))
        r = rng.random()
        if r < 0.01:
            rec = rec.replace(b"Content-Length:", b"Content-Length: 9", 1)
        elif r < 0.02:
            rec = rec.replace(b"WARC/1.0", b"WARC/1.x", 1)
        member = gzip.compress(rec, mtime=0)
        r = rng.random()
        if r < 0.01:
            member = member[: len(member) // 2]  # a cut member
        elif r < 0.02:
            member += b"\x00\x00junk"
        members.append(member)
        if i == 60 and rng.random() < 0.5:
            members.append(gzip.compress(b"", mtime=0))
    data = b"".join(members)
    if rng.random() < 0.3:
        data = data[: len(data) - rng.randint(1, 200)]
    return data


@pytest.mark.parametrize("seed", range(12))
def test_hostile_records(native, seed):
    lo_hi = (1, 2000) if seed % 3 == 0 else (3, 12)
    opts = ParseOptions(min_text_length=lo_hi[0], max_text_length=lo_hi[1],
                        text_sources=("alt", "title") if seed % 2 else ("title", "alt", "alt"))
    _HOSTILE[0] = seed % 4 != 1
    data = _hostile_file(seed, lo_hi)
    counts = same(data, opts)
    if not _HOSTILE[0]:
        assert counts["member"] < 70  # most of the 120 members went through the native path (45-62 on seeds 1, 5, 9)
    same(data, opts, batch_size=3, boundaries=False)


def test_links_that_are_not_images_and_a_second_path(native):
    """The native path reads nothing more of a link whose first key is a non-image "path"; a second
    "path" after it (orjson keeps the last, which may be an image's) must still give Python's rows."""
    links = ('[{"path": "A@/href", "url": "/a.jpg", "alt": "skipped link"},'
             ' {"path": "A@/href", "url": "/b.jpg", "alt": "second path", "path": "IMG@/src"},'
             ' {"path": "IMG@\\/src", "url": "/c.jpg", "alt": "escaped path"},'
             ' {"url": "/d.jpg", "path": "A@/href", "alt": "path not first"},'
             ' {"path": "IMG@/src", "url": "/e.jpg", "alt": "an image"}]')
    payload = ('{"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": "https://h.org/p"},'
               ' "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Head": {}, "Links": '
               + links + '}}}}}')
    one = wat([WARCINFO, warc_record(payload.encode()), warc_record(payload.replace(', "path": "IMG@/src"}', '}', 1)
                                                                    .encode())])
    counts = same(one)
    assert counts["member"] == 1  # the record with a second path went to Python; the other did not
    texts = run(one, True)[0][0][1]
    assert texts == ["second path", "escaped path", "an image", "escaped path", "an image"]


def test_placeholder_urls_without_a_host(native):
    """Blank-image idioms ("//:0", "https://", "//x@") have no host: both paths drop them, the native one by
    deferring them to Python's full check; the page itself ("?", "//") is no pair either."""
    urls = ["//:0", "https://", "http://:80/a.jpg", "//x.jpg@", "https://u@/a.jpg", "?", "//", "//cdn.h.org/a.jpg",
            "https://h.org/b.jpg", "https://@h.org/c.jpg", "/d.jpg", "e.jpg"]
    links = ", ".join(orjson.dumps({"path": "IMG@/src", "url": u, "alt": f"alt {i}"}).decode()
                      for i, u in enumerate(urls))
    payload = ('{"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": '
               '"https://h.org/dir/p.html?id=3"}, "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": '
               '{"Head": {}, "Links": [' + links + ']}}}}}')
    data = wat([WARCINFO, warc_record(payload.encode())])
    same(data)
    assert run(data, True)[0][0][0] == ["https://cdn.h.org/a.jpg", "https://h.org/b.jpg", "https://@h.org/c.jpg",
                                         "https://h.org/d.jpg", "https://h.org/dir/e.jpg"]


def test_members_of_several_records(native):
    """Not CommonCrawl's layout, but read the same (rows in order; batches may be cut elsewhere).
    Not mixed with damage: a damaged member right after one of several records makes fastwarc's path
    count that member's first record twice (read, then read again by the resync path from the
    member's start), which the native path, reading the member whole, does not."""
    rng = random.Random(3)
    _HOSTILE[0] = False
    recs = [warc_record(_payload(rng, (1, 2000))) for _ in range(40)]
    members, i = [gzip.compress(WARCINFO, mtime=0)], 0
    while i < len(recs):
        k = 1 + len(members) % 3  # 2, 3, 1, 2, 3, ... records a member
        members.append(gzip.compress(b"".join(recs[i:i + k]), mtime=0))
        i += k
    data = b"".join(members)
    same(data, boundaries=False)
    same(data, batch_size=2, boundaries=False)


def test_large_members(native):
    """Members larger than the native path's first output buffer (1 MiB inflated) and than one read
    (1 MiB compressed): read natively all the same (the buffer grows), and a file cut inside the
    largest member ends as the pure-Python parser ends it."""
    rng = random.Random(11)
    records = [WARCINFO]
    for n_links in (200, 9000, 30000, 60000):  # ~0.03, 1.3, 4.5, 9 MB of JSON
        links = [img(f"https://img{rng.randrange(10**9)}.example/{i}.jpg", alt=f"{rng.getrandbits(64):x} dog {i}")
                 for i in range(n_links)]
        records.append(warc_record(json.dumps(envelope(links)).encode()))
    data = wat(records)
    assert max(len(gzip.compress(r)) for r in records) > 1 << 20
    counts = same(data)
    assert counts["member"] == 0
    rows, stats = run(data, True)
    assert sum(len(b[0]) for b in rows) == 200 + 9000 + 30000 + 60000 and stats.records == 5
    same(data[:-(1 << 19)])  # cut inside the last member


@pytest.mark.parametrize("kind", ["end CRLF", "end LF LF", "no end", "end CRLF x3", "header line without a colon",
                                  "WARC/0.18", "LF header"])
def test_loosely_framed_members_read_as_fastwarc_reads_them(native, tmp_path, kind):
    """Record ends other than CRLF CRLF, a header line that is not a field, an old WARC version: the
    native path hands those members to ``_member``, which reads them as the fastwarc path does (they
    were damage there, so the native path lost pairs fastwarc gave); LF header lines are damage on both."""
    from test_wat_resync import _reframe

    m = write_sample(tmp_path, files=1, records=60, seed=3, corrupt=False)
    records = split_records(Path(m.files[0]).read_bytes(), gz=True)
    if kind == "LF header":
        def reframe(r: bytes) -> bytes:
            head, _, rest = r.partition(b"\r\n\r\n")
            return head.replace(b"\r\n", b"\n") + b"\n\n" + rest
    else:
        def reframe(r: bytes) -> bytes:
            return _reframe(r, kind)
    data = b"".join(gzip.compress(reframe(r) if b"IMG@/src" in r else r, mtime=0) for r in records)
    counts = same(data)
    assert counts["member"] >= 5
    batches, stats = run(data, True)
    pairs = sum(len(b[0]) for b in batches)
    if kind == "LF header":
        assert stats.status == "partial" and pairs == 0
    else:
        assert stats.status == "ok" and pairs == len(m.pairs_by_file[Path(m.files[0]).name]) > 0
