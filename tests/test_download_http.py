"""Fetcher and download_shard against a real local HTTP server (127.0.0.1, port 0, a daemon thread):
redirects, opt-out, retries, byte caps, timeouts, the address guard on every hop, and a whole shard written
from what the server answered. Retry sleeps are injected, never slept."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import io
import json
import random
import socket
import struct
import tarfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from kgcurate.download import DownloadConfig, Sample, Text, download_shard
from kgcurate.download import status as st
from kgcurate.download.fetch import DEFAULT_USER_AGENT, FetchConfig, Fetcher, _parse_target
from kgcurate.download.policy import RetryPolicy
from kgcurate.download.shard_task import DOWNLOAD_ROWS
from kgcurate.download.shards import sample_keys

MAX_BYTES = 200_000


def _encoded(im: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


JPEG = _encoded(Image.new("RGB", (320, 240), (200, 80, 20)), "JPEG")
PNG = _encoded(Image.new("RGBA", (600, 300), (20, 90, 200, 255)), "PNG")
BOMB = _png_claiming(20000, 20000)
HTML = b"<!doctype html><html><body>Sorry, this image was moved.</body></html>"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes by path; counts hits and keeps each path's last request headers on the server."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        with server.lock:
            server.hits[self.path] += 1
            hit = server.hits[self.path]
            server.seen[self.path] = dict(self.headers)
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/img.jpg":
            self._send(200, JPEG)
        elif path == "/img.png":
            self._send(200, PNG, [("Content-Type", "application/octet-stream")])
        elif path == "/html-as-jpeg":
            self._send(200, HTML)
        elif path == "/bomb.png":
            self._send(200, BOMB)
        elif path == "/noai.jpg":
            self._send(200, JPEG, [("X-Robots-Tag", "noai")])
        elif path == "/otherbot.jpg":
            self._send(200, JPEG, [("X-Robots-Tag", "otherbot: noai")])
        elif path == "/two-headers.jpg":
            self._send(200, JPEG, [("X-Robots-Tag", "otherbot: noai"), ("X-Robots-Tag", "NoImageAI")])
        elif path.startswith("/flaky/"):
            self._send(429, b"slow down", [("Retry-After", "0")]) if hit == 1 else self._send(200, JPEG)
        elif path == "/error500":
            self._send(500, b"boom", [("Retry-After", "2")])
        elif path == "/busy-for-an-hour":
            self._send(503, b"come back later", [("Retry-After", "3600")])
        elif path == "/busy-until":  # the HTTP-date form, an hour after the response's Date
            sent = self.date_time_string()
            until = email.utils.formatdate(email.utils.parsedate_to_datetime(sent).timestamp() + 3600, usegmt=True)
            self._send(503, b"come back later", [("Retry-After", until)])
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self._send(302, b"", [("Location", f"/chain/{left - 1}" if left else "/img.jpg")])
        elif path == "/redirect-to":
            self._send(301, b"", [("Location", query["url"][0])])
        elif path == "/no-location":
            self._send(302, b"")
        elif path == "/big":
            self._send(200, b"\xff" * (MAX_BYTES + 1))
        elif path == "/big-stream":  # no Content-Length: HTTP/1.0, the body ends when the connection closes
            self._send(200, b"\xff" * (3 * MAX_BYTES), length=False)
        elif path == "/drip":  # 10 bytes at once, the rest only when the test releases it
            self.send_response(200)
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            self.wfile.write(JPEG[:10])
            self.wfile.flush()
            server.drip.wait(2)
            with contextlib.suppress(OSError):
                self.wfile.write(JPEG[10:])
        elif path == "/drip-headers":  # a header a byte every 50 ms, each within the read timeout, for 2 s
            with contextlib.suppress(OSError):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(40):
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    if server.header_drip.wait(0.05):
                        break
                self.wfile.write(b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(JPEG) + JPEG)
                self.wfile.flush()
            self.close_connection = True
        elif path.startswith("/drip-redirect/"):  # a redirect whose headers take 0.3 s, then the next hop
            left = int(path.rsplit("/", 1)[1])
            with contextlib.suppress(OSError):
                self.wfile.write(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: "
                                 + (f"/drip-redirect/{left - 1}" if left else "/img.jpg").encode() + b"\r\nX-Slow: ")
                for _ in range(5):
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    server.redirect_drip.wait(0.06)
                self.wfile.write(b"\r\n\r\n")
            self.close_connection = True
        elif path == "/slow":
            server.release.wait(2)
            self._send(200, JPEG)
        else:
            self._send(404, b"not found")

    def _send(self, code: int, body: bytes, headers=(), length: bool = True) -> None:
        self.send_response(code)
        headers = list(headers)
        if not any(name == "Content-Type" for name, _ in headers):
            headers.append(("Content-Type", "image/jpeg"))
        for name, value in headers:
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up (byte cap, timeout): expected here
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.lock = threading.Lock()
    httpd.hits = Counter()
    httpd.seen = {}
    httpd.release = threading.Event()
    httpd.drip = threading.Event()
    httpd.header_drip = threading.Event()
    httpd.redirect_drip = threading.Event()  # never set: each hop of /drip-redirect/ takes its 0.3 s
    httpd.handle_error = lambda request, address: None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.release.set()
    httpd.drip.set()
    httpd.header_drip.set()
    httpd.shutdown()
    httpd.server_close()


def fake_resolver(answers: dict[str, str]):
    def resolve(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    return resolve


def fetcher(sleeps: list[float] | None = None, resolver=socket.getaddrinfo, **config) -> Fetcher:
    """A fetcher allowed to reach 127.0.0.0/8 only; retry sleeps go to ``sleeps`` instead of the clock."""
    config.setdefault("allow_networks", ("127.0.0.0/8",))
    config.setdefault("connect_timeout", 2.0)
    config.setdefault("read_timeout", 2.0)
    config.setdefault("max_bytes", MAX_BYTES)
    config.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0))
    sleeps = [] if sleeps is None else sleeps
    return Fetcher(FetchConfig(**config), resolver=resolver, sleep=sleeps.append)


def test_success_identifies_itself(server):
    result = fetcher().fetch(f"{server.base}/img.jpg")
    assert (result.status, result.http_status, result.attempts, result.error) == (st.SUCCESS, 200, 1, None)
    assert result.body == JPEG
    assert result.final_url == f"{server.base}/img.jpg"
    seen = server.seen["/img.jpg"]
    assert seen["User-Agent"] == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("kgcurate/") and "research" in DEFAULT_USER_AGENT
    assert seen["Host"] == server.base.removeprefix("http://")
    custom = fetcher(user_agent="kgcurate-test/1.0 (+mailto:ops@example.org)").fetch(f"{server.base}/img.jpg?ua")
    assert custom.ok and server.seen["/img.jpg?ua"]["User-Agent"] == "kgcurate-test/1.0 (+mailto:ops@example.org)"


def test_opt_out_header_is_a_status_not_a_failure(server):
    result = fetcher().fetch(f"{server.base}/noai.jpg")
    assert (result.status, result.opt_out_reason, result.http_status, result.body) == (st.OPTED_OUT, "noai", 200, None)
    assert result.error is None and result.attempts == 1
    both = fetcher().fetch(f"{server.base}/two-headers.jpg")  # a second header line is read too
    assert (both.status, both.opt_out_reason) == (st.OPTED_OUT, "noimageai")


def test_opt_out_for_another_bot_is_downloaded(server):
    result = fetcher().fetch(f"{server.base}/otherbot.jpg")
    assert result.ok and result.body == JPEG and result.opt_out_reason is None


def test_429_once_then_success_honours_retry_after(server):
    sleeps: list[float] = []
    result = fetcher(sleeps).fetch(f"{server.base}/flaky/once")
    assert (result.status, result.attempts, result.body) == (st.SUCCESS, 2, JPEG)
    assert sleeps == [0.0]  # Retry-After: 0, not the 1 s backoff
    assert server.hits["/flaky/once"] == 2


def test_500_is_retried_up_to_max_attempts(server):
    sleeps: list[float] = []
    result = fetcher(sleeps).fetch(f"{server.base}/error500")
    assert (result.status, result.http_status, result.attempts) == (st.HTTP_ERROR, 500, 3)
    assert result.error.startswith("HTTP 500")
    assert server.hits["/error500"] == 3
    assert sleeps == [2.0, 2.0]  # the server's Retry-After, between attempts only


def test_a_retry_after_longer_than_we_wait_ends_the_url_for_this_run(server):
    """Retry-After: 3600 with max_delay 10: asking again in 10 s would not honour it; the URL keeps its
    status (retryable) for ``download --retry-failed``."""
    sleeps: list[float] = []
    result = fetcher(sleeps).fetch(f"{server.base}/busy-for-an-hour")
    assert (result.status, result.http_status, result.attempts) == (st.HTTP_ERROR, 503, 1)
    assert sleeps == [] and server.hits["/busy-for-an-hour"] == 1
    # the same as an HTTP-date (it was ignored: two more requests after the 1 s and 2 s backoffs)
    result = fetcher(sleeps).fetch(f"{server.base}/busy-until")
    assert (result.status, result.http_status, result.attempts) == (st.HTTP_ERROR, 503, 1)
    assert sleeps == [] and server.hits["/busy-until"] == 1


def test_a_retry_after_pauses_the_whole_host(server):
    """A 429 with Retry-After paused only the URL that got it; the host's other URLs kept asking."""
    from kgcurate.download.hosts import HostLimiter

    clock = [0.0]
    limiter = HostLimiter(max_per_host=4, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    f = Fetcher(FetchConfig(allow_networks=("127.0.0.0/8",), retry=RetryPolicy(max_attempts=1, max_delay=10.0)),
                limiter=limiter)
    assert f.fetch(f"{server.base}/error500").http_status == 500  # Retry-After: 2 on a 500: not a pause
    assert clock[0] == 0.0
    assert f.fetch(f"{server.base}/busy-for-an-hour").http_status == 503  # Retry-After: 3600, capped at 10 s
    assert f.fetch(f"{server.base}/img.jpg").status == st.SUCCESS
    assert clock[0] == 10.0  # the next URL of the host waited for the pause


def test_404_is_not_retried(server):
    sleeps: list[float] = []
    result = fetcher(sleeps).fetch(f"{server.base}/missing")
    assert (result.status, result.http_status, result.attempts, sleeps) == (st.HTTP_ERROR, 404, 1, [])
    assert server.hits["/missing"] == 1


def test_redirects_followed_up_to_the_limit(server):
    ok = fetcher().fetch(f"{server.base}/chain/1")  # /chain/1 -> /chain/0 -> /img.jpg: 2 redirects
    assert (ok.status, ok.body, ok.final_url) == (st.SUCCESS, JPEG, f"{server.base}/img.jpg")
    long = fetcher(max_redirects=3).fetch(f"{server.base}/chain/10")
    assert (long.status, long.attempts, long.final_url) == (st.TOO_MANY_REDIRECTS, 1, f"{server.base}/chain/6")
    assert [server.hits[f"/chain/{k}"] for k in (10, 9, 8, 7, 6)] == [1, 1, 1, 1, 0]
    bare = fetcher().fetch(f"{server.base}/no-location")
    assert (bare.status, bare.http_status) == (st.HTTP_ERROR, 302)


def test_bodies_over_max_bytes_are_cut_off(server):
    declared = fetcher().fetch(f"{server.base}/big")
    assert (declared.status, declared.body) == (st.TOO_LARGE, None)
    assert "Content-Length" in declared.error
    streamed = fetcher().fetch(f"{server.base}/big-stream")
    assert (streamed.status, streamed.body, streamed.attempts) == (st.TOO_LARGE, None, 1)
    assert f"over {MAX_BYTES} bytes" in streamed.error


def test_loopback_is_refused_unless_allowed(server):
    url = f"{server.base}/img.jpg?guard"
    refused = fetcher(allow_networks=()).fetch(url)
    assert (refused.status, refused.attempts) == (st.REFUSED_ADDRESS, 1)
    assert "loopback" in refused.error
    assert server.hits["/img.jpg?guard"] == 0  # refused before connecting
    assert fetcher(allow_networks=(), allow_private=True).fetch(url).ok


def test_public_looking_name_resolving_to_private_is_refused(server):
    port = server.server_address[1]
    resolver = fake_resolver({"images.example.com": "10.0.0.1", "cdn.example.net": "127.0.0.1"})
    refused = fetcher(resolver=resolver).fetch(f"http://images.example.com:{port}/img.jpg")
    assert refused.status == st.REFUSED_ADDRESS and "10.0.0.1" in refused.error
    # The connection goes to the checked address, with the name in the Host header.
    via_name = fetcher(resolver=resolver).fetch(f"http://cdn.example.net:{port}/img.jpg?named")
    assert via_name.ok
    assert server.seen["/img.jpg?named"]["Host"] == f"cdn.example.net:{port}"
    unknown = fetcher(resolver=resolver).fetch(f"http://nowhere.example:{port}/img.jpg")
    assert (unknown.status, unknown.attempts) == (st.CONNECTION_ERROR, 1)


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/secret.jpg", "http://[::1]:9/x.jpg", "http://metadata.internal/latest/", "http://0.0.0.0:80/"],
)
def test_a_redirect_hop_to_a_private_address_is_refused(server, target):
    resolver = fake_resolver({"metadata.internal": "169.254.169.254"})
    result = fetcher(resolver=resolver).fetch(f"{server.base}/redirect-to?url={target}")
    assert (result.status, result.final_url, result.attempts) == (st.REFUSED_ADDRESS, target, 1)


def test_redirect_to_a_malformed_location(server):
    result = fetcher().fetch(f"{server.base}/redirect-to?url=http://[::1")
    assert (result.status, result.http_status, result.attempts) == (st.INVALID_URL, 301, 1)


def test_redirect_to_an_allowed_image(server):
    result = fetcher().fetch(f"{server.base}/redirect-to?url={server.base}/otherbot.jpg")
    assert (result.status, result.final_url, result.body) == (st.SUCCESS, f"{server.base}/otherbot.jpg", JPEG)


def test_timeouts_are_retried_with_deterministic_backoff(server):
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)
    url = f"{server.base}/slow"  # answers after 2 s; the read timeout is 0.1 s
    slow = fetcher(sleeps, read_timeout=0.1, retry=policy).fetch(url)
    assert (slow.status, slow.attempts, slow.http_status) == (st.TIMEOUT, 3, None)
    assert sleeps == [policy.delay(url, 1), policy.delay(url, 2)]  # no Retry-After: backoff with jitter
    assert 1.0 <= sleeps[0] < 1.5 and 2.0 <= sleeps[1] < 3.0


def test_total_timeout_bounds_a_dripping_body(server):
    ticks = iter([0.0, 1000.0])  # the deadline is set at 0; the first check after a read sees 1000 s gone
    config = FetchConfig(
        allow_networks=("127.0.0.0/8",), read_timeout=0.5, total_timeout=60, retry=RetryPolicy(max_attempts=1)
    )
    slow = Fetcher(config, clock=lambda: next(ticks))
    try:
        result = slow.fetch(f"{server.base}/drip")
    finally:
        server.drip.set()
    # Our deadline fired after the first 10 bytes, not urllib3's read timeout after a 64 KiB read.
    assert (result.status, result.http_status, result.body) == (st.TIMEOUT, 200, None)
    assert result.error == "body not complete after 60 s"


def test_total_timeout_bounds_dripping_headers(server):
    """total_timeout covered only the body: a server sending its headers a byte at a time, each within the
    read timeout, held the thread (and its host slot) until it stopped, here 2 s, and the URL succeeded."""
    config = FetchConfig(allow_networks=("127.0.0.1/32",), read_timeout=0.5, total_timeout=0.3,
                         retry=RetryPolicy(max_attempts=1))
    f = Fetcher(config)
    try:
        result = f.fetch(f"{server.base}/drip-headers")
    finally:
        server.header_drip.set()
    assert (result.status, result.body) == (st.TIMEOUT, None)
    assert result.error == "response not complete after 0.3 s"
    # the cut connection is not handed out again: the next request through the same fetcher works
    ok = f.fetch(f"{server.base}/img.jpg")
    assert (ok.status, ok.body) == (st.SUCCESS, JPEG)
    # the deadlines' one thread ends with the fetcher (a Python worker runs many shard tasks)
    thread = f._watchdog._thread
    f.close()
    assert thread is not None and not thread.is_alive() and f._watchdog._thread is None


def test_total_timeout_covers_every_redirect_hop_together(server):
    """The deadline was per hop: a chain of redirects, each within it, held the thread up to 6 x total_timeout
    and succeeded."""
    config = FetchConfig(allow_networks=("127.0.0.1/32",), read_timeout=1.0, total_timeout=0.5,
                         retry=RetryPolicy(max_attempts=1))
    result = Fetcher(config).fetch(f"{server.base}/drip-redirect/2")  # three hops of 0.3 s, then the image
    assert (result.status, result.body) == (st.TIMEOUT, None)
    assert result.error == "response not complete after 0.5 s"
    assert server.hits["/drip-redirect/2"] == server.hits["/drip-redirect/1"] == 1
    assert server.hits["/drip-redirect/0"] == 0  # the second hop was cut, the third never asked


def test_total_timeout_bounds_a_tls_handshake(tmp_path):
    """An https server that accepts the connection and never answers the handshake: only the read timeout
    (5 s here) bounded it, since the deadline watched a connection from its request on, after the handshake;
    the handshake now gets at most the time left."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def hold() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            stop.wait(10)
            conn.close()

    threading.Thread(target=hold, daemon=True).start()
    config = FetchConfig(allow_networks=("127.0.0.1/32",), connect_timeout=5.0, read_timeout=5.0, total_timeout=0.3,
                         retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    try:
        result = Fetcher(config).fetch(f"https://127.0.0.1:{listener.getsockname()[1]}/img.jpg")
    finally:
        waited = time.monotonic() - started
        stop.set()
        listener.close()
    assert (result.status, result.error) == (st.TIMEOUT, "response not complete after 0.3 s")
    assert waited < 4.0  # a bound on the timeout itself (0.3 s, not the 5 s read timeout), not a speed claim


def test_connection_errors_are_not_retried():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    refused = fetcher(sleeps).fetch(f"http://127.0.0.1:{port}/img.jpg")
    assert (refused.status, refused.attempts, sleeps) == (st.CONNECTION_ERROR, 1, [])


@pytest.mark.parametrize(
    "url", ["ftp://example.org/a.jpg", "", "not a url", "http://", "http://exa mple.org/a.jpg", "http://h:99999/"]
)
def test_invalid_urls(url):
    result = fetcher().fetch(url)
    assert (result.status, result.attempts, result.body) == (st.INVALID_URL, 1, None)
    assert result.error


def test_non_ascii_paths_and_hosts_are_encoded(server):
    port = server.server_address[1]
    resolver = fake_resolver({"xn--bcher-kva.example": "127.0.0.1"})
    result = fetcher(resolver=resolver).fetch(f"http://b\u00fccher.example:{port}/img.jpg?q=caf\u00e9 x")
    assert result.ok
    assert server.seen["/img.jpg?q=caf%C3%A9%20x"]["Host"] == f"xn--bcher-kva.example:{port}"


@pytest.mark.parametrize(
    ("host", "ascii_host"),
    [
        ("fa\u00df.de", "xn--fa-hia.de"),  # a browser's host; IDNA 2003 would have asked fass.de
        ("B\u00dcCHER.example", "xn--bcher-kva.example"),  # case-folded
        ("\u2603.net", "xn--n3h.net"),  # a symbol IDNA 2008 refuses but browsers map
        ("\u00fcber\u3002example", "xn--ber-goa.example"),  # an ideographic full stop separates labels
    ],
)
def test_unicode_hosts_are_looked_up_as_a_browser_would(host, ascii_host):
    assert _parse_target(f"http://{host}/a.jpg").host == ascii_host


def test_download_shard_end_to_end(server, tmp_path):
    b = server.base
    alt = {"text": "a red square", "text_source": "alt", "qid": None, "pair_id": 11}
    label = {"text": "Douglas Adams", "text_source": "kg_label", "qid": "Q42", "pair_id": 11, "language": "en"}
    samples = [
        {"image_url": f"{b}/img.jpg?e2e", "texts": [alt]},
        Sample(f"{b}/img.png?e2e", (Text("a blue png", "alt", pair_id=12),)),
        {"image_url": f"{b}/noai.jpg?e2e", "texts": [alt]},
        {"image_url": f"{b}/otherbot.jpg?e2e", "texts": [alt], "text": "primary given"},
        {"image_url": f"{b}/missing?e2e", "texts": []},
        {"image_url": f"{b}/html-as-jpeg", "texts": [alt]},
        {"image_url": f"{b}/bomb.png", "texts": [alt]},
        {"image_url": f"{b}/big?e2e", "texts": [alt]},
        {"image_url": f"{b}/chain/1?e2e", "texts": [alt]},
        {"image_url": f"{b}/chain/10?e2e", "texts": [alt]},
        {"image_url": f"{b}/error500?e2e", "texts": [alt]},
        {"image_url": "ftp://example.org/x.jpg", "texts": [alt]},
        {"image_url": f"{b}/img.jpg?e2e", "texts": [label]},  # listed twice: one sample, both texts
    ]
    fetch = FetchConfig(
        allow_networks=("127.0.0.0/8",), max_bytes=MAX_BYTES, max_redirects=3, retry=RetryPolicy(max_attempts=1)
    )
    config = DownloadConfig(fetch=fetch, threads=4, max_per_host=2)
    result = download_shard(samples, 12, str(tmp_path / "a"), config)

    urls = sorted({s["image_url"] if isinstance(s, dict) else s.image_url for s in samples})
    assert [r.image_url for r in result.rows] == urls  # exactly one row per distinct URL, sorted
    status = {r.image_url.removeprefix(b): r.status for r in result.rows}
    assert status == {
        "/img.jpg?e2e": st.SUCCESS, "/img.png?e2e": st.SUCCESS, "/noai.jpg?e2e": st.OPTED_OUT,
        "/otherbot.jpg?e2e": st.SUCCESS, "/missing?e2e": st.HTTP_ERROR, "/html-as-jpeg": st.DECODE_ERROR,
        "/bomb.png": st.TOO_LARGE, "/big?e2e": st.TOO_LARGE, "/chain/1?e2e": st.SUCCESS,
        "/chain/10?e2e": st.TOO_MANY_REDIRECTS, "/error500?e2e": st.HTTP_ERROR,
        "ftp://example.org/x.jpg": st.INVALID_URL,
    }
    assert set(status.values()) <= st.STATUSES
    assert result.counts == {
        "decode_error": 1, "http_error": 2, "invalid_url": 1, "opted_out": 1, "success": 4, "too_large": 2,
        "too_many_redirects": 1,
    }
    assert result.samples == 4
    keys = sample_keys(12, urls)
    rows = {r.image_url.removeprefix(b): r for r in result.rows}
    for row in result.rows:
        assert row.shard == 12
        assert row.key == (keys[row.image_url] if row.status == st.SUCCESS else None)
        assert row.error is None if row.status in (st.SUCCESS, st.OPTED_OUT) else row.error and "\n" not in row.error
    jpg = rows["/img.jpg?e2e"]
    assert (jpg.http_status, jpg.bytes, jpg.attempts) == (200, len(JPEG), 1)
    assert jpg.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert (jpg.width, jpg.height, jpg.original_width, jpg.original_height) == (256, 192, 320, 240)
    assert (rows["/img.png?e2e"].width, rows["/img.png?e2e"].height) == (256, 128)
    assert rows["/noai.jpg?e2e"].opt_out_reason == "noai" and rows["/noai.jpg?e2e"].bytes is None
    html = rows["/html-as-jpeg"]
    assert (html.http_status, html.bytes, html.sha256) == (200, len(HTML), hashlib.sha256(HTML).hexdigest())
    assert rows["/chain/1?e2e"].final_url == f"{b}/img.jpg"
    assert rows["/error500?e2e"].attempts == 1 and rows["/missing?e2e"].http_status == 404
    assert result.bytes == sum(r.bytes or 0 for r in result.rows)

    with tarfile.open(result.tar_path) as tar:
        names = tar.getnames()
        ok_keys = sorted(r.key for r in result.rows if r.key)
        assert names == [f"{k}.{ext}" for k in ok_keys for ext in ("jpg", "txt", "json")]
        key = jpg.key
        meta = json.loads(tar.extractfile(f"{key}.json").read())
        assert Image.open(io.BytesIO(tar.extractfile(f"{key}.jpg").read())).size == (256, 192)
        assert tar.extractfile(f"{key}.txt").read().decode() == "Douglas Adams"  # the smaller of the two listings
        primary = tar.extractfile(f"{rows['/otherbot.jpg?e2e'].key}.txt").read().decode()
    assert primary == "primary given"
    assert meta["url"] == f"{b}/img.jpg?e2e" and meta["key"] == key and meta["shard"] == 12
    assert meta["sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert (meta["width"], meta["height"], meta["original_width"], meta["original_height"]) == (256, 192, 320, 240)
    assert sorted(t["text"] for t in meta["texts"]) == ["Douglas Adams", "a red square"]
    assert {t["qid"] for t in meta["texts"]} == {None, "Q42"} and {t["pair_id"] for t in meta["texts"]} == {11}
    assert meta["text"] == "Douglas Adams"

    table = result.rows_table()
    assert table.schema == DOWNLOAD_ROWS and table.num_rows == len(urls)

    # A rerun with the input in another order and one thread gives the same tar, byte for byte, and the same rows.
    shuffled = samples[:]
    random.Random(7).shuffle(shuffled)
    again = download_shard(shuffled, 12, str(tmp_path / "b"), DownloadConfig(fetch=fetch, threads=1))
    assert Path(again.tar_path).read_bytes() == Path(result.tar_path).read_bytes()
    assert again.rows == result.rows
