"""Where WAT files come from: expand user inputs to a file list, and open one file for reading.

Expansion runs on the driver and touches only names (directory listings, glob matches, the
lines of a ``wat.paths.gz`` listing), never file contents. Opening runs on executors and
streams: local files, ``file:`` URIs, ``s3://``/``s3a://`` objects (boto3) and http(s) URLs.
"""

from __future__ import annotations

import glob
import gzip
import http.client
import io
import logging
import os
import posixpath
import re
from collections.abc import Iterable
from typing import Any, BinaryIO

from kgcurate.errors import UserError
from kgcurate.s3 import SCHEMES as S3_SCHEMES

log = logging.getLogger("kgcurate.inputs")

WAT_SUFFIXES = (".wat", ".wat.gz", ".warc.wat", ".warc.wat.gz")
LISTING_SUFFIXES = (".paths", ".paths.gz")




def is_remote(path: str) -> bool:
    return path.startswith((*S3_SCHEMES, "http://", "https://"))


def is_listing(path: str) -> bool:
    return path.endswith(LISTING_SUFFIXES)


def strip_file_uri(path: str) -> str:
    """A local path from a file: or file:// URI (other paths unchanged)."""
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.startswith("file:"):
        return path[len("file:"):]
    return path


def listing_base_for(listing: str) -> str:
    """Default base for a listing's relative paths: its own folder for a local listing, the
    bucket root for an S3 one (CommonCrawl's listings name keys from the bucket root)."""
    if listing.startswith(S3_SCHEMES):
        scheme, rest = listing.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}/"
    if listing.startswith(("http://", "https://")):
        scheme, rest = listing.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}/"
    return os.path.dirname(os.path.abspath(strip_file_uri(listing))) + "/"


# Hadoop's names for an S3 object's URL; a pattern Python's re and Java's regex (Spark) read alike.
S3_ALIAS_PATTERN = "^s3[an]://"
_S3_ALIAS = re.compile(S3_ALIAS_PATTERN)
# A local file as a URI (file:/x, file:///x) is its path; the same pattern for Python and Spark.
FILE_URI_PATTERN = "^file:(//)?(?=/)"
_FILE_URI = re.compile(FILE_URI_PATTERN)


def same_file_key(path: str) -> str:
    """The form two spellings of one input share: ``s3a://`` and ``s3n://`` (Hadoop's names) are the
    ``s3://`` object, and a ``file:`` URI is its path. Inputs are deduplicated and checked against
    ``ingest_log`` by it, while each keeps the spelling it was given (so existing logs keep their keys): a
    crawl ingested through ``s3a://commoncrawl/...`` is not read again by a refresh that names
    ``s3://commoncrawl/...``, nor one ingested through a ``file://`` mirror by a run naming its folder."""
    return _FILE_URI.sub("", _S3_ALIAS.sub("s3://", path, count=1), count=1)


def local_path(path: str) -> str:
    """A local input's one key: absolute and normalised, a ``file:`` URI as its path (``file:///x/a.wat.gz``,
    ``/x/./a.wat.gz`` and ``a.wat.gz`` run in ``/x`` are one file, read once and logged once)."""
    return os.path.normpath(os.path.abspath(strip_file_uri(path)))


def local_size(path: str) -> int | None:
    """A local file's size now (None: an object store's or web file, or missing). S3 objects appear whole
    once written; a local mirror's file can be read while it is still being copied, so its size tells a
    file that grew since it was read."""
    if "://" in path and not path.startswith("file:"):
        return None
    try:
        return os.stat(strip_file_uri(path)).st_size
    except OSError:
        return None


def resolve_listed(entry: str, base: str) -> str:
    entry = entry.strip()
    if entry.startswith("file:") or entry.startswith("/"):
        return local_path(entry)
    if "://" in entry:
        return entry
    if "://" in base:
        return base.rstrip("/") + "/" + entry.lstrip("/")
    return os.path.normpath(os.path.join(base, entry))


def read_listing_names(listing: str) -> list[str]:
    """The non-empty lines of a (gzipped) listing: paths only, as CommonCrawl publishes them."""
    try:
        with open_input(listing) as raw:
            data = raw.read()
    except FileNotFoundError as exc:
        raise UserError(f"listing not found: {listing} (check the path or the bucket)") from exc
    except OSError as exc:
        raise UserError(f"cannot read listing {listing}: {exc.strerror or exc} (check permissions)") from exc
    if listing.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UserError(f"listing {listing} is not valid gzip: {exc}; download it again") from exc
    lines = (line.strip() for line in data.decode("utf-8", "replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]  # a hand-made listing's comments


def _wat_files_under(folder: str, item: str) -> list[str]:
    """Every WAT file below ``folder``, keyed by its path as before; then those under symlinked subfolders
    whose real folder the plain walk did not reach (a link to a folder already walked, or a loop, adds
    nothing, and a file keeps the key it had before links were followed). A subfolder that cannot be
    listed (a mount root's lost+found) is named in a warning, not skipped in silence."""
    found: list[str] = []
    seen: set[str] = set()
    links: list[str] = []

    def refused(exc: OSError) -> None:
        log.warning("cannot list folder %s under input %s: %s; its files, if any, are not read", exc.filename,
                    item, exc.strerror or exc)

    def walk(top: str) -> None:
        for root, dirs, files in os.walk(top, onerror=refused):
            real = os.path.realpath(root)
            if real in seen:
                dirs[:] = []
                continue
            seen.add(real)
            dirs.sort()  # the same walk, so the same keys, whatever order the file system lists in
            links.extend(os.path.join(root, d) for d in dirs if os.path.islink(os.path.join(root, d)))
            found.extend(os.path.join(root, f) for f in files if f.endswith(WAT_SUFFIXES))

    walk(folder)
    while links:
        link = links.pop(0)
        if os.path.realpath(link) not in seen:
            walk(link)
    if not found:
        raise UserError(f"no WAT files (*.wat, *.wat.gz) under directory {item}")
    return sorted(local_path(p) for p in found)


# Names a glob's match is surely not a WAT file by: a listing (read as a listing only when the pattern asks
# for listings), CommonCrawl's WARC and WET files, checksums and notes a mirror keeps beside them.
NOT_WAT_SUFFIXES = (*LISTING_SUFFIXES, ".json", ".txt", ".md", ".csv", ".html", ".md5", ".sha1", ".sha256",
                    ".warc", ".warc.gz", ".wet", ".wet.gz")


def _maybe_wat(path: str) -> bool:
    return path.endswith(WAT_SUFFIXES) or not path.endswith(NOT_WAT_SUFFIXES)


def _local_glob(item: str) -> bool:
    """A pattern, unless a file or folder of that very name exists: `CC [copy].wat.gz` and `br[1]/` are paths
    (as a shell reads them), not character sets matching nothing."""
    path = strip_file_uri(item)
    return any(ch in path for ch in "*?[") and not os.path.exists(path)


def _expand_local(item: str, listing_base: str | None) -> list[str]:
    path = strip_file_uri(item)
    if _local_glob(item):
        found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise UserError(f"no file matches {item} (check the pattern)")
        if is_listing(path):  # the pattern asks for listings (crawls/*/wat.paths.gz): read what they list
            return [f for p in found if is_listing(p) for f in _expand_listing(p, listing_base)]
        # not a listing or manifest beside the WAT files: read as a WAT file it would fail on every run
        wat = [local_path(p) for p in found if _maybe_wat(p)]
        if not wat:
            raise UserError(f"no WAT file matches {item}, only listings, WARC/WET files or notes (check the "
                            "pattern)")
        return wat
    if os.path.isdir(path):
        return _wat_files_under(path, item)
    if not os.path.exists(path):
        raise UserError(f"input not found: {item} (pass WAT files, directories, globs or a wat.paths.gz listing)")
    return [local_path(path)]


def _expand_listing(listing: str, listing_base: str | None) -> list[str]:
    base = listing_base or listing_base_for(listing)
    if "://" not in base or base.startswith("file:"):  # a relative base would make keys that depend on the cwd
        base = local_path(base) + "/"
    names = read_listing_names(listing)
    if not names:
        raise UserError(f"listing {listing} names no file (an empty or cut download?): fetch it again")
    return [resolve_listed(name, base) for name in names]


def expand_inputs(inputs: Iterable[str], listing_base: str | None = None) -> list[str]:
    """Files, directories, globs, s3 prefixes/globs and ``*.paths(.gz)`` listings -> file list.

    Order is kept and duplicates are removed, so the same file named twice is read once.
    A listing's missing files are kept (they fail at read time and are logged as failed).
    """
    out: list[str] = []
    for item in inputs:
        if item.startswith(S3_SCHEMES):
            globbed = any(ch in item for ch in "*?[")
        else:
            globbed = not item.startswith(("http://", "https://")) and _local_glob(item)
        if is_listing(item) and not globbed:
            out.extend(_expand_listing(item, listing_base))
        elif item.startswith(S3_SCHEMES):
            from kgcurate import s3

            if item.endswith(WAT_SUFFIXES) and not globbed:
                out.append(item)  # one file: no LIST call (a missing one fails at read time, logged)
            else:  # a prefix, a glob, or a "folder" named without its trailing slash
                keys = s3.expand_s3(item)
                if not keys:
                    raise UserError(f"no object matches {item} (check the bucket and prefix)")
                if is_listing(item):  # the pattern asks for listings: read what they list
                    out.extend(f for k in keys if is_listing(k) for f in _expand_listing(k, listing_base))
                else:
                    out.extend(k for k in keys if k.endswith(WAT_SUFFIXES))
        elif item.startswith(("http://", "https://")):
            out.append(item)
        else:
            out.extend(_expand_local(item, listing_base))
    if not out:
        raise UserError("no input files given (pass WAT files, directories, globs or a wat.paths.gz listing)")
    unique: dict[str, str] = {}  # same_file_key -> the first spelling given
    for p in out:
        unique.setdefault(same_file_key(p), p)
    return list(unique.values())


def open_input(path: str) -> BinaryIO:
    """A binary stream for a local path, file: URI, s3(a/n):// object or http(s) URL."""
    if path.startswith(S3_SCHEMES):
        from kgcurate import s3

        return s3.open_s3(path)
    if path.startswith(("http://", "https://")):
        import urllib.request

        return WholeBody(urllib.request.urlopen(path, timeout=120))  # noqa: S310 - user-given URL
    return open(strip_file_uri(path), "rb", buffering=io.DEFAULT_BUFFER_SIZE * 16)


class WholeBody(io.RawIOBase):
    """An HTTP response held to its ``Content-Length``: ``http.client`` ends ``read(n)`` with ``b""`` and
    no error when the server closes early, which the parser would take for a file cut short (``partial``,
    counted as done, its rest never read). Here that is ``IncompleteRead``, a read error: the file is
    ``failed`` and read again by the next run. A body with a ``Content-Encoding`` has no byte count to
    check against and is passed through."""

    def __init__(self, response: Any) -> None:
        super().__init__()
        self._response = response
        length, encoded = response.headers.get("Content-Length"), response.headers.get("Content-Encoding")
        self._expected = int(length) if length and length.strip().isdigit() and not encoded else None
        self._got = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._response.read() if size is None or size < 0 else self._response.read(size)
        self._got += len(data)
        if not data and size != 0 and self._expected is not None and self._got < self._expected:
            raise http.client.IncompleteRead(b"", self._expected - self._got)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._response.close()
        super().close()


def display_name(path: str) -> str:
    """Short name for progress lines."""
    return posixpath.basename(path.rstrip("/")) or path
