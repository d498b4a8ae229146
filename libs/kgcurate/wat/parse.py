"""CommonCrawl WAT -> (image_url, text, text_source, page_url) pairs, in pure Python (no Spark).

A WAT file is a WARC file of ``metadata`` records whose JSON payload describes one record of
the original WARC. Only the payloads describing a ``response`` carry
``Envelope.Payload-Metadata.HTTP-Response-Metadata.HTML-Metadata.Links``; image links there have
``path == "IMG@/src"`` and, when the page had them, ``alt`` and ``title``.

Speed: per file the work is gzip inflation (fastwarc, native) plus, for records that can give a
pair at all, one ``orjson`` decode. Records whose payload does not contain ``IMG@/src`` cannot
give a pair, so they are not decoded (only a cheap shape check; ``ParseOptions.decode_all``
decodes them too). Absolute http(s) image URLs are kept as written; only relative and
protocol-relative ones go through ``urljoin``.

Robustness: ``WatParser.parse`` never raises for bad input. Every WARC record is accounted for:
``stats.records == good records + stats.bad_records``. A fatal problem (corrupt or truncated
gzip, invalid WARC framing, an empty file) stops the file, sets ``stats.error`` and is itself
counted as one record and one bad record, so the invariant holds for every file.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urljoin

import orjson

IMG_PATH = "IMG@/src"
_IMG_MARK = b"IMG@/src"
_SAMPLE_CHARS = 200
_CRAWL_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
_GZIP_MAGIC = b"\x1f\x8b"
_HTTP = ("http://", "https://")


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
    error: str | None = None  # fatal file-level problem after which parsing stopped


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


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (tab, CR, LF, spaces, and other Unicode spaces) -> one space, stripped."""
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
        dropping an empty trailing ``?``/``#``).
        """
        if url.startswith(_HTTP) and "\n" not in url and "\t" not in url and "\r" not in url:
            return url
        if self.base_url is None or url.startswith("data:"):
            return None
        if self._origin is None:
            self._prepare()
        m = _SCHEME.match(url)
        if m is not None and m.group(1).lower() not in ("http", "https"):
            return None  # javascript:, mailto:, ftp:, ... (urljoin returns them as they are)
        if self._origin and _PLAIN_URL.match(url) is not None:
            if url[0] == "/":
                if url[1:2] == "/":
                    if len(url) > 2 and url[2] not in "/?" and url.isascii():
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
        return out if out is not None and out[:8].lower().startswith(("http://", "https://")) else None


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
            text = " ".join(raw.split())
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
        if url:
            if url.startswith(_HTTP) and "\n" not in url and "\t" not in url and "\r" not in url:
                image_url: str | None = url  # absolute: as written (Resolver.resolve's first case)
            else:
                if resolver is None:
                    resolver = Resolver((_urljoin(page, base) if base else page) if page is not None else None)
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


class _Tap:
    """Wraps the input stream for fastwarc: counts compressed bytes, gives fastwarc the ``tell``
    it needs (HTTP and S3 streams lack one), and keeps the bytes from the current record's start
    on, so the end of the file can be checked for a truncated or trailing gzip member."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.pos = 0  # bytes read so far
        self._chunks: list[bytes] = []
        self._chunks_start = 0  # file offset of self._chunks[0]
        self.read_error: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        try:
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


def _check_gzip_tail(tail: bytes, offset: int) -> tuple[int, str] | None:
    """Inflate the members from the last record's start to the end of the file; return
    (offset, reason) of the first incomplete or corrupt member, None when all are whole."""
    while tail:
        d = zlib.decompressobj(wbits=31)
        try:
            d.decompress(tail)
        except zlib.error as exc:
            return offset, f"corrupt gzip data: {exc}"
        if not d.eof:
            return offset, "truncated gzip member"
        used = len(tail) - len(d.unused_data)
        offset += used
        tail = d.unused_data
        if tail[:2] != _GZIP_MAGIC and tail.strip(b"\x00\r\n \t"):
            return offset, "trailing bytes that are not a gzip member"
        if tail[:2] != _GZIP_MAGIC:
            return None
    return None


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


class WatParser:
    """Streams one WAT file (gzip per record, or uncompressed) into columnar :class:`Batch` es."""

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
        image_url, text, text_source, pages, page_rows, bad = (
            batch.image_url, batch.text, batch.text_source, batch.pages, batch.page_rows, batch.bad)
        metadata_type = WarcRecordType.metadata
        last_pos, last_len = -1, 0
        gz = False
        fatal: tuple[int, str, str] | None = None
        try:
            it = ArchiveIterator(tap, parse_http=False)
            for record in it:
                pos = record.stream_pos
                if last_pos < 0:
                    gz = tap.tail(0)[:2] == _GZIP_MAGIC
                tap.keep_from(pos)
                last_pos, last_len = pos, record.content_length
                stats.records += 1
                if record.record_type != metadata_type:
                    continue  # warcinfo etc.: fastwarc skips the unread content
                payload = record.reader.read()
                if len(payload) < record.content_length:
                    fatal = (pos, "truncated gzip member" if gz else "truncated record", _sample(payload))
                    break
                if _IMG_MARK not in payload and not decode_all:
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
                    stats.bad_records += 1
                    bad.append((pos, exc.reason, _sample(payload)))
                    continue
                except Exception as exc:  # noqa: BLE001 - a record we did not foresee must not stop the file
                    del image_url[n0:], text[n0:], text_source[n0:]
                    stats.bad_records += 1
                    bad.append((pos, f"unexpected error: {type(exc).__name__}: {str(exc)[:120]}", _sample(payload)))
                    continue
                if len(image_url) >= self.batch_size:
                    stats.rows_out += len(image_url)
                    stats.bytes = tap.pos
                    yield batch
                    batch = Batch()
                    image_url, text, text_source, pages, page_rows, bad = (
                        batch.image_url, batch.text, batch.text_source, batch.pages, batch.page_rows, batch.bad)
        except BaseException as exc:  # noqa: BLE001 - fastwarc raises OSError, or a PanicException (BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            if last_pos < 0:
                where = 0
            elif gz:
                where = _member_end(tap.tail(last_pos), last_pos)
            else:
                where = _plain_record_end(tap.tail(last_pos), last_pos, last_len)
            if tap.read_error is not None:
                reason = "read error"
            elif "zip" in str(exc).lower():
                reason = "corrupt gzip data"
            else:
                reason = "invalid WARC record"
            fatal = (where, f"{reason}: {type(exc).__name__}: {str(exc)[:150]}", _sample(tap.tail(max(where, 0))))
        if fatal is None:
            fatal = self._check_end(tap, last_pos, gz)
        if fatal is not None:
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
            bad.append((offset, reason, sample))
        stats.bytes = tap.pos
        stats.rows_out += len(image_url)
        if image_url or bad:
            yield batch

    @staticmethod
    def _check_end(tap: _Tap, last_pos: int, gz: bool) -> tuple[int, str, str] | None:
        """After fastwarc stopped cleanly: the file must be at its end, and (gzip) its last
        members whole; fastwarc silently skips a final member cut short."""
        try:
            at_eof = tap.at_eof()
        except Exception as exc:  # noqa: BLE001 - parse never raises for bad input
            return tap.pos, f"read error: {type(exc).__name__}: {str(exc)[:150]}", ""
        if not at_eof:
            return tap.pos, "unread data after the last record", ""
        if last_pos < 0:
            head = tap.tail(0)
            if not head:
                return 0, "empty file (0 bytes)", ""
            if head.strip(b"\x00\r\n \t"):
                return 0, "no WARC record found (not a WAT file, or corrupt from the start)", _sample(head)
            return None
        tail = tap.tail(last_pos) if gz else b""
        if tail[:2] == _GZIP_MAGIC:  # one member per record (a whole-file gzip has no member there)
            found = _check_gzip_tail(tail, last_pos)
            if found is not None:
                return found[0], found[1], _sample(tap.tail(found[0]))
        return None
