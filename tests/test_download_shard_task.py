"""download_shard (kgcurate.download.shard_task) with fake fetchers: output independent of thread completion
order and of input order, one row per URL whatever happens, no server needed."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
from PIL import Image

from kgcurate.download import DownloadConfig, Sample, Text, download_shard
from kgcurate.download import status as st
from kgcurate.download.fetch import FetchResult


def jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG")
    return buffer.getvalue()


BODIES = {
    f"https://img{i % 3}.example.org/{i:02d}.jpg": jpeg(200 + 40 * i, 150 + 10 * i, (20 * i, 100, 200 - 15 * i))
    for i in range(10)
}
BODIES["https://img0.example.org/broken.jpg"] = b"\x89PNG but not really"
MISSING = "https://img1.example.org/missing.jpg"


def answer(url: str) -> FetchResult:
    if url == MISSING:
        return FetchResult(url, st.HTTP_ERROR, 404, "HTTP 404 Not Found", final_url=url, attempts=1)
    return FetchResult(url, st.SUCCESS, 200, body=BODIES[url], final_url=url, attempts=1)


class InOrder:
    """Answers at once, in whatever order it is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def fetch(self, url: str) -> FetchResult:
        self.asked.append(url)
        return answer(url)


class ReverseOrder:
    """Finishes URLs in reverse sorted order: each waits for every later URL (needs a thread per URL)."""

    def __init__(self, urls: list[str]) -> None:
        self.done = {u: threading.Event() for u in urls}
        self.finished: list[str] = []
        self._lock = threading.Lock()

    def fetch(self, url: str) -> FetchResult:
        for later in (u for u in self.done if u > url):
            assert self.done[later].wait(5), f"{later} never finished"
        with self._lock:
            self.finished.append(url)
        self.done[url].set()
        return answer(url)


def samples() -> list[Sample]:
    out = [Sample(url, (Text(f"caption {url[-6:]}", "alt", pair_id=i),)) for i, url in enumerate(sorted(BODIES))]
    return [*out, Sample(MISSING, (Text("gone", "alt"),))]


def test_output_is_independent_of_thread_and_input_order(tmp_path):
    urls = sorted([*BODIES, MISSING])
    reverse = ReverseOrder(urls)
    first = download_shard(samples(), 3, str(tmp_path / "a"), DownloadConfig(threads=len(urls)), fetcher=reverse)
    assert reverse.finished == sorted(urls, reverse=True)  # the workers really did finish back to front
    forward = InOrder()
    second = download_shard(
        list(reversed(samples())), 3, str(tmp_path / "b"), DownloadConfig(threads=1), fetcher=forward
    )
    assert sorted(forward.asked) == urls and forward.asked != urls  # hosts spread, not URL order
    assert Path(first.tar_path).read_bytes() == Path(second.tar_path).read_bytes()
    assert first.rows == second.rows
    assert [r.image_url for r in first.rows] == urls
    assert first.counts == {st.DECODE_ERROR: 1, st.HTTP_ERROR: 1, st.SUCCESS: 10}
    failed = {"https://img0.example.org/broken.jpg", MISSING}
    # Key = rank among all the shard's URLs, so a failure never renumbers the others.
    assert [r.key for r in first.rows] == [None if u in failed else f"00003{i:04d}" for i, u in enumerate(urls)]
    with tarfile.open(first.tar_path) as tar:
        assert len(tar.getnames()) == 3 * 10


def test_never_raises_and_one_row_per_url(tmp_path):
    class Flaky(InOrder):
        def fetch(self, url: str) -> FetchResult:
            if url.endswith("03.jpg"):
                raise RuntimeError("bug in a fetcher")
            return super().fetch(url)

    rows = download_shard(
        [{"image_url": u, "texts": [{"text": "t", "text_source": "alt"}]} for u in [*BODIES, MISSING, ""]],
        0, str(tmp_path), DownloadConfig(threads=3), fetcher=Flaky(),
    ).rows
    assert len(rows) == len(BODIES) + 2
    by_url = {r.image_url: r for r in rows}
    crashed = by_url["https://img0.example.org/03.jpg"]
    assert (crashed.status, crashed.key) == (st.INTERNAL_ERROR, None)
    assert crashed.error == "RuntimeError: bug in a fetcher"
    assert by_url["https://img0.example.org/broken.jpg"].status == st.DECODE_ERROR
    assert by_url[MISSING].status == st.HTTP_ERROR


def test_texts_primary_and_timing(tmp_path):
    ticks = iter([100.0, 102.5])
    url = sorted(BODIES)[0]
    result = download_shard(
        [
            {"image_url": url, "texts": [{"text": "zebra", "text_source": "alt", "qid": None, "pair_id": 1}]},
            {"image_url": url, "texts": [{"text": "Equus quagga", "text_source": "kg_label", "qid": "Q32789"}]},
            Sample(sorted(BODIES)[1]),  # no texts at all: an empty key.txt
        ],
        5, str(tmp_path), fetcher=InOrder(), clock=lambda: next(ticks),
    )
    assert result.seconds == 2.5
    with tarfile.open(result.tar_path) as tar:
        # Listed twice: one sample, both texts; the primary is the smaller listing's (input order is not stable).
        assert tar.extractfile("000050000.txt").read() == b"Equus quagga"
        meta = json.loads(tar.extractfile("000050000.json").read())
        assert tar.extractfile("000050001.txt").read() == b""
    assert [(t["text"], t["qid"]) for t in meta["texts"]] == [("Equus quagga", "Q32789"), ("zebra", None)]
    assert Sample.from_mapping({"image_url": "u", "texts": [{"text": "a", "text_source": "s"}]}).primary_text == "a"


def test_empty_shard_writes_an_empty_tar(tmp_path):
    result = download_shard([], 9, str(tmp_path), fetcher=InOrder())
    assert (result.rows, result.counts, result.samples, result.bytes) == ((), {}, 0, 0)
    with tarfile.open(result.tar_path) as tar:
        assert tar.getnames() == []


def test_too_many_samples_for_the_key_format(tmp_path):
    with pytest.raises(ValueError, match="more than 10000"):
        download_shard([Sample(f"https://x/{i}") for i in range(10_001)], 0, str(tmp_path), fetcher=InOrder())
