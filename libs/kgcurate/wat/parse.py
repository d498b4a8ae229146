"""CommonCrawl WAT -> (image_url, text, text_source, page_url) pairs, in pure Python (no Spark).

A WAT file is a WARC file of ``metadata`` records whose JSON payload describes one record of
the original WARC. Only the payloads describing a ``response`` carry
``Envelope.Payload-Metadata.HTTP-Response-Metadata.HTML-Metadata.Links``; image links there have
``path == "IMG@/src"`` and, when the page had them, ``alt`` and ``title``.

Speed: per file the work is gzip inflation (fastwarc, native) plus, for records that can give a
pair at all, one ``orjson`` decode. Records whose payload does not contain ``IMG@/src`` cannot
give a pair, so they are not decoded (only a cheap shape check; ``ParseOptions.decode_all``
decodes them too). Absolute http(s) image URLs are kept as written once read as a browser reads a
``src`` (:func:`clean_url`); only relative and protocol-relative ones go through ``urljoin``.

Robustness: ``WatParser.parse`` never raises for bad input. Every WARC record is accounted for:
``stats.records == good records + stats.bad_records``. Damage to the container (a corrupt, empty,
junk or cut gzip member, bytes between members, a broken WARC header, a Content-Length that
swallows the next record) does not stop the file: reading resumes at the next gzip member (plain
record) that starts a parseable WARC record, and each skipped byte span is counted as one record
and one bad record (``stats.status == "partial"``). Only what cannot be read on (a read error,
damage inside a whole-file gzip stream, no WARC record at all, an empty file) stops the file
(``"failed"``). See docs/wat.md.
"""

from __future__ import annotations

import html
import logging
import os
import re
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from enum import Enum
from html.entities import html5
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urljoin, urlsplit

import orjson

IMG_PATH = "IMG@/src"
_IMG_MARK = b"IMG@/src"
_SAMPLE_CHARS = 200
_CRAWL_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
_GZIP_MAGIC = b"\x1f\x8b"
_HTTP = ("http://", "https://")
# WHATWG URL parsing's first steps, which browsers apply to every src: C0 controls and spaces
# stripped from both ends, tabs and newlines removed (an attribute split over lines).
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParseOptions:
    """Text filters and which link attributes give texts."""

    min_text_length: int = 1  # after whitespace collapsing
    max_text_length: int = 2000  # longer texts are dropped and counted as `filtered`
    text_sources: tuple[str, ...] = ("alt", "title")
    decode_all: bool = False  # JSON-decode payloads without image links too (stricter bad-record detection)


DEFAULT_OPTIONS = ParseOptions()


@dataclass
class FileStats:
    records: int = 0  # WARC records read (every type)
    bad_records: int = 0  # records rejected (malformed JSON payload, etc.) - each also yielded in Batch.bad
    rows_out: int = 0  # pairs yielded
    filtered: int = 0  # texts dropped by the length filters
    bytes: int = 0  # input bytes consumed (compressed)
    error: str | None = None  # the first damage to the container: "<reason> at offset N (...)"
    damaged: int = 0  # damaged spans skipped by resynchronising (each is also one record and one bad record)
    fatal: bool = False  # the file could not be read to its end (read error, whole-file gzip damage, not WAT)

    @property
    def status(self) -> str:
        """``ok``: every record read; ``partial``: damage skipped, every other record read;
        ``failed``: the file could not be read (to its end)."""
        return "failed" if self.fatal else "partial" if self.error else "ok"


@dataclass
class Batch:
    """Columnar output, so the Spark side builds an Arrow RecordBatch without per-row work.

    The page URL is stored once per page (``pages``) with the number of pairs it gave
    (``page_rows``): pages give several pairs each, and the Arrow side expands them with one
    ``take`` instead of encoding the same string once per pair.
    """

    image_url: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    text_source: list[str] = field(default_factory=list)
    pages: list[str | None] = field(default_factory=list)
    page_rows: list[int] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (offset, reason, sample)

    def __len__(self) -> int:
        return len(self.image_url)

    @property
    def page_url(self) -> list[str | None]:
        """The page URL of every pair (expanded from ``pages``/``page_rows``)."""
        out: list[str | None] = []
        for page, k in zip(self.pages, self.page_rows, strict=True):
            out.extend([page] * k)
        return out


class BadRecord(ValueError):
    """A record that cannot be read as a WAT metadata payload; ``reason`` goes to bad_records."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordPairs(NamedTuple):
    page_url: str | None
    pairs: list[tuple[str, str, str]]  # (image_url, text, text_source)
    filtered: int


def crawl_from_path(path: str) -> str | None:
    """``CC-MAIN-2024-22`` from a CommonCrawl path (the crawl folder or a file name), else None."""
    m = _CRAWL_RE.search(path or "")
    return m.group(0) if m else None


# Control characters (Cc: C0, DEL, C1) separate words as whitespace does, and the invisible U+200B (a word-break
# mark in Thai, Khmer, Burmese, which shows no space) and U+FEFF are dropped: an alt of only "\x00" or
# "\u200b" was a caption, controls inside one were stored, and "Kit\u200bchen" never matched "kitchen".
_TEXT_SPACE: dict[int, str | None] = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0))}
_TEXT_SPACE.update({0x200B: None, 0xFEFF: None})


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (tab, CR, LF, spaces, other Unicode spaces) and control characters -> one space,
    stripped; U+200B and U+FEFF dropped. The compiled path's ``collapse_into`` is the same rule."""
    if not text.isprintable():
        text = text.translate(_TEXT_SPACE)
    return " ".join(text.split())


def _as_str(value: Any) -> str | None:
    """A header or attribute value: a string, or (since CC-MAIN-2024-51, for repeats) a list of them."""
    if type(value) is str:
        return value
    if type(value) is list:
        for item in value:
            if type(item) is str:
                return item
    return None


# A URL the fast join handles exactly as urljoin would: no whitespace/control characters, no
# fragment, params, colon (so no scheme), backslash or bracket, not starting or ending with "?".
_C = r"\x00-\x20#;:\\\[\]"  # characters never in a plain URL (and "?" outside its query)
_PLAIN_URL = re.compile(rf"[^{_C}?][^{_C}?]*(?:\?[^{_C}]*[^{_C}?])?\Z")


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")  # what urlsplit takes for a scheme

# A base URL whose origin and folder can be cut out directly: lowercase http(s) scheme, a host
# without brackets, whitespace or control characters anywhere.
_SIMPLE_BASE = re.compile(r"(https?)://([^/?#\x00-\x20\[\]]+)(/[^?#\x00-\x20]*)?(?:[?#][^\x00-\x20]*)?\Z")


class Resolver:
    """Resolves the image URLs of one page against its base URL, like ``urljoin`` but fast.

    ``urljoin`` costs microseconds per call; per page, the base's origin and folder are worked out
    once (by ``urljoin`` itself), then plain relative, root-relative and protocol-relative URLs are
    joined by concatenation. Anything unusual (dot segments, ``//`` inside, a colon, a fragment,
    whitespace) goes to ``urljoin``, so the result is always exactly ``urljoin``'s.
    """

    __slots__ = ("base_url", "_origin", "_folder", "_scheme")

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self._origin: str | None = None  # "" when the base is not http(s): no fast path

    def _prepare(self) -> None:
        base = self.base_url or ""
        m = _SIMPLE_BASE.match(base)
        if m is not None and m.group(2).isascii():
            # The usual page URL: origin and folder by slicing (what urljoin would compute).
            self._scheme = m.group(1)
            self._origin = f"{m.group(1)}://{m.group(2)}"
            path = m.group(3) or "/"
            if "//" not in path and "/." not in path:
                self._folder = self._origin + path[: path.rfind("/") + 1]
                return
            root = self._origin + "/"
        else:
            root = _urljoin(base, "/") or ""
            if not (root.startswith(("http://", "https://")) and root.endswith("/")):
                self._origin = ""
                return
            self._origin = root[:-1]
            self._scheme = root[: root.index(":")]
        folder = _urljoin(base, "a") or ""
        self._folder = folder[:-1] if folder.startswith(root) and folder.endswith("/a") else None

    def resolve(self, url: str) -> str | None:
        """The absolute http(s) URL of ``url`` on this page, else None (data:, javascript:, ftp:...).

        Absolute http(s) URLs are returned as written (``urljoin`` would give the same but for
        dropping an empty trailing ``?``/``#``). Any other URL is first cleaned as a browser does
        (:func:`clean_url`): ``urljoin`` does that only when the URL's scheme is the base's, so an
        absolute URL with a leading space or a newline would come out differently on http and https
        pages. A URL empty after that, a fragment alone (``#``), one that resolves to the page itself
        (``?``, ``//``) or to no host (``//:0``, ``https://``: blank-image placeholders) gives no pair.
        """
        if as_written(url):
            return url
        url = clean_url(url)
        if not url or url[0] == "#" or url.startswith("data:"):
            return None
        if url.startswith(_HTTP):
            return url if _has_host(url) else None
        if self.base_url is None:
            return None
        if self._origin is None:
            self._prepare()
        m = _SCHEME.match(url)
        if m is not None and m.group(1).lower() not in ("http", "https"):
            return None  # javascript:, mailto:, ftp:, ... (urljoin returns them as they are)
        if self._origin and _PLAIN_URL.match(url) is not None:
            if url[0] == "/":
                if url[1:2] == "/":
                    if _host_start(url, 2) and url.isascii():
                        return f"{self._scheme}:{url}"  # protocol-relative
                elif "/." not in url:
                    return self._origin + url  # root-relative
            elif self._folder is not None:
                folder, rel = self._folder, url
                if rel.startswith("./"):
                    rel = rel[2:]
                elif rel.startswith("../"):
                    top = len(self._origin)
                    while rel.startswith("../"):  # one folder up per "../"; at the root, stay there
                        cut = folder.rfind("/", 0, len(folder) - 1)
                        folder, rel = folder[: cut + 1] if cut >= top else folder, rel[3:]
                if folder and rel and rel[0] not in "./?" and "/." not in rel and "//" not in rel:
                    return folder + rel  # relative to the base's folder
        out = _urljoin(self.base_url, url)
        if out is None or not out[:8].lower().startswith(("http://", "https://")) or out == self.base_url:
            return None
        return out if _has_host(out) else None


def as_written(url: str) -> bool:
    """An absolute http(s) URL a browser reads as it is written (nothing to strip, remove or turn round, a host
    right after ``//``): kept without ``urljoin``. The compiled parser's check is the same."""
    return (url.startswith(_HTTP) and url[-1] > " " and "\n" not in url and "\t" not in url and "\r" not in url
            and "\\" not in url and _host_start(url, url.index("//") + 2))


def _host_start(url: str, i: int) -> bool:
    """A host starts at ``url[i]`` (a letter, a digit, ``[`` of an IPv6 literal) and no ``@`` (userinfo)
    may hide an empty one: the fast paths keep such a URL as it is; any other (``https://``, ``//:0``,
    ``//x@``) is checked in full."""
    return i < len(url) and (url[i].isalnum() or url[i] == "[") and "@" not in url


def _has_host(url: str) -> bool:
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:
        return False


def clean_url(url: str) -> str:
    """``url`` as a browser reads a ``src`` on an http(s) page: C0 controls and spaces stripped from both
    ends, tabs and newlines removed, ``\\`` before the query read as ``/`` (``images\\a.gif``,
    ``http:\\\\x.com\\a.gif``), and an ``HTTP://`` scheme lower-cased. ``urljoin`` lower-cases a scheme only
    when it is the page's, so ``HTTP://x/a.jpg`` gave another URL (another pair) on an https page."""
    url = url.strip(_C0_OR_SPACE)
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.translate(_TAB_NEWLINE)
    if "\\" in url:
        cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
        url = url[:cut].replace("\\", "/") + url[cut:]
    if url[:1] in "Hh" and not url.startswith(_HTTP) and url[:8].lower().startswith(_HTTP):
        colon = url.index(":")
        url = url[:colon].lower() + url[colon:]
    return url


_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")  # html's own pattern


def _attr_charref(m: re.Match[str]) -> str:
    ref = m.group(1)
    if ref[0] != "#" and ref not in html5:
        # A named reference without its ";" (``&copy=2`` in a query string): in an attribute value
        # HTML leaves it as written when "=" or an ASCII letter or digit follows the longest name.
        x = next((x for x in range(len(ref) - 1, 1, -1) if ref[:x] in html5), 0)
        if x == 0 or ref[x] == "=" or (ref[x].isascii() and ref[x].isalnum()):
            return m.group(0)
    return html.unescape(m.group(0))


def unescape_attr(value: str) -> str:
    """An HTML attribute value with its character references decoded, as a browser reads ``src``,
    ``alt`` and ``title``: CommonCrawl's WAT keeps attribute values as the HTML wrote them, so an
    image URL holds ``&amp;`` where the browser requests ``&``, and alt texts hold ``&quot;``.
    :func:`html.unescape` plus HTML's rule for attributes (``&copy=2`` stays)."""
    return _CHARREF.sub(_attr_charref, value) if "&" in value else value


def page_base(page: str, base: str | None) -> str:
    """The URL a page's relative links resolve against: ``urljoin(page, base)`` with a ``<base href>``,
    else the page. A base ``urljoin`` rejects (a malformed host) is ignored, as HTML ignores a base
    URL that fails to parse, rather than losing every relative image of the page."""
    if not base:
        return page
    joined = _urljoin(page, unescape_attr(base))
    return page if joined is None else joined


def _urljoin(base: str, url: str) -> str | None:
    """``urljoin``, or None where it raises (a malformed IPv6 host, say): a URL we cannot use."""
    try:
        return urljoin(base, url)
    except ValueError:
        return None


def resolve_url(url: str, base_url: str | None) -> str | None:
    """One-off form of :meth:`Resolver.resolve` (``base_url``: the page URL joined with its base)."""
    return Resolver(base_url).resolve(url)


def extract_pairs(payload: bytes | str, page_url: str | None = None,
                  opts: ParseOptions = DEFAULT_OPTIONS) -> RecordPairs:
    """Pairs of one WAT metadata payload (pure; the unit the parser and tests share).

    ``page_url`` is a fallback for payloads whose envelope lacks ``WARC-Target-URI`` (the outer
    WARC header holds the same URI). Raises :class:`BadRecord` for malformed JSON or a payload
    that is not shaped like a WAT envelope; a well-formed payload without images gives no pairs.
    """
    page, links, base = decode_payload(payload, page_url)
    urls: list[str] = []
    texts: list[str] = []
    sources: list[str] = []
    try:
        filtered = image_pairs(links, page, base, opts, urls, texts, sources) if links else 0
    except (AttributeError, TypeError) as exc:
        raise BadRecord(f"unexpected WAT JSON structure: {type(exc).__name__}: {str(exc)[:80]}") from None
    return RecordPairs(page, list(zip(urls, texts, sources, strict=True)), filtered)


def decode_payload(payload: bytes | str, page_url: str | None = None) -> tuple[str | None, list | None, str | None]:
    """(page URL, the HTML links of a ``response`` record or None, ``Head.Base`` or None).

    Raises :class:`BadRecord` for malformed JSON or a payload not shaped like a WAT envelope.
    """
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"malformed JSON payload: {str(exc)[:120]}") from None
    try:
        env = doc["Envelope"]
        head = env["WARC-Header-Metadata"]
        page = _as_str(head.get("WARC-Target-URI")) or page_url
        if _as_str(head.get("WARC-Type")) != "response":
            return page, None, None
        http = (env.get("Payload-Metadata") or {}).get("HTTP-Response-Metadata") or {}
        html = http.get("HTML-Metadata")
        if not html:
            return page, None, None
        links = html.get("Links")
        if not links:
            return page, None, None
        if type(links) is not list:
            raise TypeError(f"Links is a {type(links).__name__}, not a list")
        return page, links, _as_str((html.get("Head") or {}).get("Base"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadRecord(f"unexpected WAT JSON structure: {type(exc).__name__}: {str(exc)[:80]}") from None


def image_pairs(links: list, page: str | None, base: str | None, opts: ParseOptions,
                urls: list[str], texts: list[str], sources: list[str]) -> int:
    """Append the (image URL, text, text source) of every usable image link to the three lists
    (columnar, so the parser's batches need no per-pair tuples); return the texts filtered out.

    Raises AttributeError/TypeError on links that are not JSON objects (the caller's bad record).
    """
    filtered = 0
    lo, hi = opts.min_text_length, opts.max_text_length
    text_sources = opts.text_sources
    resolver: Resolver | None = None
    found: list[tuple[str, str]] = []
    for link in links:
        path = link.get("path")
        if path != IMG_PATH and (type(path) is not str or not path.startswith(IMG_PATH)):
            continue
        for src in text_sources:
            raw = link.get(src)
            if not raw:
                continue
            if type(raw) is not str:
                raw = _as_str(raw)
                if not raw:
                    continue
            if "&" in raw:
                raw = unescape_attr(raw)
            text = collapse_whitespace(raw)
            if not text:
                continue
            n = len(text)
            if n > hi or n < lo:
                filtered += 1
                continue
            found.append((text, src))
        if not found:
            continue
        url = link.get("url")
        if type(url) is not str:
            url = _as_str(url)
        if url and "&" in url:
            url = unescape_attr(url)
        if url:
            if as_written(url):
                image_url: str | None = url  # absolute: as written (Resolver.resolve's first case)
            else:
                if resolver is None:
                    resolver = Resolver(page_base(page, base) if page is not None else None)
                image_url = resolver.resolve(url)
            if image_url is not None:
                for text, src in found:
                    urls.append(image_url)
                    texts.append(text)
                    sources.append(src)
        found.clear()
    return filtered


def _sample(payload: bytes) -> str:
    return payload[: _SAMPLE_CHARS * 2].decode("utf-8", "replace")[:_SAMPLE_CHARS]


def _looks_like_json_object(payload: bytes) -> bool:
    """Cheap shape check for payloads that are not decoded: ``{ ... }`` (whitespace allowed)."""
    body = payload.strip()
    return body[:1] == b"{" and body[-1:] == b"}"


class _Next(Enum):
    """What the native loop's next step does first: read natively from ``pos``, read more bytes (the
    member at ``pos`` goes on past the buffer), or hand the member at ``pos`` to Python (a read error
    there is reported at that offset)."""

    NATIVE = 0
    FILL = 1
    PYTHON = 2


class _Tap:
    """Wraps the input stream for fastwarc: counts compressed bytes, gives fastwarc the ``tell``
    it needs (HTTP and S3 streams lack one), and keeps the bytes from the current record's start
    on, so the end of the file can be checked and, after damage, reading can resume from that
    record without seeking the stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.pos = 0  # bytes read so far
        self._chunks: list[bytes] = []
        self._chunks_start = 0  # file offset of self._chunks[0]
        self.read_error: Exception | None = None
        self._replay = b""  # bytes read before a rewind, served again first
        self._pending: Exception | None = None  # a read error before a rewind, raised again first

    def rewind(self) -> None:
        """Start over from offset 0: what was read is served again, then the stream (the native
        path looked at the file's start and leaves it to fastwarc)."""
        self._replay = b"".join(self._chunks)
        self._chunks, self._chunks_start, self.pos = [], 0, 0
        if self.read_error is not None:
            self._pending, self.read_error = self.read_error, None

    def read(self, size: int = -1) -> bytes:
        if self._replay:
            data = self._replay if size is None or size < 0 else self._replay[:size]
            self._replay = self._replay[len(data):]
            self._chunks.append(data)
            self.pos += len(data)
            return data
        try:
            if self._pending is not None:
                exc, self._pending = self._pending, None
                raise exc
            data = self._stream.read(size)
        except Exception as exc:  # noqa: BLE001 - remembered, so the file's error says "read error"
            self.read_error = exc
            raise
        if data:
            self._chunks.append(data)
            self.pos += len(data)
        return data or b""

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:  # the caller owns the stream
        pass

    def keep_from(self, offset: int) -> None:
        """Drop buffered chunks that end before ``offset`` (the start of the newest record)."""
        chunks = self._chunks
        drop = 0
        start = self._chunks_start
        while drop < len(chunks) - 1 and start + len(chunks[drop]) <= offset:
            start += len(chunks[drop])
            drop += 1
        if drop:
            del chunks[:drop]
            self._chunks_start = start

    def tail(self, offset: int) -> bytes:
        """Buffered bytes from ``offset`` (>= the last ``keep_from``) to what has been read."""
        data = b"".join(self._chunks)
        return data[max(0, offset - self._chunks_start):]

    def at_eof(self) -> bool:
        """True when the underlying stream has nothing more (reads on after fastwarc stopped)."""
        extra = self.read(1 << 16)
        return not extra


# -- the resync path: reading on after damage to the container ---------------------------------------
_GZ_HEAD = b"\x1f\x8b\x08"  # gzip magic + deflate: where a gzip member can start
_WARC_START = b"WARC/1."
_EMBEDDED = b"\r\n\r\nWARC/1."  # a record start inside a block: its Content-Length swallowed the next record
_PAD = b"\x00\r\n \t"  # tolerated after the last record (padding), nowhere else
NO_RECORD_PADDING = "no WARC record: the file holds only padding (NUL bytes or whitespace)"
_CHUNK = 1 << 20
_PIECE = 1 << 16  # compressed bytes fed to zlib at a time (its unused_data is a copy of the rest)
_MAX_HEADER = 1 << 16  # a WARC header longer than this is not one
_MAX_MEMBER = 1 << 28  # inflated bytes of one gzip member before it is given up on
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"WARC/1\.\d\Z")
_ANY_VERSION = re.compile(rb"WARC/\d+\.\d+\Z")
WHOLE_FILE_GZIP = ("whole-file gzip (one deflate stream for all records): reading cannot resume inside a "
                   "deflate stream, so the rest of the file is lost")


class _Source:
    """The file from an offset on, for the resync path: the tap's buffered bytes, then more reads
    (so unseekable streams work too); bytes behind the reading position are dropped."""

    def __init__(self, tap: _Tap, offset: int) -> None:
        self.tap = tap
        self.base = offset
        self.buf = tap.tail(offset)
        self.done = False

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    def fill(self) -> bool:
        """Read one more chunk; False at the end of the stream (a read error raises)."""
        if self.done:
            return False
        data = self.tap.read(_CHUNK)
        self.tap.keep_from(self.tap.pos)  # the tap need not keep more than its last chunk now
        if not data:
            self.done = True
            return False
        self.buf += data
        return True

    def drop(self, offset: int) -> None:
        """Bytes before ``offset`` are not needed again (forgotten once they exceed a chunk)."""
        if offset - self.base > _CHUNK:
            cut = min(offset, self.end) - self.base
            self.buf = self.buf[cut:]
            self.base += cut

    def get(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer only at the end of the file)."""
        while self.end < offset + n and self.fill():
            pass
        i = offset - self.base
        assert i >= 0, "bytes already dropped"
        return self.buf[i:i + n]

    def view(self, offset: int, n: int) -> memoryview:
        """Like ``get``, without copying."""
        while self.end < offset + n and self.fill():
            pass
        i = offset - self.base
        return memoryview(self.buf)[i:i + n]

    def find(self, needle: bytes, offset: int) -> int:
        """The next offset of ``needle`` at or after ``offset`` (reading on, and dropping what is
        behind), or -1."""
        while True:
            i = self.buf.find(needle, max(0, offset - self.base))
            if i >= 0:
                return self.base + i
            offset = max(offset, self.end - len(needle) + 1)
            self.drop(offset)
            if not self.fill():
                return -1

    def at_end(self, offset: int) -> bool:
        while offset >= self.end:
            if not self.fill():
                return True
        return False

    def eof(self) -> int:
        """The file's length (reads it to the end, dropping what it reads)."""
        while self.fill():
            self.drop(self.end)
        return self.end

    def pad_end(self, offset: int) -> int:
        """The first offset at or after ``offset`` that is not padding (NUL or whitespace), or EOF."""
        while True:
            piece = self.get(offset, _PIECE)
            rest = piece.lstrip(_PAD)
            if rest:
                return offset + len(piece) - len(rest)
            if len(piece) < _PIECE:
                return offset + len(piece)
            offset += len(piece)
            self.drop(offset)


def _header_at(buf: bytes, i: int, lenient: bool = False) -> tuple[int, dict[bytes, bytes]] | str:
    """Parse the WARC header at ``buf[i:]``: (offset of its block, fields with lowercased names),
    or why it is not one. Strict (version line, ``Name: value`` lines, a numeric Content-Length,
    a WARC-Type), since it also decides where reading resumes. ``lenient`` (a header at a known
    record start: the start of a gzip member) reads what fastwarc reads there: any ``WARC/n.n``
    version, and a line that is not ``Name: value`` skipped."""
    if not buf.startswith(_WARC_START if not lenient else b"WARC/", i):
        return "not a WARC/1.x record start"
    end = buf.find(b"\r\n\r\n", i, i + _MAX_HEADER)
    if end < 0:
        return "WARC header without the blank line that ends it"
    lines = buf[i:end].split(b"\r\n")
    if b"\n" in lines[0]:
        return "WARC header lines end in LF, not CRLF"
    if not (_ANY_VERSION if lenient else _VERSION).match(lines[0]):
        return "bad WARC version line"
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation line
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.match(name):
            if lenient:
                continue
            return f"bad WARC header line {line[:60]!r}"
        fields[name.lower()] = value.strip()
    if not fields.get(b"content-length", b"").isdigit():
        return "no valid Content-Length"
    if b"warc-type" not in fields:
        return "no WARC-Type"
    return end + 4, fields


def _inflate(src: _Source, pos: int) -> tuple[bytes, int, str | None]:
    """Inflate the gzip member at ``pos``: (its bytes, the offset just past it, None), or
    (what inflated before the damage, -1, why) when it is corrupt or does not end."""
    d = zlib.decompressobj(wbits=31)
    outs: list[bytes] = []
    size = 0
    i = pos
    try:
        while True:
            piece = src.view(i, _PIECE)
            if not piece:
                return b"", -1, "truncated gzip member"
            out = d.decompress(piece)
            outs.append(out)
            size += len(out)
            if d.eof:
                return b"".join(outs), i + len(piece) - len(d.unused_data), None
            if size > _MAX_MEMBER:
                return b"", -1, f"gzip member inflates to over {_MAX_MEMBER >> 20} MB"
            i += len(piece)
    except zlib.error as exc:
        return b"".join(outs), -1, f"corrupt gzip data ({exc})"


def _next_member(src: _Source, offset: int) -> int:
    """Offset of the next gzip member at or after ``offset`` that inflates to a WARC record start
    (so a chance ``1f 8b 08`` inside deflate data is not taken for one), or -1."""
    while True:
        i = src.find(_GZ_HEAD, offset)
        if i < 0:
            return -1
        try:
            if zlib.decompressobj(wbits=31).decompress(src.get(i, 4096), len(_WARC_START)) == _WARC_START:
                return i
        except zlib.error:
            pass
        offset = i + 1


def _next_record(src: _Source, offset: int) -> int:
    """Offset of the next ``WARC/1.`` at or after ``offset`` that starts a parseable header, or -1."""
    while True:
        i = src.find(_WARC_START, offset)
        if i < 0:
            return -1
        if not isinstance(_header_at(src.get(i, _MAX_HEADER), 0), str):
            return i
        offset = i + 1


def _sniff_gzip(head: bytes) -> bool:
    """Whether a file that gave no record is gzip per record: it starts with a gzip header, or
    its first gzip member that inflates to a WARC record comes before its first plain record."""
    if head[:2] == _GZIP_MAGIC:
        return True
    record = head.find(_WARC_START)
    while record >= 0 and isinstance(_header_at(head, record), str):
        record = head.find(_WARC_START, record + 1)
    member = head.find(_GZ_HEAD)
    while member >= 0 and (record < 0 or member < record):
        try:
            if zlib.decompressobj(wbits=31).decompress(head[member:member + 4096], 7) == _WARC_START:
                return True
        except zlib.error:
            pass
        member = head.find(_GZ_HEAD, member + 1)
    return False


# -- the compiled hot path (kgcurate_native, native/), optional --------------------------------------
_NATIVE: Any = None  # the module once imported, False when it cannot be
_NATIVE_HEAD = 8 << 20  # compressed bytes read to find the first member whole before giving up on it


def native_module() -> Any:
    """``kgcurate_native`` (the compiled gzip-member path), or None: not built/installed, or
    ``KGCURATE_NATIVE=0`` in the environment (read on every parse, so a test or job can switch)."""
    global _NATIVE
    if os.environ.get("KGCURATE_NATIVE", "").strip() == "0":
        return None
    if _NATIVE is None:
        try:
            import kgcurate_native
        except ImportError as exc:
            log.debug("kgcurate_native not importable (%s): the pure-Python WAT parser is used", exc)
            _NATIVE = False
        else:
            _NATIVE = kgcurate_native
    return _NATIVE or None


class _Joiner:
    """The native path's callback for the URL joins it does not do itself: ``Resolver.resolve`` of
    ``url`` on the page (``urljoin(page, base)`` when the page has a ``<base href>``), exactly as
    ``image_pairs`` does it; one Resolver per page."""

    __slots__ = ("_key", "_resolver")

    def __init__(self) -> None:
        self._key: tuple[str, str | None] | None = None
        self._resolver = Resolver(None)

    def __call__(self, page: str, base: str | None, url: str) -> str | None:
        if self._key != (page, base):
            self._key = (page, base)
            self._resolver = Resolver(page_base(page, base))
        return self._resolver.resolve(url)


class WatParser:
    """Streams one WAT file (gzip per record, or uncompressed) into columnar :class:`Batch` es.

    Undamaged files go through fastwarc (the fast path). After damage to the container (a corrupt,
    empty, junk or cut gzip member, bytes between members, a broken WARC header, a Content-Length
    that swallows the next record) the file is read on by :meth:`_resync` from the last record
    that was whole: each skipped span becomes one bad record, and ``stats.status`` says
    ``partial``.
    """

    def __init__(self, opts: ParseOptions = DEFAULT_OPTIONS, batch_size: int = 65536) -> None:
        self.opts = opts
        self.batch_size = batch_size
        self.stats = FileStats()

    def parse(self, stream: BinaryIO) -> Iterator[Batch]:
        """Yield batches of pairs (and bad records) from ``stream``; ``self.stats`` fills as it goes."""
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        self.stats = stats = FileStats()
        opts = self.opts
        decode_all = opts.decode_all
        tap = _Tap(stream)
        batch = Batch()
        native = native_module() if not decode_all else None
        if native is not None:
            started = self._native_start(native, tap, batch)
            if started is not None:
                batch = yield from self._native_loop(native, *started, tap, batch)
                stats.bytes = tap.pos
                stats.rows_out += len(batch.image_url)
                if batch.image_url or batch.bad:
                    yield batch
                return
            tap.rewind()  # not a file of gzip members the native path starts on: fastwarc, as before
        image_url, text, text_source, pages, page_rows, bad = (
            batch.image_url, batch.text, batch.text_source, batch.pages, batch.page_rows, batch.bad)
        metadata_type, unknown_type, no_type = WarcRecordType.metadata, WarcRecordType.unknown, WarcRecordType.no_type
        last_pos, last_len = -1, 0
        gz = whole = False  # whole: gzip, but not a member per record, so no resync is possible
        seen = 0
        full = False  # the batch is full; it goes once the next record shows the last one was whole
        mark = (0, 0, 0, 0)  # (records, pairs, bad, filtered) before the last record, to undo it
        resync = False
        fatal: tuple[int, str, str] | None = None
        try:
            it = ArchiveIterator(tap, parse_http=False)
            for record in it:
                pos = record.stream_pos
                if full:
                    # fastwarc reached this record, so the last one's gzip member ended with a good CRC
                    stats.rows_out += len(image_url)
                    stats.bytes = tap.pos
                    yield batch
                    batch = Batch()
                    image_url, text, text_source, pages, page_rows, bad = (
                        batch.image_url, batch.text, batch.text_source, batch.pages, batch.page_rows, batch.bad)
                    full = False
                if seen < 2:
                    if seen:  # a member per record puts the second record at a gzip header
                        whole = gz and tap.tail(pos)[:3] != _GZ_HEAD
                    else:
                        gz = tap.tail(0)[:2] == _GZIP_MAGIC
                    seen += 1
                tap.keep_from(pos)
                last_pos, last_len = pos, record.content_length
                mark = (stats.records, len(image_url), len(bad), stats.filtered)
                payload = record.reader.read()
                if not last_len and record.headers.get("Content-Length") is None and record.record_type != unknown_type:
                    # fastwarc hands out a header without Content-Length (inflated garbage, say) as an
                    # empty record: framed again to report it, or the end of a whole-file gzip
                    if whole:
                        stats.records += 1  # a record, the bad one (``fatal`` adds it to bad_records)
                        fatal = (pos, f"invalid WARC record: no Content-Length; {WHOLE_FILE_GZIP}",
                                 _sample(str(record.headers).encode("utf-8", "replace")))
                    else:
                        resync = True
                    break
                if len(payload) < last_len:
                    if whole:
                        fatal = (pos, f"truncated gzip member; {WHOLE_FILE_GZIP}", _sample(payload))
                    else:
                        resync = True
                    break
                stats.records += 1
                if record.record_type != metadata_type:
                    if _EMBEDDED in payload and not whole:
                        resync = True
                        break
                    if record.record_type != unknown_type and record.record_type != no_type:
                        continue
                    wtype = record.headers.get("WARC-Type")  # a case-insensitive lookup
                    if wtype is None or not _HEADER_NAME.match(wtype.encode("utf-8", "replace")):
                        # fastwarc read a header it could not split into fields (LF line ends), or one
                        # without WARC-Type: framed again to report it, not skipped as another type
                        if not whole:
                            resync = True
                            break
                        stats.bad_records += 1
                        bad.append((pos, "invalid WARC record: unreadable WARC header",
                                    _sample(str(wtype).encode("utf-8", "replace"))))
                        continue
                    if wtype.lower() != "metadata":
                        continue
                    # a metadata record fastwarc did not type (`warc-type:` or `METADATA` spelt otherwise):
                    # read as one, as the member path and the compiled parser read it
                if _IMG_MARK not in payload and not decode_all:
                    # A WAT JSON payload has no raw CR; memchr for one is cheaper than the full search.
                    if b"\r" in payload and _EMBEDDED in payload and not whole:
                        resync = True  # its Content-Length swallowed the next record
                        break
                    if not _looks_like_json_object(payload):
                        stats.bad_records += 1
                        bad.append((pos, "malformed JSON payload: not a JSON object", _sample(payload)))
                    continue
                n0 = len(image_url)
                try:
                    page, links, base = decode_payload(payload, record.headers.get("WARC-Target-URI"))
                    if links:
                        stats.filtered += image_pairs(links, page, base, opts, image_url, text, text_source)
                        if len(image_url) > n0:
                            pages.append(page)
                            page_rows.append(len(image_url) - n0)
                except (AttributeError, TypeError) as exc:
                    del image_url[n0:], text[n0:], text_source[n0:]  # the record's partial pairs
                    stats.bad_records += 1
                    bad.append((pos, f"unexpected WAT JSON structure: {type(exc).__name__}: {str(exc)[:80]}",
                                _sample(payload)))
                    continue
                except BadRecord as exc:
                    if _EMBEDDED in payload and not whole:
                        resync = True
                        break
                    stats.bad_records += 1
                    bad.append((pos, exc.reason, _sample(payload)))
                    continue
                except Exception as exc:  # noqa: BLE001 - a record we did not foresee must not stop the file
                    del image_url[n0:], text[n0:], text_source[n0:]
                    stats.bad_records += 1
                    bad.append((pos, f"unexpected error: {type(exc).__name__}: {str(exc)[:120]}", _sample(payload)))
                    continue
                if len(image_url) >= self.batch_size:
                    full = True
        except BaseException as exc:  # noqa: BLE001 - fastwarc raises OSError, or a PanicException (BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            if tap.read_error is None and not whole:
                resync = True
            else:
                fatal = self._fatal(exc, tap, last_pos, last_len, gz, whole)
        if not resync and fatal is None:
            end = self._check_end(tap, last_pos, last_len, gz, whole)
            if end == "resync":
                resync = True
            else:
                fatal = end
        if resync:
            # Undo the last record (it is read again, or found damaged) and read on from its start.
            records, n_pairs, n_bad, filtered = mark
            stats.records, stats.filtered = records, filtered
            stats.bad_records -= len(bad) - n_bad
            del bad[n_bad:]
            if len(image_url) > n_pairs:
                del image_url[n_pairs:], text[n_pairs:], text_source[n_pairs:]
                pages.pop()
                page_rows.pop()
            src = _Source(tap, max(last_pos, 0))
            if seen == 0:  # no record yet: the file's start may be damaged, gzip magic and all
                gz = _sniff_gzip(src.get(0, _CHUNK))
            batch = yield from self._resync(src, gz, batch)
        elif fatal is not None:
            offset, reason, sample = fatal
            if offset != last_pos:
                # The bad part is not a record already counted above (a truncated last record,
                # or a last member without its gzip footer, was counted when it was read).
                stats.records += 1
            elif bad and bad[-1][0] == offset:
                # That record was already rejected (its cut payload is not JSON): the file-level
                # reason replaces the record-level one, so it stays one bad record.
                bad.pop()
                stats.bad_records -= 1
            stats.bad_records += 1
            stats.error = f"{reason} at offset {offset}"
            stats.fatal = True
            bad.append((offset, reason, sample))
        stats.bytes = tap.pos
        stats.rows_out += len(batch.image_url)
        if batch.image_url or batch.bad:
            yield batch

    def _native_start(self, native: Any, tap: _Tap, batch: Batch) -> tuple[Any, int] | None:
        """Read the file's start and let the native path take its first gzip member: (the native
        parser, the offset after that member), its pairs in ``batch``; or None (nothing counted)
        when the file does not start with a whole member holding one WARC record the native path
        reads (plain or whole-file gzip WARC, damage, a record for Python), for the caller to
        rewind the tap and read the file as before."""
        opts = self.opts
        try:
            head = tap.read(_CHUNK)
            if head[:3] != _GZ_HEAD:
                return None
            parser = native.Parser(opts.min_text_length, opts.max_text_length, tuple(opts.text_sources), _Joiner(),
                                   unescape_attr)
            while True:
                pos, status, records, filtered = parser.members(
                    head, 0, self.batch_size, batch.image_url, batch.text, batch.text_source, batch.pages,
                    batch.page_rows, first_only=True)
                if status != native.MORE or len(head) >= _NATIVE_HEAD:
                    break
                more = tap.read(_CHUNK)
                if not more:
                    break
                head += more
        except Exception:  # noqa: BLE001 - a read error: the fastwarc path meets it again and reports it
            return None
        if status != native.DONE or pos == 0:
            return None
        self.stats.records += records
        self.stats.filtered += filtered
        return parser, pos

    def _native_loop(self, native: Any, parser: Any, pos: int, tap: _Tap,
                     batch: Batch) -> Generator[Batch, None, Batch]:
        """The rest of a gzip-member-per-record file from ``pos``: the native path reads whole members
        from the buffered bytes; a member it leaves (damage, a bad record, anything it is not sure
        to read as Python does) is read by :meth:`_member`, as :meth:`_resync` reads every member,
        and the native path goes on after it. Same batches, pairs, bad records and stats as the
        pure-Python parser (tests check); returns the batch being filled."""
        src = _Source(tap, 0)
        more, done = native.MORE, native.DONE
        then = _Next.NATIVE

        def step(pos: int, batch: Batch) -> int:
            nonlocal then
            if then is _Next.PYTHON:
                then = _Next.NATIVE
                return self._member(src, pos, batch)
            if then is _Next.FILL:
                then = _Next.NATIVE
                if not src.fill():
                    then = _Next.PYTHON  # the file ends inside that member
                    return pos
            if pos > src.base:  # keep only the unread bytes (at most part of a member): less to copy on fill
                src.buf = src.buf[pos - src.base:]
                src.base = pos
            i, status, records, filtered = parser.members(
                src.buf, pos - src.base, self.batch_size - len(batch.image_url), batch.image_url,
                batch.text, batch.text_source, batch.pages, batch.page_rows)
            self.stats.records += records
            self.stats.filtered += filtered
            then = _Next.FILL if status == more else _Next.NATIVE if status == done else _Next.PYTHON
            return src.base + i

        return (yield from self._read_on(step, src, pos, batch))

    @staticmethod
    def _fatal(exc: BaseException, tap: _Tap, last_pos: int, last_len: int, gz: bool,
               whole: bool) -> tuple[int, str, str]:
        """(offset, reason, sample) of a problem reading cannot go on after: a read error, or
        damage inside a whole-file gzip stream."""
        if last_pos < 0:
            where = 0
        elif gz and not whole:
            where = _member_end(tap.tail(last_pos), last_pos)
        elif gz:
            where = last_pos  # not a byte offset: the stream's offsets are those of inflated data
        else:
            where = _plain_record_end(tap.tail(last_pos), last_pos, last_len)
        if tap.read_error is not None:
            reason = "read error"
        elif "zip" in str(exc).lower():
            reason = "corrupt gzip data"
        else:
            reason = "invalid WARC record"
        reason = f"{reason}: {type(exc).__name__}: {str(exc)[:150]}"
        if whole and tap.read_error is None:
            reason += f"; {WHOLE_FILE_GZIP}"
        return where, reason, _sample(tap.tail(max(where, 0)))

    @staticmethod
    def _check_end(tap: _Tap, last_pos: int, last_len: int, gz: bool,
                   whole: bool) -> tuple[int, str, str] | str | None:
        """After fastwarc stopped cleanly: None if the file is whole to its end, "resync" if more
        must be read (fastwarc stops at an empty gzip member, and skips a final member cut short),
        else a fatal (offset, reason, sample)."""
        try:
            at_eof = tap.at_eof()
        except Exception as exc:  # noqa: BLE001 - parse never raises for bad input
            return tap.pos, f"read error: {type(exc).__name__}: {str(exc)[:150]}", ""
        if last_pos < 0:
            head = tap.tail(0)
            if not head:
                return 0, "empty file (0 bytes)", ""
            if not head.strip(_PAD):  # zeros of a preallocated, never-written download: not a whole file
                return 0, NO_RECORD_PADDING, ""
            return "resync"
        if whole:
            return None if at_eof else (tap.pos, f"unread data after the last record; {WHOLE_FILE_GZIP}", "")
        if not at_eof:
            return "resync"
        if gz:  # the last member must be whole, and only padding may follow it
            tail = tap.tail(last_pos)
            d = zlib.decompressobj(wbits=31)
            try:
                d.decompress(tail)
            except zlib.error:
                return "resync"
            if not d.eof or d.unused_data.strip(_PAD):
                return "resync"
        else:  # the last record must end the file (fastwarc takes a header cut short for a record)
            end = _plain_record_end(tap.tail(last_pos), last_pos, last_len)
            if end > tap.pos or tap.tail(end).strip(_PAD):
                return "resync"
        return None

    def _resync(self, src: _Source, gz: bool, batch: Batch) -> Generator[Batch, None, Batch]:
        """Read the file from ``src.base`` (the start of the last record that was whole) to its end
        without fastwarc: each gzip member (or plain record) is framed and checked here, and after
        damage reading resumes at the next member (record) start that inflates to (is) a parseable
        WARC header. Runs only after damage; returns the batch being filled."""
        def step(pos: int, batch: Batch) -> int:
            src.drop(pos)
            return self._member(src, pos, batch) if gz else self._plain(src, pos, batch)

        return (yield from self._read_on(step, src, src.base, batch))

    def _read_on(self, step: Callable[[int, Batch], int], src: _Source, pos: int,
                 batch: Batch) -> Generator[Batch, None, Batch]:
        """``pos = step(pos, batch)`` until the end of the file, a full batch yielded before each step;
        a read error (or a bug) ends the file as damage at the offset reached. Returns the batch being
        filled."""
        stats = self.stats
        tap = src.tap
        try:
            while not src.at_end(pos):
                if len(batch.image_url) >= self.batch_size:
                    stats.rows_out += len(batch.image_url)
                    stats.bytes = tap.pos
                    yield batch
                    batch = Batch()
                pos = step(pos, batch)
        except BaseException as exc:  # noqa: BLE001 - a read error (or a bug) must not raise out of parse
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            reason = "read error" if tap.read_error is not None else "unexpected error"
            self._damage(batch, pos, f"{reason}: {type(exc).__name__}: {str(exc)[:150]}", b"", -1, -1)
            stats.fatal = True
        if stats.records == 0 and not stats.fatal:  # zeros of a preallocated, never-written download
            eof = src.eof()
            self._damage(batch, 0, NO_RECORD_PADDING, b"", eof, eof)
        if stats.damaged and stats.records == stats.damaged:
            stats.fatal = True  # not one record in the file: it could not be read at all
        return batch

    def _damage(self, batch: Batch, pos: int, reason: str, sample: bytes, end: int, eof: int) -> None:
        """The span ``[pos, end)`` was skipped: one record and one bad record, the file's error
        names the first such span. ``end == eof``: it ran to the end of the file."""
        stats = self.stats
        skipped = ""
        if end >= 0:
            where = "to the end of the file" if end == eof else f"resumed at offset {end}"
            skipped = f" (skipped {end - pos} bytes, {where})"
        stats.records += 1
        stats.bad_records += 1
        stats.damaged += 1
        if stats.error is None:
            stats.error = f"{reason} at offset {pos}{skipped}"
        batch.bad.append((pos, reason + skipped, _sample(sample)))

    def _member(self, src: _Source, pos: int, batch: Batch) -> int:
        """Read the gzip member at ``pos`` (or skip damage there); return where reading goes on."""
        sample = src.get(pos, 400)  # before pad_end or a scan may drop those bytes
        if sample[:3] != _GZ_HEAD:
            nxt = src.pad_end(pos)
            if src.at_end(nxt):
                return nxt  # only padding up to the end of the file
            nxt = _next_member(src, pos + 1)
            eof = src.eof() if nxt < 0 else -1
            self._damage(batch, pos, "bytes that are not a gzip member", sample, nxt if nxt >= 0 else eof, eof)
            return nxt if nxt >= 0 else eof
        out, end, problem = _inflate(src, pos)
        if problem is not None:  # where the member ends is unknown: go on at the next one
            nxt = _next_member(src, pos + 1)
            eof = src.eof() if nxt < 0 else -1
            whole = _EMBEDDED in out and nxt < 0  # one deflate stream of many records, to the end
            self._damage(batch, pos, f"{problem}; {WHOLE_FILE_GZIP}" if whole else problem, sample,
                         nxt if nxt >= 0 else eof, eof)
            self.stats.fatal |= whole
            return nxt if nxt >= 0 else eof
        if not out:
            self._damage(batch, pos, "empty gzip member (no record in it)", b"", end, -1)
            return end
        i = 0
        while i < len(out):
            framed = _header_at(out, i, lenient=True)
            if isinstance(framed, str):
                reason = framed
                break
            start, fields = framed
            stop = start + int(fields[b"content-length"])
            # The record ends at its Content-Length. Its closing CRLF CRLF may be any run of CR and LF
            # bytes, or missing at the member's end: fastwarc reads such records, so they are read here.
            i = _after_newlines(out, stop)
            if stop > len(out) or (i == stop < len(out)):
                reason = (f"Content-Length {stop - start} runs past the end of its gzip member" if stop > len(out)
                          else "record does not end where its Content-Length says")
                break
            self._take(batch, pos, fields, out[start:stop])
        else:
            return end
        self._damage(batch, pos, f"invalid WARC record in a gzip member: {reason}", out[i:], end, -1)
        return end

    def _plain(self, src: _Source, pos: int, batch: Batch) -> int:
        """Read the uncompressed record at ``pos`` (or skip damage there); return where reading goes on."""
        head = src.get(pos, _MAX_HEADER)
        if not head.startswith(_WARC_START):
            nxt = src.pad_end(pos)
            if src.at_end(nxt):
                return nxt  # only padding up to the end of the file
        framed = _header_at(head, 0)
        if isinstance(framed, str):
            reason = f"invalid WARC record: {framed}"
        else:
            start, fields = framed
            cl = int(fields[b"content-length"])
            rec = src.get(pos, start + cl + 4) if cl <= _MAX_MEMBER else b""
            if cl > _MAX_MEMBER:
                reason = f"invalid WARC record: Content-Length {cl} over {_MAX_MEMBER >> 20} MB"
            elif len(rec) < start + cl + 4:
                reason = "truncated record"
            elif rec[start + cl:] != b"\r\n\r\n":
                reason = "invalid WARC record: it does not end where its Content-Length says"
            else:
                block = rec[start:start + cl]
                k = block.find(_EMBEDDED)
                while k >= 0:
                    if not isinstance(_header_at(block, k + 4), str):
                        nxt = pos + start + k + 4
                        self._damage(batch, pos, f"invalid WARC record: Content-Length {cl} runs into the "
                                     f"next record", rec[:start], nxt, -1)
                        return nxt
                    k = block.find(_EMBEDDED, k + 1)
                self._take(batch, pos, fields, block)
                return pos + start + cl + 4
        nxt = _next_record(src, pos + 1)
        eof = src.eof() if nxt < 0 else -1
        self._damage(batch, pos, reason, head[:400], nxt if nxt >= 0 else eof, eof)
        return nxt if nxt >= 0 else eof

    def _take(self, batch: Batch, pos: int, fields: dict[bytes, bytes], payload: bytes) -> None:
        """Count one framed record and take its pairs, or its bad record: the fast loop's record
        step in ``parse``, for the resync path (tests check both give the same on whole files)."""
        stats = self.stats
        stats.records += 1
        if fields[b"warc-type"].lower() != b"metadata":
            return
        if _IMG_MARK not in payload and not self.opts.decode_all:
            if not _looks_like_json_object(payload):
                stats.bad_records += 1
                batch.bad.append((pos, "malformed JSON payload: not a JSON object", _sample(payload)))
            return
        uri = fields.get(b"warc-target-uri")
        urls, texts, sources = batch.image_url, batch.text, batch.text_source
        n0 = len(urls)
        try:
            page, links, base = decode_payload(payload, uri.decode("utf-8", "replace") if uri is not None else None)
            if links:
                stats.filtered += image_pairs(links, page, base, self.opts, urls, texts, sources)
                if len(urls) > n0:
                    batch.pages.append(page)
                    batch.page_rows.append(len(urls) - n0)
            return
        except BadRecord as exc:
            reason = exc.reason
        except (AttributeError, TypeError) as exc:
            reason = f"unexpected WAT JSON structure: {type(exc).__name__}: {str(exc)[:80]}"
        except Exception as exc:  # noqa: BLE001 - a record we did not foresee must not stop the file
            reason = f"unexpected error: {type(exc).__name__}: {str(exc)[:120]}"
        del urls[n0:], texts[n0:], sources[n0:]
        stats.bad_records += 1
        batch.bad.append((pos, reason, _sample(payload)))


_NEWLINES = re.compile(rb"[\r\n]*")


def _after_newlines(buf: bytes, i: int) -> int:
    """The offset after the run of CR and LF bytes at ``buf[i]`` (no copy of the rest: a member may hold
    thousands of records); ``i`` itself past the end."""
    return _NEWLINES.match(buf, i).end() if i < len(buf) else i


def _member_end(tail: bytes, offset: int) -> int:
    """Offset just past the gzip member starting at ``offset`` (or ``offset`` if unknown)."""
    if tail[:2] != _GZIP_MAGIC:
        return offset
    d = zlib.decompressobj(wbits=31)
    try:
        d.decompress(tail)
    except zlib.error:
        return offset
    return offset + len(tail) - len(d.unused_data) if d.eof else offset


def _plain_record_end(tail: bytes, offset: int, content_length: int) -> int:
    """Offset just past the uncompressed record starting at ``offset``: headers, block, CRLF CRLF."""
    head_end = tail.find(b"\r\n\r\n")
    if head_end < 0:
        return offset
    return offset + head_end + 4 + content_length + 4
