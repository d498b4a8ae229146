"""S3 listing and streaming reads with boto3 (CommonCrawl layout, MinIO, moto).

Why not Hadoop's s3a here: WAT files are parsed by Python on executors, one whole object per
task, so a plain boto3 stream is the shortest path. The endpoint comes from
``KGCURATE_S3_ENDPOINT`` (or ``AWS_ENDPOINT_URL``), credentials from boto3's default chain only
(environment, profile, instance/pod role): nothing here ever takes, stores or logs a secret.

A CommonCrawl WAT object is ~357 MB; a connection reset half-way should not cost the whole
file, so :func:`open_s3` resumes a broken stream with a ``Range`` request pinned to the
object's ETag (an object replaced mid-read fails loudly instead of mixing two versions).
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

SCHEMES = ("s3://", "s3a://", "s3n://")
GLOB_CHARS = "*?["
COMMONCRAWL_BASE = "s3://commoncrawl/"
CRAWL_RE = re.compile(r"^CC-MAIN-\d{4}-\d{2}$")
READ_BUFFER = 8 * 1024 * 1024

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def is_s3(url: str) -> bool:
    return url.startswith(SCHEMES)


def split_url(url: str) -> tuple[str, str, str]:
    """``s3a://bucket/a/b`` -> ``("s3a", "bucket", "a/b")``."""
    if not is_s3(url):
        raise ValueError(f"not an s3 URL: {url!r} (expected s3://bucket/key or s3a://bucket/key)")
    scheme, rest = url.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URL without a bucket: {url!r}")
    return scheme, bucket, key


def endpoint(env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("KGCURATE_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None


def unreachable_endpoint(ep: str | None, timeout: float = 5.0) -> str | None:
    """Why the S3 endpoint ``ep`` takes no connection (a TCP connect, no credentials needed); None when it
    does or ``ep`` is None. s3a retries a refused connection for minutes with nothing on the console: a MinIO
    not started yet, or a mistyped port, looked like a hung job."""
    if not ep:
        return None
    parts = urlsplit(ep if "://" in ep else f"http://{ep}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname or "", port), timeout).close()
    except (OSError, ValueError) as exc:
        return f"{ep}: {getattr(exc, 'strerror', None) or exc}"
    return None


def client():
    """A boto3 S3 client for this process (thread-safe, cached per endpoint and region)."""
    import boto3
    from botocore.config import Config

    ep = endpoint()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    key = (os.getpid(), ep, region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            cfg = Config(
                retries={"max_attempts": 8, "mode": "adaptive"},
                connect_timeout=20,
                read_timeout=120,
                max_pool_connections=32,
                # An S3-compatible server on a host name or IP has no virtual-host buckets.
                s3={"addressing_style": "path"} if ep else {},
            )
            found = boto3.session.Session().client("s3", endpoint_url=ep, region_name=region, config=cfg)
            _clients[key] = found
        return found


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _translate(exc: Exception, url: str) -> Exception:
    """botocore errors -> the OSError subclasses callers already handle for local files."""
    code = _error_code(exc)
    if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
        return FileNotFoundError(2, f"no such S3 object ({code})", url)
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return PermissionError(13, f"access denied by S3 ({code}); check the credentials chain", url)
    return exc


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Key glob: ``*`` and ``?`` stay inside one path segment, ``**`` crosses segments."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = i + 1  # as fnmatch: a "]" first in the set ("[]x]", "[!]x]") is one of its characters
            j += j < len(pattern) and pattern[j] == "!"
            j += j < len(pattern) and pattern[j] == "]"
            end = pattern.find("]", j)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1:end]
                negate = body.startswith("!")
                body = body[negate:].replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
                if body.startswith("^"):
                    body = "\\" + body  # a literal ^, not a negation
                out.append("[" + "^" * negate + body + "]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def list_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (all pages), in S3's order (lexicographic)."""
    return list(list_sizes(bucket, prefix))


def list_sizes(bucket: str, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` with its size in bytes (all pages), in S3's order (lexicographic)."""
    paginator = client().get_paginator("list_objects_v2")
    sizes: dict[str, int] = {}
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            sizes.update((obj["Key"], int(obj.get("Size") or 0)) for obj in page.get("Contents", []) or [])
    except Exception as exc:  # noqa: BLE001 - translated into FileNotFoundError/PermissionError
        raise _translate(exc, f"s3://{bucket}/{prefix}") from exc
    return sizes


def list_folders(bucket: str, prefix: str) -> list[str]:
    """The "folder" names right under ``prefix`` (S3's common prefixes with ``/``), without listing the
    objects below them: ``crawl-data/`` of CommonCrawl's bucket holds millions of keys, and ~100 crawls."""
    paginator = client().get_paginator("list_objects_v2")
    names: list[str] = []
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names.extend(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []) or [])
    except Exception as exc:  # noqa: BLE001 - translated into FileNotFoundError/PermissionError
        raise _translate(exc, f"s3://{bucket}/{prefix}") from exc
    return names


def expand_s3(pattern: str) -> list[str]:
    """Object URLs for a prefix (ending in ``/``), a glob, or one key (sorted, same scheme).

    ``s3a://b/crawl-data/CC-MAIN-2024-51/segments/*/wat/*.wat.gz`` lists only below the literal
    part before the first glob character, so a narrow pattern costs few LIST calls. A plain key
    that names no object but is a "folder" expands to the objects under it.
    """
    scheme, bucket, key = split_url(pattern)
    cut = min((key.find(c) for c in GLOB_CHARS if c in key), default=-1)
    if cut >= 0:
        regex = _glob_regex(key)
        keys = [k for k in list_keys(bucket, key[:cut]) if regex.match(k)]
    elif key == "" or key.endswith("/"):
        keys = list_keys(bucket, key)
    else:
        keys = list_keys(bucket, key)
        keys = [key] if key in keys else [k for k in keys if k.startswith(key.rstrip("/") + "/")]
    return [f"{scheme}://{bucket}/{k}" for k in sorted(keys) if not k.endswith("/")]


def exists(url: str) -> bool:
    _, bucket, key = split_url(url)
    try:
        client().head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        if isinstance(_translate(exc, url), FileNotFoundError):
            return False
        raise _translate(exc, url) from exc
    return True


def _stream_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a broken download raises (network level, not 'object missing')."""
    from botocore import exceptions as bex

    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, bex.ConnectionError, bex.ReadTimeoutError,
                                         bex.IncompleteReadError]
    for name in ("ResponseStreamingError", "ConnectionClosedError"):
        if hasattr(bex, name):
            errors.append(getattr(bex, name))
    try:
        from urllib3.exceptions import ProtocolError, ReadTimeoutError

        errors += [ProtocolError, ReadTimeoutError]
    except ImportError:  # pragma: no cover - urllib3 ships with botocore
        pass
    return tuple(errors)


class ResumableObject(io.RawIOBase):
    """A raw, forward-only stream of one S3 object that reconnects where it broke off."""

    def __init__(self, s3, bucket: str, key: str, retries: int = 5, backoff: float = 0.5):
        super().__init__()
        self._s3, self.bucket, self.key = s3, bucket, key
        self.retries, self.backoff = retries, backoff
        self.url = f"s3://{bucket}/{key}"
        self.pos = 0
        self.resumes = 0
        self._errors = _stream_errors()
        response = self._get()
        self.size = int(response.get("ContentLength", 0))
        self.etag = response.get("ETag")
        self._body = response["Body"]

    def _get(self, start: int = 0) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if start:
            kwargs["Range"] = f"bytes={start}-"
            if getattr(self, "etag", None):
                kwargs["IfMatch"] = self.etag  # the same object, or a clear error
        try:
            return self._s3.get_object(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, self.url) from exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        attempt = 0
        while True:
            try:
                data = self._body.read(len(view))
                break
            except self._errors:
                if attempt >= self.retries or self.pos >= self.size:
                    raise
                time.sleep(self.backoff * (2 ** attempt))
                attempt += 1
                self.resumes += 1
                self._body.close()
                self._body = self._get(self.pos)["Body"]
        n = len(data)
        view[:n] = data
        self.pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            finally:
                super().close()


def open_s3(url: str, retries: int = 5, buffer_size: int = READ_BUFFER) -> BinaryIO:
    """A buffered, streaming, readable binary file for ``s3://``/``s3a://`` ``url``.

    Raises ``FileNotFoundError`` for a missing object or bucket and ``PermissionError`` when the
    credentials are refused, so callers treat S3 like local files. Use it as a context manager.
    """
    _, bucket, key = split_url(url)
    if not key:
        raise IsADirectoryError(21, "an S3 URL must name an object, not a bucket", url)
    raw = ResumableObject(client(), bucket, key, retries=retries)
    return io.BufferedReader(raw, buffer_size=buffer_size)  # type: ignore[return-value]


def read_bytes(url: str) -> bytes:
    with open_s3(url) as f:
        return f.read()


def output_folder(out: str, refusal: str) -> str:
    """Where a stage writes its files: ``s3://bucket/prefix`` for an S3 URL (``s3a://`` too), else a local
    absolute path (``file:`` URLs included); another URL scheme, which nothing here writes, is a
    ``UserError`` of ``refusal`` (the user's line: what, where, what to do)."""
    from kgcurate.errors import UserError
    from kgcurate.wat.inputs import strip_file_uri

    if is_s3(out):
        try:
            _, bucket, key = split_url(out)
        except ValueError:  # s3:// or s3:///prefix: no bucket to write into
            what, _, how = refusal.rpartition(": ")
            raise UserError(f"{what}: the S3 URL names no bucket: {how}") from None
        return f"s3://{bucket}/{key.strip('/')}".rstrip("/")
    if "://" in out and not out.startswith("file:"):
        raise UserError(refusal)
    path = Path(os.path.abspath(strip_file_uri(out)))
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{refusal.split(':', 1)[0]}: {existing} is a file, not a folder: pass a folder "
                        "(it is created when missing)")
    return str(path)


def require_credentials(url: str) -> None:
    """Fail before any work when boto3's default chain finds no credentials for writing ``url``:
    otherwise the first upload fails only after the work it was to store."""
    import boto3

    from kgcurate.errors import UserError

    if boto3.session.Session().get_credentials() is None:
        raise UserError(f"no AWS credentials to write {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or AWS_PROFILE, or run with an instance role) and re-run")


def put_files(paths: list[Path], folder: str) -> list[str]:
    """Upload local files into the S3 ``folder`` (``s3://bucket/prefix``), one object each, named as the
    file, in the order given (a caller puts last the file that names the others); returns their URLs.
    Each object's Content-Type follows its name, so a browser shows ``index.html`` and its PNGs served
    from the bucket instead of downloading them. A refused or missing bucket is the same ``OSError`` as
    for :func:`open_s3`."""
    _, bucket, prefix = split_url(folder)
    prefix = prefix.strip("/")
    urls = []
    for path in paths:
        key = f"{prefix}/{path.name}" if prefix else path.name
        url = f"s3://{bucket}/{key}"
        kind = mimetypes.guess_type(path.name)[0]
        try:
            client().upload_file(str(path), bucket, key, ExtraArgs={"ContentType": kind} if kind else None)
        except Exception as exc:  # noqa: BLE001 - translated when it is S3's answer, else re-raised
            raise _translate(exc, url) from exc
        urls.append(url)
    return urls


def listing_url(crawl: str, base: str = COMMONCRAWL_BASE, kind: str = "wat") -> str:
    """Where CommonCrawl publishes a crawl's listing: ``<base>crawl-data/<crawl>/wat.paths.gz``.

    ``base`` may be any bucket/prefix laid out like CommonCrawl's (a mirror, MinIO, moto) or a
    local folder; the listing's lines are keys relative to ``base``.
    """
    if not CRAWL_RE.match(crawl or ""):
        from kgcurate.errors import UserError

        raise UserError(f"bad crawl id {crawl!r}: expected CC-MAIN-YYYY-WW, e.g. CC-MAIN-2024-51")
    return f"{base.rstrip('/')}/crawl-data/{crawl}/{kind}.paths.gz"
