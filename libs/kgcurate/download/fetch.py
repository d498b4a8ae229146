"""Fetch one image URL politely and safely: identifying User-Agent, timeouts, redirects followed by hand
(each hop's address checked, see :mod:`.addresses`), X-Robots-Tag opt-out honoured before the body is read,
a byte cap while streaming, and retries only where the site said "not now".

Never raises for anything a URL or a server can do: every outcome is a :class:`FetchResult` whose status is
one of :data:`kgcurate.download.status.STATUSES`.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote, urljoin, urlsplit

import idna
import urllib3
from urllib3 import connection as u3_connection
from urllib3 import exceptions as u3

from kgcurate import __version__
from kgcurate.download import status as st
from kgcurate.download.addresses import AddressGuard, AddressRefused, ResolutionFailed, Resolver
from kgcurate.download.hosts import HostLimiter
from kgcurate.download.policy import OptOut, RetryPolicy, retry_after_seconds

DEFAULT_USER_AGENT = f"kgcurate/{__version__} (+https://github.com/kgcurate; image-text research dataset)"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HOSTNAME = re.compile(r"^[a-z0-9_.-]+$")


@dataclass(frozen=True)
class FetchConfig:
    """How one URL is fetched; the defaults are what a production run uses."""

    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0  # seconds to open a connection
    read_timeout: float = 20.0  # seconds any single socket read may wait
    total_timeout: float = 60.0  # seconds for one request (connect, headers, body): a slow drip cannot hold a thread
    max_redirects: int = 5
    max_bytes: int = 32 * 2**20  # a body longer than this is cut off: too_large
    allow_private: bool = False  # connect to private/loopback/... addresses (tests only)
    allow_networks: tuple[str, ...] = ()  # non-public networks allowed all the same (CIDRs)
    opt_out: OptOut = field(default_factory=OptOut)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one URL; ``body`` is set only for ``success``."""

    url: str
    status: str
    http_status: int | None = None
    error: str | None = None  # one line, None on success and opt-out
    body: bytes | None = None
    final_url: str | None = None  # the last hop reached (after redirects)
    attempts: int = 0
    opt_out_reason: str | None = None  # the X-Robots-Tag directive that opted out

    @property
    def ok(self) -> bool:
        return self.status == st.SUCCESS


@dataclass(frozen=True)
class _Target:
    """One hop's URL taken apart: what to resolve, how to connect, what to ask for."""

    scheme: str
    host: str  # lower case, ASCII (IDNA), IPv6 without brackets
    port: int
    request_uri: str  # path?query, percent-encoded

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _parse_target(url: str) -> _Target:
    """Split an http(s) URL into a :class:`_Target`; ValueError says why it is not one we can fetch."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r}" if scheme else "not an absolute URL")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    port = parts.port or (443 if scheme == "https" else 80)  # .port raises ValueError when out of range
    if not host.isascii():
        host = _ascii_host(host)
    if ":" not in host and not _HOSTNAME.match(host):
        raise ValueError(f"invalid host {host!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, port, quote(target, safe="/?&=%:@!$'()*+,;~-._[]"))


def _ascii_host(host: str) -> str:
    """A Unicode host name in the ASCII form a browser would look up (UTS-46, non-transitional, as the WHATWG
    URL standard says): "faß.de" is xn--fa-hia.de, a different host from the "fass.de" that Python's own
    IDNA 2003 codec gives. Names that IDNA 2008 refuses but browsers still map (symbols such as "☃.net")
    fall back to that codec. ValueError (UnicodeError) when neither can encode it."""
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return host.encode("idna").decode("ascii")


def _classify(error: BaseException) -> str:
    """The status for an exception raised while connecting or reading."""
    if isinstance(error, u3.NewConnectionError):  # a ConnectTimeoutError subclass, but refused/unreachable
        return st.CONNECTION_ERROR
    if isinstance(error, (u3.TimeoutError, TimeoutError)):
        return st.TIMEOUT
    if isinstance(error, u3.DecodeError):
        return st.DECODE_ERROR
    if isinstance(error, (u3.LocationValueError, http.client.InvalidURL)):
        return st.INVALID_URL
    return st.CONNECTION_ERROR


_NETWORK_ERRORS = (u3.HTTPError, http.client.HTTPException, OSError)

# The deadline of a thread's current request (None: not watched), so it can cut that request's sockets.
_watched = threading.local()


def _cut(sock: socket.socket | None) -> None:
    """Shut a socket down for both directions, so a read or write blocked on it ends at once. The plain
    socket's method on a TLS socket too: ``SSLSocket.shutdown`` also drops its TLS state, which a read in
    the other thread could meet half-way (a ValueError, not a network error)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch(conn: u3_connection.HTTPConnection) -> None:
    """Put a connection under the calling thread's deadline; one that comes after the deadline passed is cut
    at once."""
    deadline = getattr(_watched, "deadline", None)
    if deadline is None:
        return
    deadline.watched.append(conn)
    if deadline.expired:  # set before the watchdog walks the list: one of the two cuts it
        _cut(getattr(conn, "sock", None))


class _WatchedHTTPConnection(u3_connection.HTTPConnection):
    """Puts itself under the request's deadline when a request starts on it (``request``). A new connection
    also gets at most the time left as its socket timeout before any TLS handshake (``_new_conn``): the
    handshake wraps the socket into another object the watchdog cannot reach until ``connect`` returns."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        deadline = getattr(_watched, "deadline", None)
        if deadline is not None:
            left = deadline.at - time.monotonic()
            if left <= 0:
                sock.close()
                raise u3.ConnectTimeoutError(self, "the request's deadline passed while connecting")
            if sock.gettimeout() is None or sock.gettimeout() > left:
                sock.settimeout(left)
        return sock

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _watch(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, u3_connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Deadline:
    """One request's deadline (on ``time.monotonic``): the connections it used (put there by the connection
    classes above) and whether the deadline cut them."""

    __slots__ = ("at", "watched", "done", "expired")

    def __init__(self, at: float) -> None:
        self.at, self.done, self.expired = at, False, False
        self.watched: list[Any] = []

    def __lt__(self, other: _Deadline) -> bool:
        return self.at < other.at


class _Watchdog:
    """Cuts requests that pass their deadline: one thread per fetcher with a heap of deadlines (a
    ``threading.Timer`` per request cost ~250 us). The socket timeouts bound each read only: a status line
    and headers sent a byte at a time, each just within the read timeout, held a thread (and its host
    slot) for as long as the server liked."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Deadline] = []
        self._thread: threading.Thread | None = None
        self._stopped = False

    def stop(self) -> None:
        """End the thread (a Python worker runs many tasks: one idle thread per fetcher would pile up)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def watch(self, seconds: float) -> _Deadline:
        """Start watching the calling thread's next request; :meth:`cancel` on the same thread ends it."""
        deadline = _Deadline(time.monotonic() + seconds)
        _watched.deadline = deadline
        with self._cond:
            if len(self._heap) >= 4096:  # ended requests wait at their deadline to be popped: drop them sooner
                self._heap = [d for d in self._heap if not d.done]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, deadline)
            if self._thread is None:  # the first request, or the first after close()
                self._stopped = False
                self._thread = threading.Thread(target=self._run, name="kgcurate-fetch-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0] is deadline:
                self._cond.notify()
        return deadline

    def cancel(self, deadline: _Deadline) -> None:
        """Before the request's connection goes back to the pool: a cut after that could hit another
        request on it."""
        _watched.deadline = None
        with self._cond:
            deadline.done = True

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                deadline = heapq.heappop(self._heap)
                deadline.done = deadline.expired = True
                for conn in list(deadline.watched):
                    _cut(getattr(conn, "sock", None))


class UrlFetcher(Protocol):
    """What :func:`kgcurate.download.shard_task.download_shard` needs of a fetcher (tests pass fakes)."""

    def fetch(self, url: str) -> FetchResult: ...


class _Hop(NamedTuple):
    """One request's outcome: a final result, or a redirect to follow (``location``)."""

    result: FetchResult
    location: str | None = None
    retry_after: tuple[str, str | None] | None = None  # (Retry-After, the response's Date)


class Fetcher:
    """Fetches URLs with one urllib3 pool manager; thread-safe, close it (or use ``with``) when done.

    ``limiter`` caps requests per host; ``resolver``, ``sleep`` and ``clock`` are injectable for tests.
    """

    def __init__(
        self,
        config: FetchConfig | None = None,
        *,
        limiter: HostLimiter | None = None,
        resolver: Resolver = socket.getaddrinfo,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        num_pools: int = 64,
    ) -> None:
        self.config = config or FetchConfig()
        self.guard = AddressGuard(self.config.allow_private, self.config.allow_networks, resolver)
        self.limiter = limiter
        self._sleep = sleep
        self._clock = clock
        # Keep as many idle connections per host as may be in flight to it (the limiter's cap).
        per_host = limiter.max_per_host if limiter else 8
        self._pools = urllib3.PoolManager(num_pools=num_pools, maxsize=per_host, block=False, retries=False)
        self._pools.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}  # total_timeout's watch
        self._watchdog = _Watchdog()
        self._headers = {"User-Agent": self.config.user_agent, "Accept": "image/*,*/*;q=0.8"}
        self._timeout = urllib3.Timeout(connect=self.config.connect_timeout, read=self.config.read_timeout)

    def close(self) -> None:
        self._watchdog.stop()
        self._pools.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str) -> FetchResult:
        """Fetch ``url``, retrying per the config's :class:`RetryPolicy`; ``attempts`` counts the tries."""
        policy = self.config.retry
        attempt = 0
        while True:
            attempt += 1
            result, retry_after = self._attempt(url)
            if attempt >= policy.max_attempts or not policy.retryable(result.status, result.http_status):
                return replace(result, attempts=attempt)
            wait = policy.delay(url, attempt, *(retry_after or (None, None)))
            if wait is None:  # the server asked for longer than we wait in a run: --retry-failed's
                return replace(result, attempts=attempt)
            self._sleep(wait)

    def _attempt(self, url: str) -> tuple[FetchResult, tuple[str, str | None] | None]:
        """One try: follow redirects by hand, checking every hop. Returns the result and any Retry-After (with
        the response's Date, which an HTTP-date Retry-After is measured from)."""
        current = url
        left = self.config.total_timeout  # for the whole attempt, every redirect hop included
        for _hop in range(self.config.max_redirects + 1):
            try:
                target = _parse_target(current)
            except ValueError as e:
                return FetchResult(url, st.INVALID_URL, error=st.one_line(e), final_url=current), None
            try:
                address = self.guard.resolve(target.host, target.port)
            except AddressRefused as e:
                return FetchResult(url, st.REFUSED_ADDRESS, error=st.one_line(e), final_url=current), None
            except ResolutionFailed as e:
                return FetchResult(url, st.CONNECTION_ERROR, error=st.one_line(e), final_url=current), None
            slot = self.limiter.slot(target.host) if self.limiter else nullcontext()
            with slot:  # the time spent waiting for the host's slot is not the request's
                started = self._clock()
                deadline = self._watchdog.watch(left)
                try:
                    hop = self._request(url, current, target, address, deadline, started + left)
                finally:
                    self._watchdog.cancel(deadline)
            if deadline.expired:  # whatever the cut connection gave (an error, a body cut short) is a timeout
                return self._timed_out(url, hop.result.http_status, current), None
            if self.limiter and hop.retry_after and hop.result.http_status in (429, 503):
                seconds = retry_after_seconds(*hop.retry_after)
                if seconds:  # the whole host waits, as long as we would wait in this run at most
                    self.limiter.pause(target.host, min(seconds, self.config.retry.max_delay))
            if hop.location is None:
                return hop.result, hop.retry_after
            current = hop.location
            left -= self._clock() - started
            if left <= 0:
                return self._timed_out(url, hop.result.http_status, current), None
        error = f"more than {self.config.max_redirects} redirects"
        return FetchResult(url, st.TOO_MANY_REDIRECTS, error=error, final_url=current), None

    def _timed_out(self, url: str, http_status: int | None, current: str) -> FetchResult:
        error = f"response not complete after {self.config.total_timeout} s"
        return FetchResult(url, st.TIMEOUT, http_status, error, final_url=current)

    def _request(self, url: str, current: str, target: _Target, address: str, deadline: _Deadline,
                 until: float) -> _Hop:
        """One HTTP request to the checked ``address``; the body is read only for a 2xx not opted out."""
        pool_kwargs = {"server_hostname": target.host} if target.scheme == "https" else None
        headers = dict(self._headers, Host=target.host_header)

        def fail(status: str, error: object, http_status: int | None = None,
                 retry_after: tuple[str, str | None] | None = None) -> _Hop:
            return _Hop(FetchResult(url, status, http_status, st.one_line(error), final_url=current), None, retry_after)

        try:
            pool = self._pools.connection_from_host(address, target.port, target.scheme, pool_kwargs=pool_kwargs)
            response = pool.urlopen(
                "GET", target.request_uri, headers=headers, redirect=False, retries=False,
                preload_content=False, timeout=self._timeout, assert_same_host=False,
            )
        except _NETWORK_ERRORS as e:
            return fail(_classify(e), e)
        complete = False
        try:
            code = response.status
            opted_out = self.config.opt_out.check(response.headers.getlist("X-Robots-Tag"))
            if opted_out:
                return _Hop(FetchResult(url, st.OPTED_OUT, code, final_url=current, opt_out_reason=opted_out))
            if code in REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    return fail(st.HTTP_ERROR, f"HTTP {code} without Location", code)
                try:
                    following = urljoin(current, location.strip())
                except ValueError as e:  # e.g. an unclosed IPv6 bracket
                    return fail(st.INVALID_URL, f"redirect to {location!r}: {e}", code)
                return _Hop(FetchResult(url, st.HTTP_ERROR, code, final_url=current), following)
            if not 200 <= code < 300:
                retry_after = response.headers.get("Retry-After")
                hint = None if retry_after is None else (retry_after, response.headers.get("Date"))
                return fail(st.HTTP_ERROR, f"HTTP {code} {response.reason or ''}", code, hint)
            declared = _content_length(response.headers.get("Content-Length"))
            if declared is not None and declared > self.config.max_bytes:
                return fail(st.TOO_LARGE, f"Content-Length {declared} > max_bytes {self.config.max_bytes}", code)
            body, problem = self._read(response, until)
            if problem is not None:
                return fail(problem[0], problem[1], code)
            complete = True
            return _Hop(FetchResult(url, st.SUCCESS, code, body=body, final_url=current))
        except _NETWORK_ERRORS as e:
            return fail(_classify(e), e, response.status)
        finally:
            self._watchdog.cancel(deadline)  # before the connection can serve another request
            if not complete:
                response.close()  # do not drain an unread body just to reuse the connection
            response.release_conn()

    def _read(self, response: urllib3.BaseHTTPResponse, until: float) -> tuple[bytes, tuple[str, str] | None]:
        """The body, or a (status, error) once it passes max_bytes or the attempt's deadline (``until``, on
        ``clock``; the watchdog cuts a read that blocks past it).

        ``read1`` returns whatever has arrived (``read``/``stream`` would wait for a full chunk), so a body
        dripping in a few bytes at a time still meets the deadline check between reads.
        """
        limit = self.config.max_bytes
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(_CHUNK):
            size += len(chunk)
            if size > limit:
                return b"", (st.TOO_LARGE, f"body over {limit} bytes")
            chunks.append(chunk)
            if self._clock() > until:
                return b"", (st.TIMEOUT, f"body not complete after {self.config.total_timeout} s")
        return b"".join(chunks), None


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
