"""Download one shard: what one Spark task will call. Fetch every image URL of the shard with a bounded
thread pool (per-host cap), decode and resize the successes, write them as one webdataset tar, and return
one ``downloads`` row per URL.

Never raises for a bad URL or response: every distinct URL gets exactly one row, whatever happened to
it. The tar and the rows depend only on the input and what the servers answered, never on which thread
finished first.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa

from kgcurate.download import status as st
from kgcurate.download.fetch import FetchConfig, Fetcher, FetchResult, UrlFetcher
from kgcurate.download.hosts import HostLimiter
from kgcurate.download.images import ImageConfig, ImageError, ProcessedImage, process_image
from kgcurate.download.shards import TarSample, sample_keys, write_shard


@dataclass(frozen=True)
class Text:
    """One text a sample may be trained with (a ``pair_texts`` row): its own alt text or a KG name."""

    text: str
    text_source: str
    qid: str | None = None
    pair_id: int | None = None
    language: str | None = None


@dataclass(frozen=True)
class Sample:
    """One image URL of a shard and its texts; ``text`` is the primary text (``key.txt``), by default the
    first of ``texts``. Texts are written in the order given, so give them in a stable order."""

    image_url: str
    texts: tuple[Text, ...] = ()
    text: str | None = None

    @property
    def primary_text(self) -> str:
        if self.text is not None:
            return self.text
        return self.texts[0].text if self.texts else ""

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Sample:
        """From a dict (e.g. a Spark Row's ``asDict(recursive=True)``); texts may be dicts or :class:`Text`."""
        texts = tuple(t if isinstance(t, Text) else Text(**t) for t in row.get("texts") or ())
        return cls(str(row["image_url"]), texts, row.get("text"))


@dataclass(frozen=True)
class DownloadConfig:
    """Everything a shard download depends on besides its input."""

    fetch: FetchConfig = field(default_factory=FetchConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    threads: int = 16  # concurrent downloads per task
    max_per_host: int = 4  # concurrent requests to one host per task
    host_min_interval: float = 0.0  # seconds between request starts to one host per task


@dataclass(frozen=True)
class DownloadRow:
    """One row of the ``downloads`` table: what happened to one image URL."""

    image_url: str
    shard: int
    key: str | None  # the sample's key in the tar; None unless status is success
    status: str  # one of kgcurate.download.status.STATUSES
    http_status: int | None
    error: str | None  # one line
    bytes: int | None  # bytes downloaded (the body); None when no body was read
    width: int | None  # of the JPEG written (success only)
    height: int | None
    original_width: int | None  # of the downloaded image (success only)
    original_height: int | None
    sha256: str | None  # of the downloaded bytes, whenever a body was read
    opt_out_reason: str | None
    attempts: int
    final_url: str | None  # the last URL requested (differs from image_url after redirects)


DOWNLOAD_ROWS = pa.schema(
    [
        pa.field("image_url", pa.string(), False), pa.field("shard", pa.int32(), False),
        pa.field("key", pa.string()), pa.field("status", pa.string(), False), pa.field("http_status", pa.int32()),
        pa.field("error", pa.string()), pa.field("bytes", pa.int64()), pa.field("width", pa.int32()),
        pa.field("height", pa.int32()), pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()), pa.field("sha256", pa.string()),
        pa.field("opt_out_reason", pa.string()), pa.field("attempts", pa.int32(), False),
        pa.field("final_url", pa.string()),
    ]
)


@dataclass(frozen=True)
class ShardResult:
    shard: int
    tar_path: str  # always written, empty when nothing succeeded, so a rerun replaces an older tar
    rows: tuple[DownloadRow, ...]  # one per distinct image URL, sorted by image_url
    counts: Mapping[str, int]  # rows per status (statuses with no row left out)
    samples: int  # samples in the tar (== counts["success"])
    bytes: int  # bytes downloaded, all URLs together
    seconds: float

    def rows_table(self) -> pa.Table:
        """The rows as an Arrow table in the ``downloads`` schema (:data:`DOWNLOAD_ROWS`)."""
        return pa.Table.from_pylist([asdict(r) for r in self.rows], schema=DOWNLOAD_ROWS)


def download_shard(
    samples: Iterable[Sample | Mapping[str, Any]],
    shard_id: int,
    out_dir: str,
    config: DownloadConfig | None = None,
    fetcher: UrlFetcher | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ShardResult:
    """Download shard ``shard_id``'s samples and write ``out_dir/<shard>.tar``; see the module docstring.

    A URL listed more than once is one sample whose texts are the union of its listings and whose primary
    text is the smallest of theirs (input order is not stable in Spark, so no "first"). Without a
    ``fetcher`` one is built from ``config`` (with a :class:`HostLimiter`) and closed at the end.
    """
    config = config or DownloadConfig()
    started = clock()
    merged = _merge([s if isinstance(s, Sample) else Sample.from_mapping(s) for s in samples])
    keys = sample_keys(shard_id, merged)
    own: Fetcher | None = None
    if fetcher is None:
        limiter = HostLimiter(config.max_per_host, config.host_min_interval)
        fetcher = own = Fetcher(config.fetch, limiter=limiter, num_pools=max(16, 2 * config.threads))
    try:
        # Spread hosts over the pool instead of queueing one site's URLs behind its per-host cap.
        order = sorted(merged, key=lambda url: hashlib.blake2b(url.encode(), digest_size=8).digest())
        outcomes: dict[str, _Outcome] = {}
        if order:
            with ThreadPoolExecutor(max_workers=max(1, min(config.threads, len(order)))) as pool:
                work = pool.map(lambda u: _work(u, fetcher, config.image), order)
                outcomes = dict(zip(order, work, strict=True))
    finally:
        if own is not None:
            own.close()

    rows: list[DownloadRow] = []
    written: list[TarSample] = []
    for url in sorted(merged):
        outcome = outcomes[url]
        if outcome.image is None:
            rows.append(_row(shard_id, outcome))
            continue
        key = keys[url]
        rows.append(_row(shard_id, outcome, key))
        sample = merged[url]
        written.append(TarSample(key, outcome.image.jpeg, sample.primary_text, _meta(shard_id, key, sample, outcome)))
    tar_path = write_shard(out_dir, shard_id, written)
    return ShardResult(
        shard=shard_id,
        tar_path=tar_path,
        rows=tuple(rows),
        counts=dict(sorted(Counter(r.status for r in rows).items())),
        samples=len(written),
        bytes=sum(r.bytes or 0 for r in rows),
        seconds=clock() - started,
    )


def _merge(samples: list[Sample]) -> dict[str, Sample]:
    """One sample per URL: duplicates merged (in a canonical order, so input order does not matter)."""
    by_url: dict[str, list[Sample]] = {}
    for sample in samples:
        by_url.setdefault(sample.image_url, []).append(sample)
    merged: dict[str, Sample] = {}
    for url, group in by_url.items():
        if len(group) == 1:
            merged[url] = group[0]
            continue
        group.sort(key=lambda s: (s.primary_text, repr(s.texts)))
        texts = tuple(dict.fromkeys(t for s in group for t in s.texts))
        merged[url] = Sample(url, texts, group[0].primary_text)
    return merged


@dataclass(frozen=True)
class _Outcome:
    """What a worker found for one URL. The downloaded body is not kept (only its size and hash), so a
    shard holds its small output JPEGs in memory until the tar is written, never the raw downloads."""

    fetched: FetchResult  # with body=None
    size: int | None = None
    sha256: str | None = None
    image: ProcessedImage | None = None
    status: str | None = None  # overrides the fetch's status when processing failed
    error: str | None = None


def _work(url: str, fetcher: UrlFetcher, image_config: ImageConfig) -> _Outcome:
    """Fetch and process one URL in a worker thread; never raises."""
    try:
        fetched = fetcher.fetch(url)
    except Exception as e:  # a bug in our code must cost one row, not the shard
        return _Outcome(FetchResult(url, st.INTERNAL_ERROR, error=st.one_line(f"{type(e).__name__}: {e}")))
    body = fetched.body
    if body is None:
        return _Outcome(fetched)
    found = _Outcome(replace(fetched, body=None), len(body), hashlib.sha256(body).hexdigest())
    if not fetched.ok:
        return found
    try:
        return replace(found, image=process_image(body, image_config, found.sha256))
    except ImageError as e:
        return replace(found, status=e.status, error=st.one_line(e))
    except Exception as e:
        return replace(found, status=st.INTERNAL_ERROR, error=st.one_line(f"{type(e).__name__}: {e}"))


def _row(shard: int, outcome: _Outcome, key: str | None = None) -> DownloadRow:
    fetched, image = outcome.fetched, outcome.image
    return DownloadRow(
        image_url=fetched.url,
        shard=shard,
        key=key,
        status=outcome.status or fetched.status,
        http_status=fetched.http_status,
        error=outcome.error or fetched.error,
        bytes=outcome.size,
        width=image.width if image else None,
        height=image.height if image else None,
        original_width=image.original_width if image else None,
        original_height=image.original_height if image else None,
        sha256=outcome.sha256,
        opt_out_reason=fetched.opt_out_reason,
        attempts=fetched.attempts,
        final_url=fetched.final_url,
    )


def _meta(shard: int, key: str, sample: Sample, outcome: _Outcome) -> dict[str, Any]:
    """``key.json``: every text with its provenance, and where the image came from."""
    image = outcome.image
    assert image is not None
    return {
        "key": key,
        "shard": shard,
        "url": sample.image_url,
        "final_url": outcome.fetched.final_url,
        "text": sample.primary_text,
        "texts": [asdict(t) for t in sample.texts],
        "width": image.width,
        "height": image.height,
        "original_width": image.original_width,
        "original_height": image.original_height,
        "sha256": image.sha256,
    }
